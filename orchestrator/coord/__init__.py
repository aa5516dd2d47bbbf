"""Coordination between the servers that share one database: signals, and who leads.

Everything a server keeps in memory is one of three kinds, and says which next to it:
- rebuilt from the database (e.g. the spec cache: immutable rows),
- invalidated across servers through this package's signals (node generations that wake
  long polls, event watchers, cached credentials), or
- leader-only (the reconciler's fingerprint and bookkeeping, `Hub.watched`).

`Coordinator.publish(kind, values)` reaches every server sharing the database, this one
included; handlers registered with `on(kind, fn)` run on each. Two implementations:
- `MemoryCoordinator`: SQLite, one server (a second one on the same file refuses to start,
  see lockfile.py). Signals are plain function calls.
- `PostgresCoordinator`: LISTEN/NOTIFY on one channel. When its listening connection is lost
  it reconnects and delivers a `resync` signal, on which every cache drops everything (a
  notification missed while away cannot leave a stale entry behind).
"""
from __future__ import annotations

from orchestrator.coord.base import Coordinator, MemoryCoordinator, server_id

__all__ = ["Coordinator", "MemoryCoordinator", "make_coordinator", "server_id"]


def make_coordinator(url: str) -> Coordinator:
    if url.startswith("postgresql"):
        from orchestrator.coord.postgres import PostgresCoordinator

        return PostgresCoordinator(url)
    return MemoryCoordinator()
