"""The pure replica/rollout planner: budgets, ordering, phases, failure detection, and
property tests that simulate whole rollouts step by step."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from orchestrator.core.planner import (
    FAILED_RESTARTS,
    InstanceView,
    Plan,
    ServiceView,
    budgets,
    is_failed,
    is_ready,
    plan,
    resolve,
)

NOW = 1000.0


def svc(replicas: int = 4, revision: int = 2, surge: int | str = "25%", unavailable: int | str = "25%",
        phase: str = "progressing", **kw) -> ServiceView:  # type: ignore[no-untyped-def]
    return ServiceView(name="web", replicas=replicas, revision=revision, max_surge=surge,
                       max_unavailable=unavailable, phase=phase, rollout_started_at=kw.pop("started", NOW - 1), **kw)


def ready(iid: str, slot: int, rev: int = 1, since: float = NOW - 100) -> InstanceView:
    return InstanceView(id=iid, slot=slot, revision=rev, state="running", healthy=True, ready_since=since)


def pending(iid: str, slot: int, rev: int = 2, state: str = "pending") -> InstanceView:
    return InstanceView(id=iid, slot=slot, revision=rev, state=state)


def olds(n: int, rev: int = 1) -> list[InstanceView]:
    return [ready(f"o{k}", k, rev) for k in range(1, n + 1)]


# -- budgets -------------------------------------------------------------------------------

@pytest.mark.parametrize("value,replicas,up,expected", [
    (3, 10, True, 3), (0, 10, False, 0), ("25%", 4, True, 1), ("25%", 4, False, 1),
    ("25%", 3, True, 1), ("25%", 3, False, 0), ("50%", 5, True, 3), ("50%", 5, False, 2),
    ("100%", 7, False, 7), ("0%", 9, True, 0), ("10%", 1, True, 1), ("10%", 1, False, 0),
])
def test_resolve_rounds_surge_up_and_unavailable_down(value, replicas, up, expected):  # type: ignore[no-untyped-def]
    assert resolve(value, replicas, round_up=up) == expected


@pytest.mark.parametrize("surge,unavailable,replicas,expected", [
    ("25%", "25%", 4, (1, 1)), ("25%", "25%", 1, (1, 0)), ("25%", "25%", 10, (3, 2)),
    (0, "25%", 2, (0, 1)),  # both would be 0: like Kubernetes, one may be unavailable
    (0, 0, 5, (0, 1)), ("0%", "0%", 5, (0, 1)), (2, 0, 5, (2, 0)), (0, 3, 5, (0, 3)),
])
def test_budgets(surge, unavailable, replicas, expected):  # type: ignore[no-untyped-def]
    assert budgets(svc(replicas, surge=surge, unavailable=unavailable)) == expected


# -- readiness and failure -----------------------------------------------------------------

def test_ready_needs_running_not_unhealthy_and_min_ready_seconds():
    assert is_ready(ready("a", 1), NOW)
    assert is_ready(replace(ready("a", 1), healthy=None), NOW)  # no health check
    assert not is_ready(replace(ready("a", 1), healthy=False), NOW)
    assert not is_ready(replace(ready("a", 1), state="starting"), NOW)
    assert not is_ready(replace(ready("a", 1), ready_since=None), NOW)
    assert not is_ready(ready("a", 1, since=NOW - 1), NOW, min_ready_seconds=5)
    assert is_ready(ready("a", 1, since=NOW - 5), NOW, min_ready_seconds=5)


def test_failed_means_failed_crash_looping_or_unhealthy():
    assert is_failed(pending("a", 1, state="failed"))
    assert is_failed(replace(pending("a", 1, state="running"), restart_count=FAILED_RESTARTS))
    assert is_failed(replace(pending("a", 1, state="running"), healthy=False))
    assert not is_failed(replace(pending("a", 1, state="running"), restart_count=FAILED_RESTARTS - 1))
    assert not is_failed(pending("a", 1, state="starting"))


# -- plain replica management ----------------------------------------------------------------

def test_creates_missing_replicas_in_free_slots():
    p = plan(svc(4, revision=1, phase="complete"), [ready("a", 2, 1)], NOW)
    assert sorted(p.create) == [(1, 1), (3, 1), (4, 1)] and not p.stop and p.phase == "complete"


def test_scale_down_stops_not_ready_first_then_highest_slots():
    live = [ready("a", 1, 1), ready("b", 2, 1), pending("c", 3, 1), ready("d", 4, 1)]
    p = plan(svc(2, revision=1, phase="complete"), live, NOW)
    assert sorted(p.stop) == ["c", "d"] and not p.create


def test_is_level_triggered_nothing_to_do_when_converged():
    p = plan(svc(3, revision=1, phase="complete"), olds(3), NOW)
    assert p == Plan(phase="complete")


# -- rolling update ------------------------------------------------------------------------

def test_rollout_starts_with_surge_and_no_stop_before_a_new_instance_exists():
    p = plan(svc(4), olds(4), NOW)
    assert p.create == [(1, 2)] and p.stop == [] and p.phase == "progressing"


def test_rollout_spends_unavailable_budget_once_new_instances_exist():
    live = olds(4) + [pending("n1", 1)]
    p = plan(svc(4), live, NOW)
    assert len(p.stop) == 1 and p.stop[0].startswith("o")
    assert p.create == []  # 5 instances = replicas + surge


def test_new_instances_must_be_ready_before_old_ones_stop_with_zero_unavailable():
    live = olds(3) + [pending("n1", 1, state="starting")]
    p = plan(svc(3, surge=1, unavailable=0), live, NOW)
    assert p.stop == [] and p.create == []
    live = olds(3) + [ready("n1", 1, rev=2, since=NOW)]
    p = plan(svc(3, surge=1, unavailable=0), live, NOW)
    assert len(p.stop) == 1 and p.create == []


def test_min_ready_seconds_delays_the_next_step():
    live = olds(3) + [ready("n1", 1, rev=2, since=NOW - 1)]
    s = svc(3, surge=1, unavailable=0, min_ready_seconds=5)
    assert plan(s, live, NOW).stop == []
    assert len(plan(s, live, NOW + 4).stop) == 1


def test_serving_old_instances_are_not_free_to_stop_during_their_min_ready_seconds():
    # regression: old instances that became ready just before the update counted as "not
    # ready" under min_ready_seconds and were all stopped at once
    live = [ready("o1", 1, since=NOW - 0.1), ready("o2", 2, since=NOW - 0.1)]
    s = svc(2, surge=1, unavailable=0, min_ready_seconds=5)
    p = plan(s, live, NOW)
    assert p.stop == [] and p.create == [(1, 2)]
    p = plan(s, live + [pending("n1", 1)], NOW)
    assert p.stop == []


def test_not_ready_old_instances_stop_at_once():
    live = [ready("o1", 1), pending("o2", 2, rev=1, state="exited"), ready("o3", 3)]
    p = plan(svc(3, surge=1, unavailable=0), live, NOW)
    assert "o2" in p.stop and "o1" not in p.stop and "o3" not in p.stop


def test_rollout_completes_when_every_instance_is_new_and_ready():
    live = [ready(f"n{k}", k, rev=2, since=NOW - 1) for k in (1, 2, 3)]
    p = plan(svc(3), live, NOW)
    assert p.phase == "complete" and not p.create and not p.stop


def test_rollout_is_not_complete_while_a_new_instance_is_not_ready():
    live = [ready("n1", 1, rev=2), ready("n2", 2, rev=2), pending("n3", 3, state="starting")]
    assert plan(svc(3), live, NOW).phase == "progressing"


def test_scaling_down_during_a_rollout_converges():
    live = olds(6) + [ready("n1", 1, rev=2)]
    p = plan(svc(2), live, NOW)
    assert not p.create
    assert len(p.stop) >= 4  # old ones above the floor go at once


# -- failures --------------------------------------------------------------------------------

def test_a_failing_new_instance_fails_the_rollout_and_freezes_it():
    bad = replace(pending("n1", 1, state="running"), healthy=False, last_error="GET /x returned 404")
    p = plan(svc(4), olds(4) + [bad], NOW)
    assert p.failure and "slot 1" in p.failure and "404" in p.failure
    assert p.create == [] and p.stop == []


def test_crash_looping_new_instance_fails_the_rollout():
    bad = replace(pending("n1", 1, state="exited"), restart_count=FAILED_RESTARTS, last_error="exit 1")
    assert "restarted" in (plan(svc(4), olds(4) + [bad], NOW).failure or "")


def test_old_instances_failing_do_not_fail_the_rollout():
    bad = replace(ready("o1", 1), healthy=False, state="running")
    assert plan(svc(3), [bad, *olds(3)[1:]], NOW).failure is None


def test_progress_deadline_counts_from_the_last_progress():
    s = svc(3, started=NOW - 100, progress_deadline=60)
    assert "progress deadline" in (plan(s, olds(3) + [pending("n1", 1, state="starting")], NOW).failure or "")
    # a new instance became ready 10s ago: the rollout is moving
    live = olds(3) + [ready("n1", 1, rev=2, since=NOW - 10)]
    assert plan(s, live, NOW).failure is None


def test_failures_are_only_judged_while_progressing():
    bad = replace(pending("n1", 1, state="running"), healthy=False)
    for phase in ("rolled_back", "complete"):
        # rolled_back: revision 1 is current again and the bad instance (rev 2) is an old one
        p = plan(svc(3, revision=1, phase=phase), [*olds(3)[:2], replace(bad, revision=2)], NOW)
        assert p.failure is None and "n1" in p.stop


def test_rolled_back_phase_survives_completion():
    p = plan(svc(3, revision=1, phase="rolled_back"), olds(3), NOW)
    assert p.phase == "rolled_back"


# -- pause ---------------------------------------------------------------------------------

def test_paused_rolls_nothing_further():
    live = olds(3) + [ready("n1", 1, rev=2)]
    p = plan(svc(3, phase="paused"), live, NOW)
    assert p.create == [] and p.stop == [] and p.phase == "paused"


def test_paused_still_replaces_lost_instances_with_the_old_revision():
    live = olds(3)[:2] + [ready("n1", 1, rev=2)]
    p = plan(svc(4, phase="paused"), live, NOW)
    assert p.create == [(3, 1)]
    p = plan(svc(2, phase="paused"), [ready("n1", 1, rev=2)], NOW)
    assert p.create == [(2, 2)]


def test_paused_scale_down_stops_extra_instances_beyond_the_surge():
    live = olds(3) + [pending("n1", 4, state="starting")]
    p = plan(svc(2, phase="paused"), live, NOW)  # 2 replicas + 1 surge
    assert p.stop == ["n1"]


# -- properties: simulate rollouts step by step ---------------------------------------------

count_or_pct = st.one_of(st.integers(0, 5), st.sampled_from(["0%", "10%", "25%", "33%", "50%", "100%"]))


def _apply(live: list[InstanceView], p: Plan, step: int) -> list[InstanceView]:
    gone = set(p.stop)
    out = [i for i in live if i.id not in gone]
    out += [InstanceView(id=f"s{step}-{slot}", slot=slot, revision=rev) for slot, rev in p.create]
    return out


def _count_ready(live: list[InstanceView], now: float, min_ready: float) -> int:
    return sum(is_ready(i, now, min_ready) for i in live)


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(1, 12), surge=count_or_pct, unavailable=count_or_pct,
    min_ready=st.sampled_from([0.0, 1.0, 3.0]),
    seed=st.randoms(use_true_random=False),
)
def test_rollout_respects_surge_and_availability_and_completes(replicas, surge, unavailable, min_ready, seed):  # type: ignore[no-untyped-def]
    assume(not (surge in (0, "0%") and unavailable in (0, "0%")))
    s = ServiceView(name="web", replicas=replicas, revision=2, max_surge=surge, max_unavailable=unavailable,
                    min_ready_seconds=min_ready, phase="progressing", rollout_started_at=0.0,
                    progress_deadline=10_000)
    max_surge, max_unavailable = budgets(s)
    now = 100.0
    # the service was ready: every old instance serves, some only just (inside min_ready_seconds)
    live = [ready(f"o{k}", k, 1, since=now - seed.choice([0.0, 0.5, 100.0])) for k in range(1, replicas + 1)]
    settled = max(i.ready_since for i in live) + min_ready  # type: ignore[operator]
    for step in range(400):
        p = plan(s, live, now)
        assert p.failure is None
        live = _apply(live, p, step)
        assert len(live) <= replicas + max_surge, "more instances than replicas + max_surge"
        assert _count_ready(live, now, 0) >= replicas - max_unavailable, "fewer serving than the floor"
        if now >= settled:  # once the old ones are past min_ready_seconds, the strict count holds too
            assert _count_ready(live, now, min_ready) >= replicas - max_unavailable, "fewer ready than the floor"
        assert len({i.slot for i in live if i.revision == 2}) == sum(i.revision == 2 for i in live)
        if p.phase == "complete":
            break
        s = replace(s, phase=p.phase)
        # time passes; some instances progress one state (never backwards in this simulation)
        now += seed.choice([0.1, 0.5, 1.0, 2.0])
        moved = []
        for i in live:
            if i.state == "pending" and seed.random() < 0.7:
                i = replace(i, state="starting")
            elif i.state == "starting" and seed.random() < 0.5:
                i = replace(i, state="running", healthy=True, ready_since=now)
            moved.append(i)
        live = moved
    else:
        pytest.fail("rollout did not complete")
    assert len(live) == replicas and all(i.revision == 2 for i in live)
    assert p.phase == "complete"


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(1, 10), surge=count_or_pct, unavailable=count_or_pct,
    events=st.lists(st.tuples(st.sampled_from(["ready", "start", "crash", "lose", "fail"]), st.integers(0, 30)),
                    max_size=80),
)
def test_instance_count_bound_holds_whatever_happens(replicas, surge, unavailable, events):  # type: ignore[no-untyped-def]
    """Crashes, lost instances and failures: the planner never asks for more than replicas + surge,
    and whenever it stops a ready instance the service keeps at least replicas - max_unavailable ready."""
    assume(not (surge in (0, "0%") and unavailable in (0, "0%")))
    s = ServiceView(name="web", replicas=replicas, revision=2, max_surge=surge, max_unavailable=unavailable,
                    phase="progressing", rollout_started_at=0.0, progress_deadline=10_000)
    max_surge, max_unavailable = budgets(s)
    now = 100.0
    live = [ready(f"o{k}", k, 1, since=0.0) for k in range(1, replicas + 1)]
    for step, (what, k) in enumerate(events):
        p = plan(s, live, now)
        before_ready = _count_ready(live, now, 0)
        stopped_ready = [i for i in live if i.id in p.stop and is_ready(i, now)]
        live = _apply(live, p, step)
        assert len(live) <= replicas + max_surge
        if stopped_ready:
            assert _count_ready(live, now, 0) >= min(before_ready, replicas - max_unavailable)
        if p.failure:
            s = replace(s, phase="paused")
        else:
            s = replace(s, phase=p.phase)
        now += 1.0
        if not live:
            continue
        i = live[k % len(live)]
        changed = {
            "ready": replace(i, state="running", healthy=True, ready_since=now),
            "start": replace(i, state="starting", ready_since=None),
            "crash": replace(i, state="exited", ready_since=None, restart_count=i.restart_count + 1),
            "lose": None,
            "fail": replace(i, state="failed", ready_since=None),
        }[what]
        live = [x for x in live if x.id != i.id] + ([changed] if changed else [])


@settings(max_examples=100, deadline=None)
@given(replicas=st.integers(1, 10), surge=count_or_pct, unavailable=count_or_pct, bad_slot=st.integers(0, 9))
def test_a_bad_revision_never_takes_down_the_floor(replicas, surge, unavailable, bad_slot):  # type: ignore[no-untyped-def]
    """New instances never become ready; the old ones keep at least the floor and the rollout
    fails once a new instance turns unhealthy."""
    assume(not (surge in (0, "0%") and unavailable in (0, "0%")))
    s = ServiceView(name="web", replicas=replicas, revision=2, max_surge=surge, max_unavailable=unavailable,
                    phase="progressing", rollout_started_at=0.0, progress_deadline=10_000)
    _, max_unavailable = budgets(s)
    now = 100.0
    live = [ready(f"o{k}", k, 1, since=0.0) for k in range(1, replicas + 1)]
    for step in range(30):
        p = plan(s, live, now)
        if p.failure:
            break
        live = _apply(live, p, step)
        assert sum(is_ready(i, now) for i in live if i.revision == 1) >= replicas - max_unavailable
        now += 1
        news = [i for i in live if i.revision == 2]
        if step >= 3 and news:
            bad = news[bad_slot % len(news)]
            live = [x for x in live if x.id != bad.id] + [replace(bad, state="running", healthy=False)]
        else:
            live = [replace(i, state="starting") if i.revision == 2 else i for i in live]
    else:
        pytest.fail("the rollout never failed")
    assert sum(i.revision == 1 for i in live) >= replicas - max_unavailable


def test_replacements_of_hidden_instances_get_slots_of_their_own():
    """Instances on a drained node are hidden from the count but keep their (slot, revision):
    at most one live instance per (slot, revision), as the database's unique index demands."""
    svc = ServiceView(name="web", replicas=3, revision=1)
    hidden = (InstanceView(id="h1", slot=1, revision=1, state="running", ready_since=0.0),)
    live = [InstanceView(id="a", slot=2, revision=1, state="running", ready_since=0.0),
            InstanceView(id="b", slot=3, revision=1, state="running", ready_since=0.0)]
    p = plan(svc, live, 100.0, hidden)
    assert len(p.create) == 1
    assert p.create[0] not in {(1, 1), (2, 1), (3, 1)}


@given(st.integers(1, 6), st.lists(st.integers(1, 8), max_size=6, unique=True), st.lists(st.integers(1, 8), max_size=4, unique=True))
def test_creates_never_take_a_held_slot(replicas, live_slots, hidden_slots):
    svc = ServiceView(name="web", replicas=replicas, revision=1)
    live = [InstanceView(id=f"l{s}", slot=s, revision=1, state="running", ready_since=0.0) for s in live_slots]
    hidden = tuple(InstanceView(id=f"h{s}", slot=s, revision=1, state="running", ready_since=0.0) for s in hidden_slots)
    p = plan(svc, live, 100.0, hidden)
    held = {(i.slot, i.revision) for i in (*live, *hidden)}
    assert not held & set(p.create)
    assert len(set(p.create)) == len(p.create)
