"""The pure drain rule: start the replacement before stopping the old instance."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.drain import drain_stops
from orchestrator.core.planner import InstanceView, is_ready

NOW = 1000.0


def inst(iid: str, slot: int, ready: bool = True, state: str | None = None) -> InstanceView:
    return InstanceView(id=iid, slot=slot, revision=1, state=state or ("running" if ready else "starting"),
                        ready_since=NOW - 5 if ready else None)


def test_ready_instance_waits_for_its_replacement():
    staying = [inst("a1", 1), inst("a2", 2), inst("r3", 3, ready=False)]
    assert drain_stops(3, staying, [inst("d3", 3)], NOW) == []


def test_ready_instance_stops_once_its_replacement_is_ready():
    staying = [inst("a1", 1), inst("a2", 2), inst("r3", 3)]
    assert drain_stops(3, staying, [inst("d3", 3)], NOW) == ["d3"]


def test_not_ready_instances_stop_at_once():
    staying = [inst("a1", 1), inst("r2", 2, ready=False)]
    assert drain_stops(2, staying, [inst("d2", 2, state="assigned", ready=False)], NOW) == ["d2"]


def test_replacement_covers_even_when_another_instance_is_broken():
    # slot 2 crash-loops elsewhere: the drain of slot 3 must still finish once slot 3 is replaced
    staying = [inst("a1", 1), inst("b2", 2, ready=False, state="exited"), inst("r3", 3)]
    assert drain_stops(3, staying, [inst("d3", 3)], NOW) == ["d3"]


def test_spare_ready_instances_allow_stopping_without_a_replacement():
    # scaled down from 3 to 2 while draining: nothing replaces slot 3, and nothing needs to
    staying = [inst("a1", 1), inst("a2", 2)]
    assert drain_stops(2, staying, [inst("d3", 3)], NOW) == ["d3"]


def test_nothing_placeable_keeps_old_instances_running():
    assert drain_stops(2, [], [inst("d1", 1), inst("d2", 2)], NOW) == []


def test_min_ready_seconds_delays_the_stop():
    fresh = InstanceView(id="r1", slot=1, revision=1, state="running", ready_since=NOW - 1)
    assert drain_stops(1, [fresh], [inst("d1", 1)], NOW, min_ready_seconds=3) == []
    assert drain_stops(1, [fresh], [inst("d1", 1)], NOW + 3, min_ready_seconds=3) == ["d1"]


def test_one_replacement_covers_one_old_instance():
    staying = [inst("r1", 1)]
    stops = drain_stops(2, staying, [inst("d1", 1), inst("d1b", 1)], NOW)
    assert len(stops) == 1


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(0, 6),
    staying=st.lists(st.tuples(st.integers(1, 6), st.booleans()), max_size=8),
    moving=st.lists(st.tuples(st.integers(1, 6), st.booleans()), max_size=6),
)
def test_ready_count_never_drops_below_the_lower_of_replicas_and_before(replicas, staying, moving):
    s = [inst(f"s{n}", slot, ready) for n, (slot, ready) in enumerate(staying)]
    m = [inst(f"m{n}", slot, ready) for n, (slot, ready) in enumerate(moving)]
    stops = set(drain_stops(replicas, s, m, NOW))
    assert stops <= {i.id for i in m}
    # every not-ready moving instance goes
    assert {i.id for i in m if not is_ready(i, NOW)} <= stops
    ready = lambda i: is_ready(i, NOW)  # noqa: E731
    ready_before = sum(map(ready, s + m))
    ready_stopped = sum(1 for i in m if i.id in stops and ready(i))
    pairs = sum(min(sum(1 for i in s if i.slot == slot and ready(i)), sum(1 for i in m if i.slot == slot and ready(i)))
                for slot in {i.slot for i in m})
    # a ready instance stops only for a ready replacement of its slot, or when enough others are ready
    assert ready_stopped <= max(pairs, ready_before - replicas)
    assert ready_before - ready_stopped >= min(replicas, ready_before - pairs)
    # with enough ready replacements everything on the drained node goes
    if all(sum(1 for j in s if j.slot == i.slot and is_ready(j, NOW)) >= sum(1 for k in m if k.slot == i.slot)
           for i in m):
        assert stops == {i.id for i in m}
