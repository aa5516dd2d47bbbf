"""The server loads as objects only the instances a report changes (orchestrator/api/agent.py
_changing): it must pick exactly those that applying the report would write."""
from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from orchestrator.api.agent import REPORTED, _changing, _observe
from orchestrator.models import Instance
from orchestrator.protocol import ReportItem

COLUMNS = [c.key for c in REPORTED]
states = st.sampled_from(["pending", "assigned", "starting", "running", "exited", "failed", "lost"])
ports = st.sampled_from([[], [{"container_port": 80, "host_port": 32768, "protocol": "tcp"}]])
rows = st.fixed_dictionaries({
    "desired_state": st.sampled_from(["running", "stopped"]), "state": states,
    "healthy": st.sampled_from([None, True, False]), "restart_count": st.integers(0, 2),
    "container_id": st.sampled_from([None, "c1", "c2"]), "exit_code": st.sampled_from([None, 0, 1]),
    "host_ports": ports, "last_error": st.sampled_from(["", "boom"]), "ready_since": st.sampled_from([None, 5.0]),
})
reports = st.fixed_dictionaries({
    "state": st.sampled_from(["starting", "running", "exited", "failed"]), "healthy": st.sampled_from([None, True, False]),
    "restart_count": st.integers(0, 2), "container_id": st.sampled_from(["c1", "c2"]),
    "exit_code": st.sampled_from([None, 0, 1]), "host_ports": ports, "error": st.sampled_from(["", "boom"]),
})


@settings(max_examples=500, deadline=None)
@given(rows, st.none() | reports)
def test_a_row_is_picked_exactly_when_the_report_would_change_it(row, report):
    stored = SimpleNamespace(id="i1", node_name="n1", **row)
    items = [] if report is None else [ReportItem(instance_id="i1", **report)]
    picked = bool(_changing([stored], items))
    i = Instance(id="i1", node_name="n1", service_name="web", slot=0, revision=1, updated_at=1.0, **row)
    before = {c: getattr(i, c) for c in COLUMNS}
    if report is None:
        # _write_report: a stopped instance whose container is gone is deleted; a running one
        # that the agent does not report goes back to assigned
        changed = row["desired_state"] == "stopped" or row["state"] not in ("assigned", "pending")
    else:
        _observe(i, items[0], now=10.0)
        changed = {c: getattr(i, c) for c in COLUMNS} != before
    assert picked == changed
