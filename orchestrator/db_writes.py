"""What a committed transaction wrote: anything at all, and which services' rows.

`Database.writes` counts every committed transaction that wrote (the dashboard's live summary
watches it). Read caches need less: `GET /v1/services/{name}` is made of one service row and
its instances, so an answer stays good while neither changed, whatever else was written (a
report about another service, a lease renewal, a heartbeat flush). This module tells which:
ORM flushes name the services of the Service and Instance objects they write; a statement that
writes those tables outside a flush (no such statement exists today, but one could be added)
names none and counts against every service.

State: per process, like the caches that read it; with several servers the read cache is off
(runtime.py), because another server's writes are not seen here.
"""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from itertools import chain
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

# tables whose rows make a service's answer, and the column that names the service
SERVICE_ROWS = {"services": "name", "instances": "service_name"}
WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_TABLE = re.compile(r'^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+"?(\w+)"?', re.I)
_flushing = threading.local()  # statements run by an ORM flush on this thread: attributed by after_flush


def mark(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
    """before_cursor_execute: flag the connection's transaction as having written (and as having
    written service rows nobody named, when a statement outside a flush does)."""
    if not statement.lstrip()[:7].upper().startswith(WRITE_STATEMENTS):
        return
    conn.info["dy_wrote"] = True
    if not getattr(_flushing, "on", False):
        m = _TABLE.match(statement)
        if m is None or m.group(1).lower() in SERVICE_ROWS:
            conn.info["dy_all"] = True


def _before_flush(session: Session, _ctx, _instances) -> None:  # type: ignore[no-untyped-def]
    _flushing.on = True


def _after_flush(session: Session, _ctx) -> None:  # type: ignore[no-untyped-def]
    _flushing.on = False
    names = session.info.setdefault("dy_services", set())
    for obj in chain(session.new, session.dirty, session.deleted):
        col = SERVICE_ROWS.get(getattr(obj, "__tablename__", ""))
        if col is not None:
            try:
                names.add(getattr(obj, col))
            except Exception:  # an attribute that cannot be read here: count it against every service
                session.info["dy_all"] = True


def _after_rollback(session: Session) -> None:
    _flushing.on = False
    session.info.pop("dy_services", None)
    session.info.pop("dy_all", None)


def install(engine, factory: sessionmaker) -> None:  # type: ignore[no-untyped-def]
    event.listen(engine, "before_cursor_execute", mark)
    event.listen(engine, "rollback", lambda conn: (conn.info.pop("dy_wrote", None), conn.info.pop("dy_all", None)))
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "after_flush", _after_flush)
    event.listen(factory, "after_soft_rollback", lambda s, _prev: _after_rollback(s))


@contextmanager
def naming(session: Session, services: set[str]) -> Iterator[None]:
    """Around a Core statement that writes the rows of these services only (a bulk update the
    ORM would flush row by row): count it against them, not against every service."""
    session.info.setdefault("dy_services", set()).update(services)
    _flushing.on = True
    try:
        yield
    finally:
        _flushing.on = False


def take(session: Session) -> tuple[bool, bool, set[str]]:
    """(wrote anything, wrote service rows of unknown services, the services named) for the
    session's transaction, about to commit; clears the marks."""
    info = session.connection().info
    wrote, unknown = info.pop("dy_wrote", False), info.pop("dy_all", False)
    return wrote, unknown or session.info.pop("dy_all", False), session.info.pop("dy_services", set())
