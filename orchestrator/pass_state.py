"""What a reconcile pass reads besides the instances it plans: plain rows and aggregates.

The incremental pass (reconcile.py, core/scope.py) loads as ORM objects only the instances of
the services it plans; everything it needs about the others comes from here as SQL aggregates
(counted by the database, not by Python): a fingerprint per service and per node, what each node
already runs (for placement), orphans to forget. Nothing here writes.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Numeric, String, case, cast, func, select
from sqlalchemy.orm import Session

from orchestrator import assignments
from orchestrator.core import scheduler
from orchestrator.core.constraints import parse_constraint
from orchestrator.models import Event, Instance, Node, Revision, Service

# (node, service, revision, desired_state, how many): what a node holds, for placement
Usage = tuple[str, str, int, str, int]


@dataclass(slots=True)
class NodeRow:
    """A node as the pass sees it (a plain copy: the pass updates status on a transition).
    Labels stay JSON text until placement needs them: decoding 5,000 nodes' labels on every
    pass was a tenth of a pass at that size."""
    name: str
    status: str
    last_heartbeat: float
    availability: str
    cpus: float
    memory: int
    labels_json: str | None
    suspect_since: float | None
    _labels: dict | None = None

    @property
    def labels(self) -> dict:
        if self._labels is None:
            self._labels = json.loads(self.labels_json) if self.labels_json else {}
        return self._labels

    def key(self) -> tuple:
        """What placement and draining depend on (not heartbeats: they move every second)."""
        return (self.status, self.availability, self.cpus, self.memory, self.labels_json)


@dataclass
class Snapshot:
    nodes: list[NodeRow]
    services: dict[str, tuple]  # name -> its row's fields a pass depends on
    instances: dict[str, tuple]  # service name -> (count, sum of updated_at, sum of restarts, pending)
    event: int | None  # the newest event id
    fingerprint: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = (hash(tuple((n.name, *n.key()) for n in self.nodes)), hash(tuple(self.services.items())),
                            hash(tuple(self.instances.items())), self.event)

    def service_fingerprint(self, name: str) -> tuple:
        return (self.services.get(name), self.instances.get(name))

    def version(self, name: str) -> int | None:
        """The service row's version (None: no such service)."""
        row = self.services.get(name)
        return row[0] if row else None

    def pending(self, name: str) -> int:
        row = self.instances.get(name)
        return int(row[3] or 0) if row else 0


def fingerprint_version(fingerprint: tuple | None) -> int | None:
    """The service row's version in a Snapshot.service_fingerprint (None: none, or no row)."""
    return fingerprint[0][0] if fingerprint and fingerprint[0] else None


def load(s: Session) -> Snapshot:
    """Rows are ordered: PostgreSQL returns them in physical order, which every update (the
    heartbeat writes, once a second) shuffles, and an unordered fingerprint then changed every
    second and made the leader plan every second."""
    nodes = [NodeRow(*r) for r in s.execute(
        select(Node.name, Node.status, Node.last_heartbeat, Node.availability, Node.cpus, Node.memory,
               cast(Node.labels, String), Node.suspect_since).order_by(Node.name))]
    services = {r[0]: tuple(r[1:-1]) + (repr(r[-1]),) for r in s.execute(
        select(Service.name, Service.version, Service.revision, Service.replicas, Service.rollout_phase,
               Service.status_message, Service.automation).order_by(Service.name))}
    # every change that matters to a pass sets updated_at (or adds / deletes a row); summed
    # exactly (NUMERIC): a float sum depends on the order rows come in, which moves on PostgreSQL
    pending = case((Instance.node_name.is_(None) & (Instance.desired_state == "running"), 1), else_=0)
    instances = {r[0]: tuple(r[1:]) for r in s.execute(
        select(Instance.service_name, func.count(Instance.id), func.sum(cast(Instance.updated_at, Numeric)),
               func.sum(Instance.restart_count), func.sum(pending))
        .group_by(Instance.service_name).order_by(Instance.service_name))}
    return Snapshot(nodes, services, instances, s.execute(select(func.max(Event.id))).scalar())


def services_on(s: Session, nodes: Iterable[str]) -> set[str]:
    """Services with a running instance on any of these nodes."""
    names = list(nodes)
    if not names:
        return set()
    return set(s.scalars(select(Instance.service_name).distinct().where(
        Instance.node_name.in_(names), Instance.desired_state == "running")))


def nodes_running(s: Session, nodes: Iterable[str], excluding: Iterable[str]) -> set[str]:
    """Which of these nodes run an instance of a service not in `excluding` (the pass has those)."""
    names = list(nodes)
    if not names:
        return set()
    return set(s.scalars(select(Instance.node_name).distinct().where(
        Instance.node_name.in_(names), Instance.desired_state == "running",
        Instance.service_name.not_in(list(excluding)))))


def usage(s: Session, excluding: Iterable[str] = (), only: Iterable[str] | None = None) -> list[Usage]:
    """What every node holds, for the services not in `excluding` (the pass counts those itself)
    and, given `only`, in it. An instance being stopped still holds its resources until its
    container is gone; a lost one does not."""
    where = [Instance.node_name.is_not(None), Instance.state != "lost"]
    if only is not None:
        where.append(Instance.service_name.in_(sorted(set(only) - set(excluding))))
    else:
        where.append(Instance.service_name.not_in(list(excluding)))
    grouped = (select(Instance.node_name, Instance.service_name, Instance.revision, Instance.desired_state,
                      func.count(Instance.id).label("n"))
               .where(*where)
               .group_by(Instance.node_name, Instance.service_name, Instance.revision, Instance.desired_state))
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        # one row, the groups as one JSON array: ~one group per instance on a spread cluster
        # (50,000 at 5,000 nodes), and SQLite releases the GIL for every row it steps, each
        # release a wait to get it back on a busy server (service_ops.live_instances)
        g = grouped.subquery()
        blob = conn.execute(select(func.json_group_array(func.json_array(*g.c)))).scalar()
        return [tuple(r) for r in json.loads(blob or "[]")]
    return [tuple(r) for r in conn.execute(grouped)]  # type: ignore[misc]


class UsageCache:
    """usage() for the services a pass does not plan, kept per service with the service's instance
    fingerprint (Snapshot.instances) it was read at; only services whose fingerprint moved are
    read again. At 50,000 instances on 5,000 nodes the whole read was ~50,000 groups, 120-170 ms of
    every placing pass. Memory kind: LEADER-ONLY, derived from the database; the reconciler clears
    it at every takeover and on every safety-net sweep, so a change that escaped the fingerprint
    is read again within seconds (as the sweep re-plans what escaped it)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[tuple | None, list[Usage]]] = {}
        self.reads = 0  # services read from the database (tests)

    def clear(self) -> None:
        self._rows = {}

    def rows(self, s: Session, snap: "Snapshot", excluding: Iterable[str]) -> list[Usage]:
        names = set(snap.instances) - set(excluding)
        for gone in self._rows.keys() - snap.instances.keys():
            del self._rows[gone]
        stale = sorted(n for n in names if n not in self._rows or self._rows[n][0] != snap.instances[n])
        if stale:
            fresh: dict[str, list[Usage]] = defaultdict(list)
            for chunk in assignments.chunks(stale):
                for row in usage(s, only=chunk):
                    fresh[row[1]].append(row)
            for n in stale:
                self._rows[n] = (snap.instances[n], fresh.get(n, []))
            self.reads += len(stale)
        return [row for n in names for row in self._rows[n][1]]


def orphans(s: Session, excluding: Iterable[str]) -> list[Instance]:
    """Stopped instances with no node to run on (never placed, or node removed), of services not
    in `excluding`."""
    return list(s.scalars(select(Instance).where(
        Instance.desired_state == "stopped", Instance.service_name.not_in(list(excluding)),
        Instance.node_name.is_(None) | Instance.node_name.not_in(select(Node.name)))))


def revision_specs(s: Session, services: dict[str, Service], pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """The spec of every (service, revision) given: current ones from the service row."""
    specs = {(svc.name, svc.revision): svc.spec for svc in services.values()}
    missing = set(pairs) - specs.keys()
    if missing:
        names = {name for name, _ in missing}
        for r in s.scalars(select(Revision).where(Revision.service_name.in_(names))):
            specs.setdefault((r.service_name, r.number), r.spec)
    return specs


def node_infos(nodes: Iterable[NodeRow], held: Iterable[Usage], specs: dict[tuple[str, int], dict]) -> list[scheduler.NodeInfo]:
    used_cpu: dict[str, float] = defaultdict(float)
    used_mem: dict[str, int] = defaultdict(int)
    ports: dict[str, set] = defaultdict(set)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for node, service, revision, desired, n in held:
        spec = specs.get((service, revision), {})
        res = spec.get("resources") or {}
        used_cpu[node] += (res.get("cpus") or 0.0) * n
        used_mem[node] += (res.get("memory") or 0) * n
        for p in spec.get("ports", []):
            if p.get("host_port"):
                ports[node].add((p["host_port"], p.get("protocol", "tcp")))
        if desired == "running":
            counts[node][service] += n
    return [
        scheduler.NodeInfo(
            name=n.name, labels=n.labels or {}, cpus=n.cpus, memory=n.memory, ready=n.status == "ready",
            availability=n.availability, used_cpus=used_cpu[n.name], used_memory=used_mem[n.name],
            used_ports=frozenset(ports[n.name]), service_counts=dict(counts[n.name]),
            total_instances=sum(counts[n.name].values()),
        )
        for n in nodes
    ]


def request_for(i: Instance, svc: Service) -> scheduler.Request:
    spec = svc.spec
    res = spec.get("resources") or {}
    pl = spec.get("placement") or {}
    return scheduler.Request(
        key=i.id, service=svc.name, cpus=res.get("cpus") or 0.0, memory=res.get("memory") or 0,
        host_ports=tuple((p["host_port"], p.get("protocol", "tcp")) for p in spec.get("ports", []) if p.get("host_port")),
        constraints=tuple(parse_constraint(c) for c in pl.get("constraints", [])),
        strategy=pl.get("strategy", "spread"), max_per_node=pl.get("max_per_node"),
    )
