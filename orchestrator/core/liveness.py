"""Node liveness: which nodes go down, and which come back, from their heartbeats. Pure.

A node's newest heartbeat is the newest of what this server heard itself and what any
server wrote to the nodes table. A ready node silent for longer than the TTL goes down; a
down node that beat within half a TTL comes back. Nodes get one TTL of grace from `since`
(when the deciding server started or began to lead), so a server that just arrived does
not declare down the nodes whose heartbeats went to another server meanwhile.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeBeat:
    name: str
    status: str  # ready | down
    persisted: float  # nodes.last_heartbeat
    heard: float = 0.0  # this server's own last heartbeat of it (0: none)


@dataclass(frozen=True, slots=True)
class Transition:
    node: str
    status: str  # the new status
    seen: float  # the newest heartbeat, recorded as last_heartbeat


def decide(nodes: list[NodeBeat], now: float, ttl: float, since: float) -> list[Transition]:
    out = []
    for n in nodes:
        beat = max(n.persisted, n.heard)
        if n.status == "ready" and now - max(beat, since) > ttl:
            out.append(Transition(n.name, "down", max(beat, since)))
        elif n.status == "down" and beat > 0 and now - beat <= ttl / 2:
            out.append(Transition(n.name, "ready", beat))
    return out
