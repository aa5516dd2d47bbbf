"""Placement: decide which node each pending instance goes to (filter, then score).

Pure functions over plain data: no I/O, no database, no Docker. The reconcile loop
builds `NodeInfo`s and `Request`s from the database, calls `place`, and persists the
`Decision`s.

How a request is placed:
  1. filters, in order, each `(node_state, request) -> None | reason`; the first reason
     that rejects a node is the one reported for it;
  2. among the nodes that pass, the best by the request's strategy's score key
     (`spread` or `binpack`); nodes listed in `request.avoid` rank after all others.

Speed: the server places ~10,000 requests over ~1,000 nodes per pass. Consecutive
requests with identical requirements (the replicas of one service) form a group. For a
group, the static filters (ready, availability, constraints) run once per node, the
passing nodes go into a heap ordered by score key, and only the dynamic filters (cpu,
memory, host ports, max per node) are re-checked on the node at the top of the heap.
This is exact, not a heuristic: inside a group only the chosen node changes, so every
other heap key stays valid, and a node rejected by a dynamic filter can only get fuller,
so it stays rejected (with the same reason) for the rest of the group.
Each group costs O(nodes) to set up, so callers should pass a service's pending
instances next to each other (e.g. ordered by service, then slot).
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from orchestrator.core.constraints import Constraint

# Requests are floats such as 0.1 summed many times; don't refuse a node over a rounding crumb.
_CPU_EPSILON = 1e-9


@dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    cpus: float                 # capacity
    memory: int                 # capacity, bytes
    ready: bool = True
    availability: str = "active"   # active | paused | drained ; only active nodes take new instances
    used_cpus: float = 0.0      # sum of cpu requests of instances already on the node
    used_memory: int = 0
    used_ports: frozenset[tuple[int, str]] = frozenset()   # (host_port, protocol) already taken
    service_counts: Mapping[str, int] = field(default_factory=dict)  # live instances per service on this node
    total_instances: int = 0


@dataclass(frozen=True)
class Request:
    key: str                    # instance id
    service: str
    cpus: float = 0.0
    memory: int = 0
    host_ports: tuple[tuple[int, str], ...] = ()   # fixed host ports it needs
    constraints: tuple[Constraint, ...] = ()
    strategy: str = "spread"    # spread | binpack
    max_per_node: int | None = None
    avoid: frozenset[str] = frozenset()   # nodes to use only if nothing else fits


@dataclass(frozen=True)
class Decision:
    key: str
    node: str | None            # None = unschedulable
    reason: str | None = None   # set when node is None


class NodeState:
    """Mutable working view of one node during a `place` call (the inputs stay frozen)."""

    __slots__ = ("info", "index", "name", "used_cpus", "used_memory", "used_ports",
                 "service_counts", "total_instances", "load")

    def __init__(self, info: NodeInfo, index: int = 0):
        self.info = info
        self.index = index          # position in the input: last tiebreak, and the heap's handle
        self.name = info.name
        self.used_cpus = info.used_cpus
        self.used_memory = info.used_memory
        self.used_ports = frozenset(info.used_ports)
        self.service_counts = dict(info.service_counts)
        self.total_instances = info.total_instances
        self.load = self._load()

    def _load(self) -> float:
        # Dominant share: the fuller of cpu and memory is what limits the node.
        return max(_fraction(self.used_cpus, self.info.cpus), _fraction(self.used_memory, self.info.memory))

    def add(self, req: Request) -> None:
        self.used_cpus += req.cpus
        self.used_memory += req.memory
        if req.host_ports:
            self.used_ports = self.used_ports | frozenset(req.host_ports)
        self.service_counts[req.service] = self.service_counts.get(req.service, 0) + 1
        self.total_instances += 1
        self.load = self._load()


def _fraction(used: float, capacity: float) -> float:
    if capacity > 0:
        return used / capacity
    return 1.0 if used > 0 else 0.0


# ---- filters ---------------------------------------------------------------------------

Filter = Callable[[NodeState, Request], "str | None"]


def check_ready(node: NodeState, req: Request) -> str | None:
    return None if node.info.ready else "node down"


def check_availability(node: NodeState, req: Request) -> str | None:
    availability = node.info.availability
    return None if availability == "active" else f"node {availability}"


def check_constraints(node: NodeState, req: Request) -> str | None:
    for c in req.constraints:
        if not c.matches(node.info.labels, node.name):
            return f"did not match {constraint_text(c)}"
    return None


def check_cpu(node: NodeState, req: Request) -> str | None:
    if req.cpus > 0 and node.used_cpus + req.cpus > node.info.cpus + _CPU_EPSILON:
        return "insufficient cpu"
    return None


def check_memory(node: NodeState, req: Request) -> str | None:
    if req.memory > 0 and node.used_memory + req.memory > node.info.memory:
        return "insufficient memory"
    return None


def check_host_ports(node: NodeState, req: Request) -> str | None:
    for port, proto in req.host_ports:
        if (port, proto) in node.used_ports:
            return f"host port {port}/{proto} in use"
    return None


def check_max_per_node(node: NodeState, req: Request) -> str | None:
    limit = req.max_per_node
    if limit is not None and node.service_counts.get(req.service, 0) >= limit:
        return f"max {limit} per node reached"
    return None


# Static filters depend only on the node's fixed facts and the request's constraints;
# dynamic ones depend on usage, which changes as requests are placed.
STATIC_FILTERS: tuple[Filter, ...] = (check_ready, check_availability, check_constraints)
DYNAMIC_FILTERS: tuple[Filter, ...] = (check_cpu, check_memory, check_host_ports, check_max_per_node)
FILTERS: tuple[Filter, ...] = STATIC_FILTERS + DYNAMIC_FILTERS


def constraint_text(c: Constraint) -> str:
    if c.text:
        return c.text
    if c.op == "exists":
        return f"{c.key} exists"
    if c.op == "in":
        return f"{c.key} in ({', '.join(c.values)})"
    return f"{c.key}{c.op}{c.values[0]}"


def _dynamic_filters_for(req: Request) -> tuple[Filter, ...]:
    # Skip filters that cannot reject this request: keeps the hot loop short.
    wanted = []
    if req.cpus > 0:
        wanted.append(check_cpu)
    if req.memory > 0:
        wanted.append(check_memory)
    if req.host_ports:
        wanted.append(check_host_ports)
    if req.max_per_node is not None:
        wanted.append(check_max_per_node)
    return tuple(wanted)


# ---- scoring -----------------------------------------------------------------------------
# Smaller key = better node. Name, then input position, make the choice deterministic.
# Keys are flat tuples ending in the node's index so they serve directly as heap entries.

def spread_key(node: NodeState, req: Request) -> tuple:
    """Fewest instances of this service, then least loaded, then fewest instances, then name."""
    return (node.name in req.avoid, node.service_counts.get(req.service, 0),
            node.load, node.total_instances, node.name, node.index)


def binpack_key(node: NodeState, req: Request) -> tuple:
    """Most loaded, then most instances of this service, then most instances, then name."""
    return (node.name in req.avoid, -node.load, -node.service_counts.get(req.service, 0),
            -node.total_instances, node.name, node.index)


SCORERS: dict[str, Callable[[NodeState, Request], tuple]] = {"spread": spread_key, "binpack": binpack_key}


def unschedulable_reason(rejections: Mapping[str, int], total_nodes: int) -> str:
    """`0/3 nodes available: 2 insufficient memory, 1 did not match zone==b`."""
    if total_nodes == 0:
        return "0/0 nodes available: no nodes registered"
    groups = sorted(rejections.items(), key=lambda item: (-item[1], item[0]))
    return f"0/{total_nodes} nodes available: " + ", ".join(f"{n} {text}" for text, n in groups)


# ---- placement -----------------------------------------------------------------------------

def _requirements(req: Request) -> tuple:
    """Everything but the key: requests equal here are interchangeable for placement."""
    return (req.service, req.cpus, req.memory, req.host_ports, req.constraints,
            req.strategy, req.max_per_node, req.avoid)


def place(requests: Sequence[Request], nodes: Sequence[NodeInfo]) -> list[Decision]:
    """Place requests in order; each placement updates the working view of node usage so later
    requests in the same call see it. Returns one Decision per request, same order.

    Raises ValueError for a strategy other than spread or binpack (the API validates specs).
    """
    for req in requests:
        if req.strategy not in SCORERS:
            raise ValueError(f"unknown placement strategy {req.strategy!r} for {req.key}")
    states = [NodeState(info, i) for i, info in enumerate(nodes)]
    total = len(states)
    # Static results depend only on the constraints, so groups sharing constraints share them.
    static_cache: dict[tuple, tuple[list[int], Counter]] = {}
    decisions: list[Decision] = []
    i = 0
    while i < len(requests):
        first = requests[i]
        reqs = _requirements(first)
        j = i + 1
        while j < len(requests) and _requirements(requests[j]) == reqs:
            j += 1
        decisions.extend(_place_group(requests[i:j], states, total, static_cache))
        i = j
    return decisions


def _place_group(group: Sequence[Request], states: list[NodeState], total: int,
                 static_cache: dict[tuple, tuple[list[int], Counter]]) -> list[Decision]:
    first = group[0]
    cached = static_cache.get(first.constraints)
    if cached is None:
        eligible: list[int] = []
        static_rejections: Counter = Counter()
        for idx, st in enumerate(states):
            for check in STATIC_FILTERS:
                reason = check(st, first)
                if reason is not None:
                    static_rejections[reason] += 1
                    break
            else:
                eligible.append(idx)
        cached = static_cache[first.constraints] = (eligible, static_rejections)
    eligible, static_rejections = cached

    score = SCORERS[first.strategy]
    dynamic = _dynamic_filters_for(first)
    heap = [score(states[idx], first) for idx in eligible]
    heapq.heapify(heap)
    rejections = Counter(static_rejections)

    decisions = []
    exhausted_reason = None
    for req in group:
        placed = None
        while heap:
            st = states[heap[0][-1]]
            reason = None
            for check in dynamic:
                reason = check(st, req)
                if reason is not None:
                    break
            if reason is not None:
                # Stays rejected for the rest of the group: see the module docstring.
                heapq.heappop(heap)
                rejections[reason] += 1
                continue
            st.add(req)
            heapq.heapreplace(heap, score(st, req))
            placed = st.name
            break
        if placed is None:
            # Once the heap is empty nothing changes for the rest of the group.
            if exhausted_reason is None:
                exhausted_reason = unschedulable_reason(rejections, total)
            decisions.append(Decision(req.key, None, exhausted_reason))
        else:
            decisions.append(Decision(req.key, placed))
    return decisions
