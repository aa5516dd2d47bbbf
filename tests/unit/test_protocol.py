"""The agent protocol's shapes: what the agent builds is what the server accepts."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator import protocol


def test_a_long_error_is_cut_not_refused():
    item = protocol.report_item("i1", "failed", error="x" * 10_000)
    assert len(item["error"]) == protocol.ERROR_MAX
    body = protocol.sync_request("g1", 5, [item], "")
    parsed = protocol.SyncIn.model_validate(body)  # the server's own validation
    assert parsed.report[0].error.endswith("…") and parsed.routes_known == ""


def test_sync_request_keeps_the_wait_in_bounds_and_says_no_gateway_with_null():
    body = protocol.sync_request(None, 500, None, None)
    assert body == {"known": None, "wait": 60.0, "report": None, "routes_known": None}
    assert protocol.SyncIn.model_validate(body).wait == 60.0


def test_join_request_is_checked_as_the_server_checks_it():
    body = protocol.join_request(join_token="t", node_name="node-1", gateway="0.0.0.0:8000")
    assert protocol.JoinIn.model_validate(body).gateway == "0.0.0.0:8000"
    with pytest.raises(ValidationError):
        protocol.join_request(join_token="t", node_name="Not_A_Name")
