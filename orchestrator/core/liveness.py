"""Node liveness: which nodes go down, and which come back, from their heartbeats. Pure.

A node's newest heartbeat is the newest of what this server heard itself and what any
server wrote to the nodes table. Two ways down:

- dropped: the agent's long poll was closed by the agent's side (its process died, its host
  closed the socket) and no heartbeat came since: down once the grace passes without one
  (`suspect` is when the connection closed, written to the nodes table by whichever server
  saw it; a heartbeat after it clears it);
- silent: a ready node silent for longer than the TTL goes down (a host that stopped
  answering sends no FIN, so only time tells).

A down node that beat within half a TTL (and since its drop, if it was dropped) comes back. Nodes get one TTL of grace from `since`
(when the deciding server started or began to lead), so a server that just arrived does not
declare down the nodes whose heartbeats went to another server meanwhile; for the same
reason a suspect mark older than `since` does not count (its node falls back to the TTL).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeBeat:
    name: str
    status: str  # ready | down
    persisted: float  # nodes.last_heartbeat
    heard: float = 0.0  # this server's own last heartbeat of it (0: none)
    suspect: float = 0.0  # nodes.suspect_since: when its agent's long poll was dropped (0: never)


@dataclass(frozen=True, slots=True)
class Transition:
    node: str
    status: str  # the new status
    seen: float  # the newest heartbeat, recorded as last_heartbeat
    dropped: bool = False  # down because its agent's connection closed (not the TTL)


def suspect_since(n: NodeBeat, since: float) -> float:
    """When the node became suspect, if that still counts (0: it does not): the drop came
    after its newest heartbeat, and while the deciding server was already in charge."""
    if n.status == "ready" and n.suspect > max(n.persisted, n.heard) and n.suspect >= since:
        return n.suspect
    return 0.0


def decide(nodes: list[NodeBeat], now: float, ttl: float, since: float, grace: float | None = None) -> list[Transition]:
    """`grace`: seconds a dropped node has to reconnect (None: dropped connections do not count)."""
    out = []
    for n in nodes:
        beat = max(n.persisted, n.heard)
        dropped = suspect_since(n, since) if grace is not None else 0.0
        if n.status == "ready" and dropped and now - dropped > grace:  # type: ignore[operator]
            out.append(Transition(n.name, "down", beat, dropped=True))
        elif n.status == "ready" and now - max(beat, since) > ttl:
            out.append(Transition(n.name, "down", max(beat, since)))
        elif n.status == "down" and beat > n.suspect and now - beat <= ttl / 2:
            # (beat > 0; and newer than its drop: one that went down early kept its last beat)
            out.append(Transition(n.name, "ready", beat))
    return out


def next_deadline(nodes: list[NodeBeat], now: float, ttl: float, since: float, grace: float | None = None) -> float | None:
    """The soonest time after `now` at which `decide` would declare a node down if nothing
    is heard meanwhile (None: none is ready), so the caller can look again then."""
    soonest = None
    for n in nodes:
        if n.status != "ready":
            continue
        beat = max(n.persisted, n.heard)
        at = max(beat, since) + ttl
        dropped = suspect_since(n, since) if grace is not None else 0.0
        if dropped:
            at = min(at, dropped + grace)  # type: ignore[operator]
        if at >= now and (soonest is None or at < soonest):
            soonest = at
    return soonest
