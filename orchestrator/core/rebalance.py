"""Rebalancing: which instances to move so a service spreads evenly again. Pure.

The ideal of the spread strategy is every eligible node (ready, active, matching the
service's constraints) running n/k or n/k + 1 of its n instances. While the most loaded node
has two more than the least loaded one, a ready instance of the most loaded moves towards the
least loaded; at most `max_moves` at a time. A move is surge-first (orchestrator/reconcile.py
treats a moving instance like one on a drained node: the replacement is placed and ready
before the old one is stopped, core/drain.py), so a rebalance never lowers the ready count.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Placed:
    instance_id: str
    slot: int
    node: str
    ready: bool


@dataclass(frozen=True)
class Move:
    instance_id: str
    slot: int
    source: str
    target: str  # where the spread strategy should place its replacement

    def text(self, service: str) -> str:
        return f"{service} slot {self.slot} ({self.instance_id}): {self.source} -> {self.target}"


def counts(instances: list[Placed], eligible: list[str]) -> Counter:
    c: Counter = Counter({n: 0 for n in eligible})
    for i in instances:
        if i.node in c:
            c[i.node] += 1
    return c


def balanced(instances: list[Placed], eligible: list[str]) -> bool:
    c = counts(instances, eligible)
    return not c or max(c.values()) - min(c.values()) <= 1


def plan(instances: list[Placed], eligible: list[str], max_moves: int) -> list[Move]:
    """Up to `max_moves` moves towards an even spread over `eligible` (sorted, deterministic).
    Instances on nodes that are not eligible are left to the loop (drain, node loss)."""
    c = counts(instances, eligible)
    movable = {n: sorted((i for i in instances if i.node == n and i.ready), key=lambda i: (-i.slot, i.instance_id))
               for n in c}
    moves: list[Move] = []
    while len(moves) < max_moves and c:
        source = max(sorted(c), key=lambda n: (c[n], len(movable[n])))
        target = min(sorted(c), key=lambda n: c[n])
        if c[source] - c[target] <= 1 or not movable[source]:
            break
        i = movable[source].pop(0)
        moves.append(Move(i.instance_id, i.slot, source, target))
        c[source] -= 1
        c[target] += 1
    return moves


def moving_ids(automation: dict | None) -> set[str]:
    """Instance ids a service's rebalance is moving (from `services.automation`, automation.py)."""
    return {m["instance"] for m in ((automation or {}).get("rebalance") or {}).get("moves") or []}
