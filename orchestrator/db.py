"""Database engine, sessions and schema migrations (Alembic, applied at start)."""
from __future__ import annotations

import collections
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from orchestrator import db_writes
from orchestrator.priority import API_WRITER

T = TypeVar("T")
POOL_SIZE = 32
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # enough pooled connections for every thread that may hold one (the request thread pool,
        # api/app.py, plus the loop and the batchers): an overflow connection is opened and
        # closed per checkout, and opening one (with its pragmas) cost more than the query
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=POOL_SIZE, max_overflow=POOL_SIZE)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the API read while the loop writes; busy_timeout waits instead of failing
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        _serialize_writers(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=40)


WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class FairLock:
    """A lock handed to waiters in arrival order, API writers first: with a plain lock, the
    thread that writes agent reports in batches takes it again at once, and an API write can
    wait for seconds; in plain arrival order, a PUT on a 5,000-node server waited behind a
    queue of report batches and assignment writes for seconds too (bench/simulate.py, a
    wall-clock profile: 87 % of a PUT's time was this wait). But never more than API_BURST API
    writers in a row while another writer waits: 500 services applied 8 at a time kept an API
    writer always waiting, and the leader's pass (its commit) and the report batches starved
    behind them, so placement waited for the last PUT."""

    API_BURST = 4

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._first: collections.deque[threading.Event] = collections.deque()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._held = False
        self._run = 0  # API writers handed the lock in a row while others waited

    def acquire(self, timeout: float, first: bool = False) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            queue = self._first if first else self._waiters
            queue.append(turn)
        if turn.wait(timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait timed out
                return True
            queue.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            # straight to the next in line: it stays held
            if self._first and (not self._waiters or self._run < self.API_BURST):
                self._run = self._run + 1 if self._waiters else 0
                self._first.popleft().set()
            elif self._waiters:
                self._run = 0
                self._waiters.popleft().set()
            else:
                self._held = False


def _serialize_writers(engine: Engine) -> None:
    """Queue this process's SQLite write transactions on a lock instead of in SQLite's busy handler.

    SQLite allows one writer; the others wait in its busy handler, which polls with sleeps
    growing to 100 ms. With a hundred agent reports a second that turns a 2 ms write into
    hundreds of ms of latency at low CPU. A transaction takes the lock at its first write
    statement and gives it back when its connection returns to the pool (after commit or
    rollback). Past the busy timeout it goes ahead without it, as before (SQLite still locks).
    """
    lock = FairLock()

    @event.listens_for(engine, "before_cursor_execute")
    def _take(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "dy_write_lock" not in conn.info and statement.lstrip()[:7].upper().startswith(WRITE_STATEMENTS):
            conn.info["dy_write_lock"] = lock.acquire(timeout=30, first=API_WRITER.get())

    def _give(conn) -> None:  # type: ignore[no-untyped-def]
        if conn.info.pop("dy_write_lock", False):
            lock.release()

    event.listen(engine, "commit", _give)
    event.listen(engine, "rollback", _give)
    # a connection back in the pool never keeps it (e.g. a transaction ended by invalidation)
    event.listen(engine, "checkin", lambda _dbapi, record: _give(record))


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def _sqlite_for_update(state) -> None:  # type: ignore[no-untyped-def]
    """SQLite ignores SELECT ... FOR UPDATE. Take the database's write lock before such a read
    instead, so a read-check-write (a version check, the next revision number) cannot interleave
    with another writer: the second one waits (busy_timeout), then reads what the first committed."""
    stmt = state.statement
    txn = state.session.get_transaction()
    if state.is_select and getattr(stmt, "_for_update_arg", None) is not None and state.session.info.get("wlock") is not txn:
        # a write that changes nothing still begins a write transaction, holding the lock to commit
        state.session.connection().exec_driver_sql("UPDATE settings SET value = value WHERE 0")
        state.session.info["wlock"] = txn


def _lost_race(exc: Exception) -> bool:
    if isinstance(exc, StaleDataError):
        return True
    if isinstance(exc, OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40001", "40P01")  # serialization_failure, deadlock_detected


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        # committed transactions that wrote something (the dashboard's summary watches it); of
        # those, the ones that wrote service rows without naming the services, and per service
        # the ones that wrote its row or instances: what the read cache checks (db_writes.py)
        self.writes = self.unattributed = 0
        self.service_writes: dict[str, int] = collections.defaultdict(int)
        db_writes.install(self.engine, self._factory)
        if url.startswith("sqlite"):
            event.listen(self._factory, "do_orm_execute", _sqlite_for_update)

    def session(self) -> Session:
        return self._factory()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._factory() as s:
            with s.begin():
                yield s
                s.flush()  # so that the write below is seen before the commit
                wrote, unknown, services = db_writes.take(s)
            if wrote:
                # counted once committed: a reader that sees the new count reads the new data
                for name in services:
                    self.service_writes[name] += 1
                self.unattributed += unknown
                self.writes += 1

    def run(self, fn: Callable[[Session], T], attempts: int = 5) -> T:
        """Run fn in one transaction, retrying it whole when it lost a race with another writer:
        SQLite's database locked, PostgreSQL's serialization failure or deadlock, or a row this
        transaction loaded and changed that another one deleted or changed first (StaleDataError,
        e.g. a service deleted while the leader's pass retires its instances). fn is re-run from
        the start, so it reads what the winner committed and decides again."""
        for attempt in range(attempts):
            try:
                with self.transaction() as s:
                    return fn(s)
            except (DBAPIError, StaleDataError) as exc:
                if not _lost_race(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
