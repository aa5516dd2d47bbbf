"""A server's moving parts, started and stopped in order: database, coordination, leadership, loop.

Start: (one server per SQLite file) → migrations and bootstrap, serialised across servers
starting at once on PostgreSQL by an advisory lock → coordinator (signals) → elector (the
lease) → reconcile loop → heartbeat flusher (several servers only). Stop runs the other way
round, and gives the lease back so another server takes over at once.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import bindparam, create_engine, pool, text, update

from orchestrator import events, metrics
from orchestrator.api.usage import UsageCollector
from orchestrator.api.deps import State
from orchestrator.auth import bootstrap
from orchestrator.automation import Automation
from orchestrator.config import Settings
from orchestrator.coord import lockfile, make_coordinator, server_id
from orchestrator.coord.leader import Elector
from orchestrator.db import Database, migrate
from orchestrator.hub import Hub
from orchestrator.models import Node
from orchestrator.reconcile import Reconciler
from orchestrator.routebook import RouteBook

log = logging.getLogger("dockyard.server")
STARTUP_LOCK = 0x646F636B  # "dock": the advisory lock id servers take to migrate one at a time


@contextmanager
def startup_lock(url: str) -> Iterator[None]:
    """Servers starting together on one PostgreSQL database migrate and bootstrap in turn."""
    if not url.startswith("postgresql"):
        yield
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as c:
            c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK})
            c.commit()
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK})
                c.commit()
    finally:
        engine.dispose()


def sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):])
    return None


class HeartbeatFlusher:
    """Writes the heartbeats this server heard to the nodes table about once a second, in one
    statement, so the leader (maybe another server) sees every node's. Several servers only."""

    def __init__(self, db: Database, hub: Hub, every: float):
        self.db, self.hub, self.every = db, hub, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dockyard-heartbeats", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.flush()

    def flush(self) -> None:
        beats = self.hub.take_unflushed()
        if not beats:
            return
        rows = [{"n": n, "t": t} for n, t in sorted(beats.items())]
        stmt = (update(Node.__table__).where(Node.__table__.c.name == bindparam("n"),
                                              Node.__table__.c.last_heartbeat < bindparam("t"))
                .values(last_heartbeat=bindparam("t")))
        try:
            self.db.run(lambda s: s.connection().execute(stmt, rows), attempts=2)
        except Exception as exc:  # the database is away: keep the newest for the next try
            for n, t in beats.items():
                self.hub._unflushed.setdefault(n, t)
            log.warning("could not write heartbeats: %s", exc)


def preflight(settings: Settings) -> None:
    """What must hold before a server starts; raises a DockyardError with the reason."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    file = sqlite_file(settings.db_url)
    if file is not None:
        lockfile.hold(file)  # a second server on the same SQLite file stops here, with a message


def start(settings: Settings) -> State:
    preflight(settings)
    url = settings.db_url
    with startup_lock(url):
        migrate(url)
        db = Database(url)
        db.run(lambda s: bootstrap(s, settings.data_dir, settings.admin_token, settings.join_token))
    coord = make_coordinator(url)
    coord.start()
    hub = Hub(heartbeat_interval=settings.heartbeat_interval, coord=coord)
    me = server_id()
    loop = Reconciler(db, hub, interval=settings.loop_interval, node_ttl=settings.node_ttl, node_grace=settings.node_grace)
    elector = Elector(db, coord, me, ttl=settings.lease_ttl, sole=not coord.shared,
                      on_elected=loop.elected, on_deposed=loop.deposed)
    loop.elector = elector
    st = State(db, hub, loop, settings)
    st.elector, st.coord, st.server_id = elector, coord, me  # type: ignore[attr-defined]
    if coord.shared:
        # Database.writes counts this process's writes only: another server's would not
        # invalidate the read cache, so with several servers it is off
        st.reads.max_age = 0.0
    st.routes = RouteBook(db, coord, on_change=hub.wake_all)  # type: ignore[attr-defined]
    hub.routes_version = lambda: st.routes.version  # type: ignore[attr-defined]
    st.routes.start()  # type: ignore[attr-defined]
    events.on_commit(hub.events_changed)
    elector.start()
    loop.start()
    st.automation = Automation(db, loop)  # type: ignore[attr-defined]  # autoscaler, rebalancer (leader-owned)
    st.automation.start()  # type: ignore[attr-defined]
    st.usage = UsageCollector(db)  # type: ignore[attr-defined]  # services' usage in /metrics
    metrics.REGISTRY.register(st.usage)  # type: ignore[attr-defined]
    st.flusher = None  # type: ignore[attr-defined]
    if coord.shared:
        st.flusher = HeartbeatFlusher(db, hub, every=min(1.0, settings.heartbeat_interval))  # type: ignore[attr-defined]
        st.flusher.start()  # type: ignore[attr-defined]
    return st


def stop(st: State) -> None:
    events.off_commit(st.hub.events_changed)
    st.automation.stop()  # type: ignore[attr-defined]
    metrics.REGISTRY.unregister(st.usage)  # type: ignore[attr-defined]
    st.loop.stop()
    st.routes.stop()  # type: ignore[attr-defined]
    st.elector.stop()  # type: ignore[attr-defined]
    if st.flusher is not None:  # type: ignore[attr-defined]
        st.flusher.flush()  # type: ignore[attr-defined]
        st.flusher.stop()  # type: ignore[attr-defined]
    st.coord.stop()  # type: ignore[attr-defined]
    st.db.engine.dispose()
    file = sqlite_file(st.db.url)
    if file is not None:
        lockfile.release(file)
