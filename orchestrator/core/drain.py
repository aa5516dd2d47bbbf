"""Draining: which instances on drained nodes may stop now that replacements run elsewhere.

Pure, like the planner. The reconcile loop hides a service's instances on drained nodes
from the planner (which therefore creates replacements, and placement keeps them off the
drained nodes), then asks `drain_stops` which of the hidden ones can go. The rule is
"start the replacement before stopping the old one":

- an instance on a drained node that is not ready serves nobody: it stops at once;
- a ready one stops when an instance of the same slot is ready off the drained nodes
  (its replacement: the planner reuses the free slot), or when the service would still
  have at least `replicas` ready instances without it (scale-down, rollouts).

So a drain never lowers the number of ready instances below what it was, and a drain
that cannot place replacements (no room, constraints) leaves the old instances running.
"""
from __future__ import annotations

from collections import Counter

from orchestrator.core.planner import InstanceView, is_ready


def drain_stops(replicas: int, staying: list[InstanceView], moving: list[InstanceView], now: float,
                min_ready_seconds: float = 0.0) -> list[str]:
    """Ids of `moving` instances (live ones on drained nodes) to stop this pass.

    `staying`: the service's live instances on other nodes, after this pass's planning.
    """
    ready = lambda i: is_ready(i, now, min_ready_seconds)  # noqa: E731
    spare = sum(map(ready, staying)) + sum(map(ready, moving)) - replicas
    covered = Counter(i.slot for i in staying if ready(i))
    stops: list[str] = []
    waiting = []
    # replaced ones first, so spare capacity is not spent on an instance a replacement covers
    for i in sorted(moving, key=lambda i: (i.slot, i.id)):
        if not ready(i):
            stops.append(i.id)
        elif covered[i.slot] > 0:
            covered[i.slot] -= 1
            spare -= 1
            stops.append(i.id)
        else:
            waiting.append(i)
    for i in waiting:
        if spare <= 0:
            break
        spare -= 1
        stops.append(i.id)
    return stops
