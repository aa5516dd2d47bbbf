"""Which services a reconcile pass plans: the incremental pass's choice. Pure.

A pass used to load and plan every instance of the cluster (4 s at 50,000 instances: a stall for
the API and the agents, one process, one GIL). It now plans only the services that need it, by
urgency, within a budget of instances, least recently planned first within each class:

0. must: services whose instances this pass itself changed (a node went down) or that a rolling
   stack waits on. Never deferred: the pass's other decisions (stack steps, replacements) read
   them.
1. urgent: instances waiting for a node, on a drained node, or being moved by the rebalancer.
2. new: services with replicas and no instance yet (just created: nothing of theirs runs).
   Applying 500 services at 5,000 nodes, the last ~100 waited ~20 passes behind the first
   400's rollouts (their instances' "running" reports coming in).
3. watched: a rollout in progress: time alone moves it.
4. changed: the service's row or its instances' rows differ from when it was last planned
   (a per-service fingerprint; new services have none), or its nodes changed (drained,
   labels, resources, back up).
5. sweep: when the safety net is due, the services planned longest ago, whatever their state,
   so every service is re-planned now and then even if a change escaped its fingerprint.
Classes 1-5 fill the budget (at least one service with instances is always taken); what does
not fit stays wanted and the next pass takes it first within its class, since it is then the
least recently planned. The sweep has a smaller budget of its own: it runs every few seconds
on a quiet cluster, where every pass is a short stall for the API.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    plan: frozenset[str]  # the services this pass plans
    deferred: frozenset[str]  # dirty services left for a later pass (over the budget)
    swept: bool  # the sweep class was considered (the safety net is due)


def changed(current: Mapping[str, Hashable], seen: Mapping[str, Hashable]) -> set[str]:
    """Services whose fingerprint differs from the one they had when last planned (or are new)."""
    return {name for name, fp in current.items() if seen.get(name) != fp}


def choose(services: Iterable[str], sizes: Mapping[str, int], *, must: Iterable[str] = (),
           urgent: Iterable[str] = (), new: Iterable[str] = (), watched: Iterable[str] = (),
           dirty: Iterable[str] = (), sweep: bool = False, last_planned: Mapping[str, int] | None = None,
           budget: int = 5000, sweep_budget: int | None = None) -> Scope:
    """The services to plan now (see the module doc). `sizes` is instances per service (missing: 0);
    `last_planned` the pass number each was last planned in (missing: never, so first)."""
    names = set(services)
    last = last_planned or {}
    must_ = set(must) & names
    classes: list[set[str]] = []
    seen = set(must_)
    for group in (urgent, new, watched, dirty):
        classes.append(set(group) & names - seen)
        seen |= classes[-1]
    if sweep:
        classes.append(names - seen)
    wanted = len(classes) if not sweep else len(classes) - 1  # the sweep's leftovers are not deferred
    taken = set(must_)
    used = sum(sizes.get(n, 0) for n in taken)
    deferred: set[str] = set()
    # once one service does not fit, none after it is taken (no starving a big one); services of
    # no size (scaled to 0) do not count as the one always taken
    full = False
    for k, group in enumerate(classes):
        if k == wanted and sweep_budget is not None:
            budget = min(budget, used + sweep_budget)
        for name in sorted(group, key=lambda n: (last.get(n, -1), n)):
            size = sizes.get(name, 0)
            full = full or (used > 0 and used + size > budget)
            if full:
                if k < wanted:
                    deferred.add(name)
                continue
            taken.add(name)
            used += size
    return Scope(plan=frozenset(taken), deferred=frozenset(deferred), swept=sweep)
