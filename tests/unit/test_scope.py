"""Which services a pass plans (orchestrator/core/scope.py): examples and properties."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.scope import changed, choose

NAMES = [f"s{k}" for k in range(12)]


def test_a_quiet_cluster_plans_nothing():
    out = choose(NAMES, {n: 10 for n in NAMES})
    assert out.plan == frozenset() and out.deferred == frozenset() and not out.swept


def test_changed_services_are_planned_and_others_left_alone():
    seen = {n: (1,) for n in NAMES}
    now = {**seen, "s3": (2,), "new": (1,)}
    dirty = changed(now, seen)
    assert dirty == {"s3", "new"}
    assert choose([*NAMES, "new"], {}, dirty=dirty).plan == {"s3", "new"}


def test_the_budget_defers_the_rest_and_the_least_recently_planned_go_first():
    sizes = {n: 100 for n in NAMES}
    out = choose(NAMES, sizes, dirty=NAMES, budget=300, last_planned={"s0": 5, "s1": 5})
    assert len(out.plan) == 3 and not out.plan & {"s0", "s1"}
    assert out.deferred == frozenset(NAMES) - out.plan


def test_one_service_is_planned_even_over_the_budget():
    out = choose(["big"], {"big": 50_000}, dirty=["big"], budget=10)
    assert out.plan == {"big"} and not out.deferred


def test_must_is_never_deferred_and_counts_against_the_budget():
    sizes = {n: 100 for n in NAMES}
    out = choose(NAMES, sizes, must=NAMES[:5], watched=["s9"], budget=300)
    assert out.plan == frozenset(NAMES[:5]) and out.deferred == {"s9"}


def test_watched_goes_before_changed():
    sizes = {n: 100 for n in NAMES}
    out = choose(NAMES, sizes, watched=["s7"], dirty=["s1", "s2"], budget=200)
    assert "s7" in out.plan and len(out.plan) == 2


def test_new_services_go_before_watched_rollouts():
    sizes = {n: 100 for n in NAMES}
    out = choose(NAMES, sizes, new=["s8", "s9"], watched=["s1", "s2"], dirty=["s3", "s8", "s9"], budget=200,
                 last_planned={"s1": 0, "s2": 0, "s3": 0})
    assert out.plan == {"s8", "s9"} and out.deferred == {"s1", "s2", "s3"}


def test_waiting_instances_go_before_new_services():
    sizes = {n: 100 for n in NAMES}
    out = choose(NAMES, sizes, urgent=["s1"], new=["s8", "s9"], dirty=["s8", "s9"], budget=200)
    assert out.plan == {"s1", "s8"} and out.deferred == {"s9"}


def test_services_scaled_to_zero_do_not_keep_a_big_one_out():
    """The one service always taken is one with instances: an idle service (no rows, no
    replicas) planned first must not make every bigger-than-budget service wait for ever."""
    sizes = {"idle": 0, "big": 2500}
    out = choose(["idle", "big"], sizes, watched=["idle"], dirty=["big"], budget=2000)
    assert out.plan == {"idle", "big"} and not out.deferred


def test_a_big_service_is_not_starved_by_smaller_ones_after_it():
    sizes = {"a": 100, "b": 1000, "c": 1}
    out = choose(["a", "b", "c"], sizes, dirty=["a", "b", "c"], budget=500, last_planned={"a": 0, "b": 1, "c": 2})
    assert out.plan == {"a"} and out.deferred == {"b", "c"}


def test_the_sweep_takes_the_longest_unplanned_when_due():
    sizes = {n: 100 for n in NAMES}
    last = {n: k for k, n in enumerate(NAMES)}
    assert choose(NAMES, sizes, last_planned=last, budget=250).plan == frozenset()
    out = choose(NAMES, sizes, last_planned=last, budget=250, sweep=True)
    assert out.plan == {"s0", "s1"} and out.swept and not out.deferred


@st.composite
def situations(draw):
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    sub = st.lists(st.sampled_from(NAMES), unique=True, max_size=6)
    return dict(
        services=names,
        sizes={n: draw(st.integers(0, 500)) for n in names},
        must=draw(sub), urgent=draw(sub), new=draw(sub), watched=draw(sub), dirty=draw(sub), sweep=draw(st.booleans()),
        last_planned={n: draw(st.integers(0, 20)) for n in draw(sub)},
        budget=draw(st.integers(0, 2000)), sweep_budget=draw(st.none() | st.integers(0, 1000)),
    )


@given(situations())
def test_the_choice_keeps_its_promises(sit):
    out = choose(**sit)
    names = set(sit["services"])
    must = set(sit["must"]) & names
    wanted = (set(sit["urgent"]) | set(sit["new"]) | set(sit["watched"]) | set(sit["dirty"])) & names
    assert out.plan <= names
    assert must <= out.plan  # never deferred
    assert out.deferred == wanted - out.plan  # whatever was wanted is planned or deferred
    assert not out.deferred & must
    if not sit["sweep"]:
        assert out.plan <= must | wanted
    if out.plan and (out.plan - must):
        # over budget only by must, or by a single first service
        size = sum(sit["sizes"].get(n, 0) for n in out.plan)
        sized = [n for n in out.plan if sit["sizes"].get(n, 0) > 0]  # scaled to 0: weighs nothing
        assert size <= max(sit["budget"], sum(sit["sizes"].get(n, 0) for n in must)) or len(sized) == 1
    if set(sit["urgent"]) & out.deferred:
        assert out.plan - must <= set(sit["urgent"])  # nothing else goes before an urgent service
    if set(sit["new"]) & out.deferred:
        assert out.plan - must <= set(sit["urgent"]) | set(sit["new"])  # nor before a new one
    if (must or wanted) and not out.plan:
        raise AssertionError("something wanted, nothing planned")


def test_the_sweep_has_a_budget_of_its_own():
    sizes = {n: 100 for n in NAMES}
    out = choose(NAMES, sizes, dirty=["s0"], sweep=True, budget=1000, sweep_budget=250)
    assert "s0" in out.plan and len(out.plan) == 3  # s0 changed, then the sweep's 250: two more
    assert len(choose(NAMES, sizes, sweep=True, budget=1000, sweep_budget=50).plan) == 1  # at least one
