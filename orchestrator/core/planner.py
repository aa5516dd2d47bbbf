"""The replica and rollout planner: which instances of one service to create and to stop.

A pure function of the service's desired state, its live instances and `now`. It is
level-triggered: run it again on the same input and it asks for nothing new. Rolling
updates follow the Deployment rules users know from Kubernetes: never more than
replicas + max_surge instances, never fewer than replicas - max_unavailable ready ones
(once the service was ready), old instances stop only as new ones become ready.

Phases: `complete` (every instance runs the current revision), `progressing` (a rolling
update or rollback is under way and watched for failure), `paused` (nothing is rolled
further; missing instances are still replaced, with the revision most old ones run),
`rolled_back` (a failed rollout was reverted; the revert itself is not watched, so a
bad previous revision cannot make it flip back and forth).
A rollout fails when a new-revision instance fails (see `is_failed`) or when no new
instance became ready for `progress_deadline` seconds.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

# a new-revision instance that crashed this often counts as a failed rollout
FAILED_RESTARTS = 2
RUNNING_STATES = frozenset({"running", "healthy"})


@dataclass(frozen=True, slots=True)
class InstanceView:
    id: str
    slot: int
    revision: int
    state: str = "pending"
    healthy: bool | None = None  # None: no health check
    ready_since: float | None = None
    restart_count: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class ServiceView:
    name: str
    replicas: int
    revision: int  # the revision every instance should end up running
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"
    min_ready_seconds: float = 0.0
    progress_deadline: float = 600.0
    phase: str = "complete"  # complete | progressing | paused | rolled_back | failed
    rollout_started_at: float = 0.0


@dataclass
class Plan:
    create: list[tuple[int, int]] = field(default_factory=list)  # (slot, revision)
    stop: list[str] = field(default_factory=list)  # instance ids
    phase: str = "complete"
    failure: str | None = None  # set when the rollout must stop (deadline, failing instances)


def resolve(value: int | str, replicas: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    exact = replicas * pct / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def budgets(svc: ServiceView) -> tuple[int, int]:
    """(max_surge, max_unavailable) as counts; like Kubernetes, never both zero."""
    surge = resolve(svc.max_surge, svc.replicas, round_up=True)
    unavailable = resolve(svc.max_unavailable, svc.replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_ready(i: InstanceView, now: float, min_ready_seconds: float = 0.0) -> bool:
    return (
        i.state in RUNNING_STATES
        and i.healthy is not False
        and i.ready_since is not None
        and now - i.ready_since >= min_ready_seconds
    )


def is_failed(i: InstanceView) -> bool:
    """Crashed for good, crash-looping, or unhealthy past its health check's retries."""
    return i.state == "failed" or i.restart_count >= FAILED_RESTARTS or i.healthy is False


def _free_slots(taken: set[int], count: int) -> list[int]:
    slots, n = [], 1
    while len(slots) < count:
        if n not in taken:
            slots.append(n)
        n += 1
    return slots


def plan(svc: ServiceView, live: list[InstanceView], now: float, hidden: tuple[InstanceView, ...] = ()) -> Plan:
    """Plan one pass for one service. `live` holds its instances whose desired state is running.

    `hidden` are live instances the plan must not count (on a drained node: they are being
    replaced) but whose (slot, revision) stays taken until they stop: a replacement gets a
    slot of its own, and at most one live instance holds a (slot, revision) at any time
    (the database's uq_instances_live_slot says so too)."""
    if hidden:
        return _keep_slots_apart(plan(svc, live, now), live, hidden)
    out = Plan(phase=svc.phase)
    ready = lambda i: is_ready(i, now, svc.min_ready_seconds)  # noqa: E731
    new = [i for i in live if i.revision == svc.revision]
    old = [i for i in live if i.revision != svc.revision]

    if svc.phase == "paused":
        return _hold(svc, new, old, now, out)

    # too many of the wanted revision (scale down): stop not-ready ones first, then the highest slots
    if len(new) > svc.replicas:
        victims = sorted(new, key=lambda i: (ready(i), -i.slot))[: len(new) - svc.replicas]
        out.stop += [i.id for i in victims]
        gone = {i.id for i in victims}
        new = [i for i in new if i.id not in gone]

    if not old:
        out.create += [(s, svc.revision) for s in _free_slots({i.slot for i in new}, svc.replicas - len(new))]
        if svc.phase == "progressing" and len(new) == svc.replicas and all(ready(i) for i in new):
            out.phase = "complete"
        elif svc.phase == "progressing":
            out.failure = _failure(svc, new, now)
        return out

    # a rolling update is under way
    out.phase = "progressing" if svc.phase in ("complete", "progressing") else svc.phase
    if out.phase == "progressing":
        out.failure = _failure(svc, new, now)
        if out.failure:
            return out
    surge, unavailable = budgets(svc)
    room = svc.replicas + surge - len(new) - len(old)
    n_create = max(0, min(room, svc.replicas - len(new)))
    out.create += [(s, svc.revision) for s in _free_slots({i.slot for i in new}, n_create)]

    # Old instances that serve nobody (crashed, starting, unhealthy) cost no availability;
    # serving ones go only within budget. min_ready_seconds is the trust a *new* revision
    # must earn: an old instance that serves counts even if it became ready a moment ago.
    up = lambda i: is_ready(i, now)  # noqa: E731
    can_remove = sum(map(ready, new)) + sum(map(up, old)) - (svc.replicas - unavailable)
    # surge first: while new instances can still be created, stop only old ones beyond the
    # replica count; with no room left (max_surge reached, or 0), old ones make the room
    excess_old = len(new) + len(old) - svc.replicas if n_create else len(old)
    for i in sorted(old, key=lambda i: (up(i), -i.slot)):
        if not up(i):
            out.stop.append(i.id)
        elif can_remove > 0 and excess_old > 0:
            out.stop.append(i.id)
            can_remove -= 1
        else:
            continue
        excess_old -= 1
    return out


def _keep_slots_apart(p: Plan, live: list[InstanceView], hidden: tuple[InstanceView, ...]) -> Plan:
    """Move each create off a (slot, revision) that a live or hidden instance already holds."""
    taken = {(i.slot, i.revision) for i in (*live, *hidden)}
    creates = []
    for slot, rev in p.create:
        while (slot, rev) in taken:
            slot += 1
        taken.add((slot, rev))
        creates.append((slot, rev))
    p.create = creates
    return p


def _hold(svc: ServiceView, new: list[InstanceView], old: list[InstanceView], now: float, out: Plan) -> Plan:
    """A paused rollout: roll nothing further, but keep the service at its replica count."""
    live = new + old
    if len(live) < svc.replicas:
        # fill in with what most old instances run (the status quo); with none left, the new revision
        revs = Counter(i.revision for i in old)
        rev = max(revs, key=lambda r: (revs[r], r)) if revs else svc.revision
        out.create += [(s, rev) for s in _free_slots({i.slot for i in live}, svc.replicas - len(live))]
    elif len(live) > svc.replicas + budgets(svc)[0]:  # scaled down while paused
        ready = lambda i: is_ready(i, now, svc.min_ready_seconds)  # noqa: E731
        victims = sorted(live, key=lambda i: (ready(i), i.revision == svc.revision, -i.slot))
        out.stop += [i.id for i in victims[: len(live) - svc.replicas - budgets(svc)[0]]]
    return out


def last_progress(svc: ServiceView, new: list[InstanceView]) -> float:
    """When the rollout last moved: its start, or the latest time a new instance became ready."""
    times = [i.ready_since for i in new if i.ready_since is not None and i.state in RUNNING_STATES]
    return max([svc.rollout_started_at, *times])


def _failure(svc: ServiceView, new: list[InstanceView], now: float) -> str | None:
    failing = [i for i in new if is_failed(i)]
    if failing:
        i = min(failing, key=lambda i: i.slot)
        if i.healthy is False:
            why = i.last_error or "health check failing"
        elif i.state == "failed":
            why = i.last_error or "failed"
        else:
            why = f"restarted {i.restart_count} times" + (f": {i.last_error}" if i.last_error else "")
        return f"{len(failing)} new instance(s) of revision {svc.revision} failed (e.g. slot {i.slot}: {why})"
    if svc.rollout_started_at and now - last_progress(svc, new) > svc.progress_deadline:
        return (f"revision {svc.revision} made no progress (no new instance became ready) "
                f"for the {svc.progress_deadline:g}s progress deadline")
    return None
