"""The agent's pure local diff: assigned instances vs observed containers."""
from __future__ import annotations

from agent.diff import Actions, RestartInfo, backoff, diff, report_state, should_restart
from agent.types import Assignment, Observed


def a(iid: str, policy: str = "always", cap: float = 30.0) -> Assignment:
    return Assignment(iid, "web", 1, 1, {"restart": {"policy": policy, "backoff_cap": cap}, "stop_timeout": 3})


def o(iid: str, state: str = "running", cid: str | None = None, exit_code: int | None = None, health=None) -> Observed:  # type: ignore[no-untyped-def]
    return Observed(iid, "web", 1, 1, cid or f"c-{iid}-{state}", state, exit_code=exit_code, health=health)


def test_nothing_to_do_when_everything_runs():
    assert diff([a("i1"), a("i2")], [o("i1"), o("i2")], {}, now=100) == Actions()


def test_missing_instances_are_started():
    out = diff([a("i1"), a("i2")], [o("i1")], {}, now=0)
    assert [x.instance_id for x in out.run] == ["i2"] and not out.remove and not out.restart


def test_unassigned_containers_are_removed_with_their_own_timeout():
    out = diff([a("i1")], [o("i1"), o("gone"), o("gone2", "exited", exit_code=0)], {}, now=0)
    assert sorted(out.remove) == [("c-gone-running", None), ("c-gone2-exited", None)]


def test_duplicates_keep_the_running_one():
    out = diff([a("i1")], [o("i1", "exited", "old", 1), o("i1", "running", "new")], {}, now=0)
    assert out.remove == [("old", 3)] and not out.restart and not out.run


def test_busy_instances_are_left_alone():
    out = diff([a("i1"), a("i2")], [o("i1", "exited", exit_code=1)], {}, now=0, busy=frozenset({"i1", "i2"}))
    assert out == Actions()


def test_crashed_container_restarts_immediately_then_backs_off():
    crashed = [o("i1", "exited", "c1", 137)]
    assert diff([a("i1")], crashed, {}, now=50).restart == [(a("i1"), "c1")]
    info = RestartInfo(count=3, consecutive=3, last_at=50.0)
    out = diff([a("i1")], crashed, {"i1": info}, now=50.5)
    assert not out.restart and out.wake_at == 50.0 + backoff(3, 30.0)
    assert diff([a("i1")], crashed, {"i1": info}, now=52.1).restart


def test_backoff_grows_and_is_capped():
    assert [backoff(n, 4.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_restart_policies():
    assert should_restart("always", 0) and should_restart("always", 1)
    assert not should_restart("on-failure", 0) and should_restart("on-failure", 2)
    assert should_restart("on-failure", 0, unhealthy=True)
    assert not should_restart("never", 1)
    done = [o("i1", "exited", "c1", 0)]
    assert not diff([a("i1", "on-failure")], done, {}, now=0).restart
    assert not diff([a("i1", "never")], [o("i1", "exited", "c1", 1)], {}, now=0).restart


def test_created_leftover_is_started():
    out = diff([a("i1")], [o("i1", "created", "c1")], {}, now=0)
    assert out.restart == [(a("i1"), "c1")]


def test_failed_start_waits_for_its_backoff():
    out = diff([a("i1")], [], {}, now=10, run_backoff={"i1": 12.0})
    assert not out.run and out.wake_at == 12.0
    assert diff([a("i1")], [], {}, now=12.0, run_backoff={"i1": 12.0}).run


def test_report_state():
    assert report_state(o("i", "running"), "always") == ("running", None)
    assert report_state(o("i", "running", health="healthy"), "always") == ("running", True)
    assert report_state(o("i", "running", health="unhealthy"), "always") == ("running", False)
    assert report_state(o("i", "running", health="starting"), "always") == ("starting", None)
    assert report_state(o("i", "created"), "always") == ("starting", None)
    assert report_state(o("i", "exited", exit_code=1), "never") == ("failed", None)
    assert report_state(o("i", "exited", exit_code=0), "on-failure") == ("exited", None)
    assert report_state(o("i", "exited", exit_code=137), "always") == ("exited", None)


def test_a_draining_container_runs_until_its_drain_ends_then_is_removed():
    draining = {"gone": 105.0}
    out = diff([a("i1")], [o("i1"), o("gone")], {}, now=100, draining=draining)
    assert out.remove == [] and out.wake_at == 105.0
    out = diff([a("i1")], [o("i1"), o("gone")], {}, now=105, draining=draining)
    assert out.remove == [("c-gone-running", None)]
    # one that already exited has nothing to drain: removed at once
    out = diff([], [o("gone", "exited", exit_code=0)], {}, now=100, draining=draining)
    assert out.remove == [("c-gone-exited", None)]
