"""The dashboard summary's pure parts (orchestrator/api/summary.py): rows and their diff."""
from __future__ import annotations

from types import SimpleNamespace as NS

from orchestrator.api import summary
from orchestrator.core.planner import InstanceView


def _svc(name="web", replicas=2, phase="complete", spec=None):  # type: ignore[no-untyped-def]
    return NS(name=name, replicas=replicas, revision=1, status_message="", rollout_phase=phase, stack=None,
              spec=spec or {"image": "img"})


def _inst(i: str, healthy=None, state="running"):  # type: ignore[no-untyped-def]
    return InstanceView(i, 1, 1, state, healthy, 0.0, 0, None)


def test_service_health() -> None:
    both = [_inst("a"), _inst("b")]
    assert summary.service_row(_svc(), both, 100.0)["health"] == "healthy"
    assert summary.service_row(_svc(), both[:1], 100.0)["health"] == "degraded"
    assert summary.service_row(_svc(), [_inst("a"), _inst("b", healthy=False)], 100.0)["health"] == "degraded"
    assert summary.service_row(_svc(phase="progressing"), both, 100.0)["health"] == "rolling"
    row = summary.service_row(_svc(name="dev/api"), both, 100.0)
    assert (row["key"], row["namespace"], row["name"], row["ready"], row["replicas"]) == ("dev/api", "dev", "api", 2, 2)


def test_node_use_is_what_placed_instances_request() -> None:
    nodes = [NS(name="n1", status="ready", availability="active", labels={"zone": "a"}, address="", cpus=4.0,
                memory=8 << 30), NS(name="n2", status="down", availability="drained", labels=None, address="",
                                   cpus=2.0, memory=1 << 30)]
    specs = {("web", 1): {"resources": {"cpus": 0.5, "memory": 1 << 20}}, ("web", 2): {}}
    rows = summary.node_rows(nodes, [("n1", "web", 1, 2), ("n1", "web", 2, 1)], specs)
    assert (rows[0]["used_cpus"], rows[0]["used_memory"], rows[0]["instances"]) == (1.0, 2 << 20, 3)
    assert (rows[1]["used_cpus"], rows[1]["instances"], rows[1]["labels"]) == (0.0, 0, {})


def test_diff_sends_changed_and_removed_rows_only() -> None:
    old = {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}}
    new = {"a": {"x": 1}, "b": {"x": 9}, "d": {"x": 4}}
    assert summary.diff(old, new) == ([{"x": 9}, {"x": 4}], ["c"])
    assert summary.diff(new, new) == ([], [])


def test_stale_rows_are_new_changed_or_timed() -> None:
    fps = {"a": (1,), "b": (2,), "c": (3,), "d": (4,)}
    cached = {"a": (1,), "b": (9,), "d": (4,), "gone": (5,)}
    assert summary.stale(fps, cached, timed={"d"}) == ["b", "c", "d"]
    assert summary.stale(fps, fps, timed=set()) == []
