"""This server's copy of the gateways' routing table, and the long polls it wakes.

Memory kind: DERIVED FROM THE DATABASE and INVALIDATED ACROSS SERVERS. The table is
recomputed from the services, instances, nodes and namespaces tables (core/routes.table) whenever a
signal says it may have changed: ROUTES (an instance's readiness or ports changed), BUMP
(some node's assignments changed: an instance about to stop leaves its routes first) or
EVENTS (every service write records one), from any server through the coordinator. A safety-net
recompute every few seconds heals a signal that was lost. Its version is a digest of its
content, so every server that read the same rows hands agents the same version, and an
agent that moves to another server is not sent an unchanged table again.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from sqlalchemy import select

from orchestrator.coord import base as signals
from orchestrator.core import routes as core
from orchestrator.models import Instance, Namespace, Node, Service

log = logging.getLogger("dockyard.routes")
DEBOUNCE = 0.02  # a burst of signals (a pass that stops ten instances) makes one recompute
SAFETY_NET = 5.0


def load(s, specs: dict[str, tuple[tuple, dict]] | None = None) -> tuple[list[dict[str, Any]], dict[str, str | None]]:  # type: ignore[no-untyped-def]
    """Read what the table depends on, and decide it: (routes, each namespace's parent).

    `specs` keeps each service's spec with the version and update time it was read at, across
    calls: a spec is read (and its JSON decoded) again only when those moved (the time too: a
    service deleted and made again starts again at version 1). The table is
    recomputed on every assignment change, and decoding 500 specs each time was a tenth of a
    5,000-node server's CPU while it placed 50,000 instances."""
    spaces = {r.name: r.parent for r in s.execute(select(Namespace.name, Namespace.parent))}
    specs = {} if specs is None else specs
    versions = {name: (v, at) for name, v, at in s.execute(select(Service.name, Service.version, Service.updated_at))}
    for gone in specs.keys() - versions.keys():
        del specs[gone]
    stale = sorted(name for name, v in versions.items() if specs.get(name, (None,))[0] != v)
    for chunk in _chunks(stale):
        for r in s.execute(select(Service.name, Service.version, Service.updated_at, Service.spec)
                           .where(Service.name.in_(chunk))):
            specs[r.name] = ((r.version, r.updated_at), r.spec or {})
    services = {name: spec for name, (_v, spec) in specs.items() if spec.get("expose")}
    if not services:
        return [], spaces
    rows = []
    for chunk in _chunks(sorted(services)):
        rows += s.execute(select(Instance.id, Instance.service_name, Instance.node_name, Instance.desired_state,
                                 Instance.state, Instance.healthy, Instance.host_ports)
                          .where(Instance.service_name.in_(chunk), Instance.desired_state == "running")).all()
    instances = [core.Endpointable(r.id, r.service_name, r.node_name, r.desired_state, r.state, r.healthy,
                                   core.host_ports(r.host_ports)) for r in rows]
    nodes = {r.name: (r.address, r.status) for r in s.execute(select(Node.name, Node.address, Node.status))}
    return core.table(services, instances, nodes), spaces


def _chunks(names: list[str]):  # type: ignore[no-untyped-def]
    from orchestrator.assignments import chunks

    return chunks(names)


class RouteBook:
    def __init__(self, db, coord, on_change: Callable[[], None]):  # type: ignore[no-untyped-def]
        self.db, self.coord, self.on_change = db, coord, on_change
        self._current: tuple[str, list[dict[str, Any]], dict[str, str | None]] = (core.digest([]), [], {})
        self._dirty = threading.Event()
        self._specs: dict[str, tuple[tuple, dict]] = {}  # load's cache (derived: keyed by each service's version)
        self._refreshing = threading.Lock()  # refresh runs on its thread and at start: one at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dockyard-routes", daemon=True)
        coord.on(signals.ROUTES, lambda _v: self._dirty.set())
        coord.on(signals.BUMP, lambda _v: self._dirty.set())
        coord.on(signals.RESYNC, lambda _v: self._dirty.set())
        # every service write (created, updated, rolled back, deleted) records an event
        coord.on(signals.EVENTS, lambda _v: self._dirty.set())

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._thread.join(timeout=3)

    def changed(self) -> None:
        """Something the table depends on was committed: recompute it on every server."""
        self.coord.publish(signals.ROUTES)

    def current(self) -> tuple[str, list[dict[str, Any]]]:
        """(version, table): from one reference, so a reader never pairs a version with another table."""
        version, table, _ = self._current
        return version, table

    def snapshot(self) -> tuple[str, list[dict[str, Any]], dict[str, str | None]]:
        """(version, table, spaces map), from one reference."""
        return self._current

    @property
    def version(self) -> str:
        return self._current[0]

    def refresh(self) -> bool:
        """Recompute now; True when the table changed (its waiters were woken)."""
        try:
            with self._refreshing:
                table, spaces = self.db.run(lambda s: load(s, self._specs), attempts=2)
        except Exception as exc:  # the database is away: keep serving the last table
            log.warning("could not read the routing table: %s", exc)
            return False
        version = core.digest(table, spaces)
        if version == self.version:
            return False
        self._current = (version, table, spaces)
        self.on_change()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(SAFETY_NET)
            if self._stop.is_set():
                return
            self._stop.wait(DEBOUNCE)
            self._dirty.clear()
            self.refresh()
