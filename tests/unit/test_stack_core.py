"""The pure core of releases (orchestrator/stacks/core.py): diffs between releases and the
decision about a rolling release, driven with plain data and an injected `now`."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.planner import InstanceView
from orchestrator.stacks import core

NOW = 1000.0
names = st.sampled_from(["front", "api", "db", "jobs"])
records = st.fixed_dictionaries({"spec": st.fixed_dictionaries({"image": st.sampled_from(["a:1", "a:2"])}),
                                 "replicas": st.integers(0, 3)})
releases = st.dictionaries(names, records, max_size=4)


@given(old=releases, new=releases)
def test_service_changes_name_every_service_once_with_its_action(old, new):
    out = core.service_changes(old, new)
    assert [e["service"] for e in out] == sorted(old.keys() | new.keys())
    for e in out:
        a, b = old.get(e["service"]), new.get(e["service"])
        if a is None:
            assert e["action"] == "created"
        elif b is None:
            assert e["action"] == "deleted"
        elif a == b:
            assert e["action"] == "unchanged" and e["changes"] == []
        elif a["spec"] != b["spec"]:
            assert e["action"] == "updated" and e["changes"]
        else:
            assert e["action"] == "scaled" and e["replicas"] == {"from": a["replicas"], "to": b["replicas"]}
    assert core.changed(out) == (old != new)


def test_values_changes_are_dotted():
    assert core.values_changes({"db": {"size": 1}}, {"db": {"size": 2}, "x": True}) == [
        {"field": "db.size", "from": 1, "to": 2}, {"field": "x", "from": None, "to": True}]


def ready(slot: int, rev: int, **kw) -> InstanceView:  # type: ignore[no-untyped-def]
    return InstanceView(id=f"i{slot}-{rev}", slot=slot, revision=rev, state="running", healthy=True,
                        ready_since=NOW - 10, **kw)


def member(name: str, rev: int, *instances: InstanceView, phase: str = "complete", replicas: int = 1,
           reason: str = "") -> core.Member:
    return core.Member(name, rev, replicas, phase, reason, tuple(instances))


EXPECT = {"front": {"revision": 2, "changed": True}, "db": {"revision": 1, "changed": False}}


def rolling(**kw) -> core.Rolling:  # type: ignore[no-untyped-def]
    return core.Rolling(**{"release": 3, "expect": EXPECT, "started_at": NOW - 5, "atomic": True,
                           "rollout_from": 2, **kw})


def test_deployed_when_every_changed_service_is_ready_on_its_revision():
    d = core.decide(rolling(), {"front": member("front", 2, ready(1, 2)), "db": member("db", 1)}, NOW)
    assert d.outcome == "deployed"


def test_waits_while_old_instances_remain_or_new_ones_are_not_ready():
    old_left = {"front": member("front", 2, ready(1, 2), ready(2, 1)), "db": member("db", 1)}
    assert core.decide(rolling(), old_left, NOW).outcome == "wait"
    starting = {"front": member("front", 2, InstanceView("x", 1, 2, "starting"), phase="progressing"),
                "db": member("db", 1)}
    assert core.decide(rolling(), starting, NOW).outcome == "wait"


def test_a_failing_new_instance_fails_the_release_and_atomic_goes_back():
    sick = InstanceView("x", 1, 2, "running", healthy=False, last_error="http check failed")
    d = core.decide(rolling(), {"front": member("front", 2, sick, phase="progressing"), "db": member("db", 1)}, NOW)
    assert d.outcome == "failed" and d.rollback_to == 2
    assert "release 3 failed" in d.reason and "service front" in d.reason and "http check failed" in d.reason
    assert "rolled back to release 2" in d.reason
    d = core.decide(rolling(atomic=False), {"front": member("front", 2, sick), "db": member("db", 1)}, NOW)
    assert d.outcome == "failed" and d.rollback_to is None


def test_a_service_that_rolled_itself_back_fails_the_release():
    back = member("front", 1, ready(1, 1), phase="rolled_back", reason="rolled back from revision 2: boom")
    d = core.decide(rolling(), {"front": back, "db": member("db", 1)}, NOW)
    assert d.outcome == "failed" and "boom" in d.reason


def test_an_unchanged_service_is_not_judged_by_its_old_crashes():
    crashed_long_ago = ready(1, 1, restart_count=5)
    d = core.decide(rolling(), {"front": member("front", 2, ready(1, 2)), "db": member("db", 1, crashed_long_ago)},
                    NOW)
    assert d.outcome == "deployed"


def test_a_missing_service_or_the_deadline_fails_it():
    assert core.decide(rolling(), {"db": member("db", 1)}, NOW).outcome == "failed"
    slow = {"front": member("front", 2, phase="progressing"), "db": member("db", 1)}
    assert core.decide(rolling(started_at=NOW - 10), slow, NOW).outcome == "wait"
    d = core.decide(rolling(started_at=NOW - 601), slow, NOW)
    assert d.outcome == "failed" and "progress deadline" in d.reason and "front" in d.reason


def test_the_first_release_has_nothing_to_go_back_to():
    sick = InstanceView("x", 1, 2, "failed", last_error="exit 1")
    d = core.decide(rolling(rollout_from=None), {"front": member("front", 2, sick), "db": member("db", 1)}, NOW)
    assert d.outcome == "failed" and d.rollback_to is None


states = st.sampled_from(["running", "starting", "failed", "pending"])
views = st.builds(InstanceView, id=st.just("i"), slot=st.integers(1, 3), revision=st.integers(1, 3), state=states,
                  healthy=st.sampled_from([None, True, False]), ready_since=st.sampled_from([None, NOW - 1]),
                  restart_count=st.integers(0, 3))


@given(instances=st.lists(views, max_size=4), rev=st.integers(1, 3), phase=st.sampled_from(
    ["complete", "progressing", "paused", "rolled_back"]), atomic=st.booleans(),
    back=st.one_of(st.none(), st.integers(1, 4)), age=st.floats(0, 2000))
def test_decide_is_total_and_only_atomic_goes_back(instances, rev, phase, atomic, back, age):
    r = core.Rolling(release=4, expect={"front": {"revision": 2, "changed": True}}, started_at=NOW - age,
                     atomic=atomic, rollout_from=back)
    d = core.decide(r, {"front": member("front", rev, *instances, phase=phase)}, NOW)
    assert d.outcome in ("wait", "deployed", "failed")
    if d.rollback_to is not None:
        assert d.outcome == "failed" and atomic and d.rollback_to == back and back != 4
    if d.outcome == "deployed":
        assert rev == 2 and phase == "complete"
    if d.outcome == "failed":
        assert d.reason.startswith("release 4 failed")
    assert core.decide(r, {"front": member("front", rev, *instances, phase=phase)}, NOW) == d  # no hidden state


def test_previous_release_and_rollback_source():
    assert core.previous_release([1, 2, 3], 3, "deployed", None) == 2
    assert core.previous_release([1, 2, 3], 3, "failed", 1) == 1
    assert core.previous_release([1], 1, "deployed", None) is None
    assert core.rollback_source("deployed", 3, 2) == 3
    assert core.rollback_source("failed", 3, 2) == 2
