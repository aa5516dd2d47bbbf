"""The autoscaling rule (orchestrator/core/autoscale.py): the HPA arithmetic, tolerance,
stabilisation windows and bounds, with properties over random inputs."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from orchestrator.core.autoscale import Policy, decide, recommend

P = Policy(min=1, max=10, metric="cpu", target=50.0, up=0.0, down=300.0, tolerance=0.1)


def test_the_hpa_rule() -> None:
    assert recommend(P, ready=2, current=2, value=183.0) == 8  # ceil(2 x 183 / 50)
    assert recommend(P, ready=2, current=2, value=75.0) == 3  # ceil(2 x 1.5) exactly, not 4
    assert recommend(P, ready=4, current=4, value=54.0) == 4  # within 10 %: no change
    assert recommend(P, ready=4, current=4, value=10.0) == 1
    assert recommend(P, ready=0, current=3, value=500.0) == 3  # nobody ready: no figures to act on
    assert recommend(P, ready=2, current=4, value=10.0) == 4  # two still starting: no scale-down yet


def test_scale_up_at_once_and_down_only_after_the_window() -> None:
    d = decide(P, current=2, ready=2, value=150.0, history=(), now=1000.0)
    assert d.desired == 6 and "cpu 150% against a target of 50%: 2 -> 6" == d.reason
    quiet = decide(P, current=6, ready=6, value=5.0, history=d.history, now=1100.0)
    assert quiet.desired == 6 and quiet.recommendation == 1  # the busy sample is inside 300 s
    later = decide(P, current=6, ready=6, value=5.0, history=quiet.history, now=1301.0)
    assert later.desired == 1  # every recommendation of the last 300 s allows 1


def test_bounds() -> None:
    assert decide(P, current=9, ready=9, value=500.0, history=(), now=0.0).desired == 10
    d = decide(Policy(3, 5, "cpu", 50.0, 0.0, 0.0), current=3, ready=3, value=1.0, history=(), now=0.0)
    assert d.desired == 3 and "bounds 3-5" in d.reason


values = st.one_of(st.none(), st.floats(min_value=0, max_value=10_000, allow_nan=False))
policies = st.builds(lambda lo, span, t, up, down, tol: Policy(lo, lo + span, "rps", t, up, down, tol),
                     st.integers(1, 20), st.integers(0, 30), st.floats(0.5, 1000), st.sampled_from([0.0, 15.0, 60.0]),
                     st.sampled_from([0.0, 30.0, 300.0]), st.floats(0, 0.5))


@settings(max_examples=300)
@given(policies, st.integers(1, 60), st.lists(st.tuples(st.floats(0, 50), values, st.integers(0, 60)), max_size=40))
def test_never_outside_bounds_and_never_flaps_inside_the_tolerance(p, start, steps) -> None:  # type: ignore[no-untyped-def]
    current, history, now = min(max(start, p.min), p.max), (), 0.0
    for dt, value, ready in steps:
        now += dt
        ready = min(ready, current)
        d = decide(p, current, ready, value, history, now)
        assert p.min <= d.desired <= p.max
        if value is not None and ready == current and abs(value / p.target - 1) <= p.tolerance \
                and p.min <= current <= p.max and all(r == current for _, r in history):
            assert d.desired == current  # inside the tolerance with a calm history: nothing moves
        if d.desired < current:
            # a scale-down is allowed by every recommendation of the down window
            assert all(r <= d.desired or d.desired == p.min for t, r in d.history if now - t <= p.down)
        current, history = d.desired, d.history


@given(policies, st.integers(1, 40), st.floats(0, 10_000, allow_nan=False))
def test_a_steady_load_settles_and_stays(p, start, load) -> None:  # type: ignore[no-untyped-def]
    """A constant total load: after the windows pass, the count stops changing (no oscillation)."""
    current, history, changes = min(max(start, p.min), p.max), (), []
    for k in range(40):
        now = k * 30.0
        per = load / current
        d = decide(p, current, current, per, history, now)
        if d.desired != current:
            changes.append(k)
        current, history = d.desired, d.history
    assert not changes or changes[-1] < 30, changes  # settled well before the end
