"""The agent protocol's shapes: what the agent builds (agent/wire.py, plain dicts) is what the
server's models (orchestrator/protocol.py) accept, and what they would build themselves."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from agent import wire
from orchestrator import protocol

text = st.text(max_size=40)
maybe_int = st.none() | st.integers(min_value=-255, max_value=255)


def test_the_bounds_are_the_servers():
    assert wire.ERROR_MAX == protocol.ERROR_MAX
    assert wire.WAIT_MAX == protocol.SyncIn.model_fields["wait"].metadata[1].le


def test_a_long_error_is_cut_not_refused():
    item = wire.report_item("i1", "failed", error="x" * 10_000)
    assert len(item["error"]) == protocol.ERROR_MAX
    body = wire.sync_request("g1", 5, [item], "")
    parsed = protocol.SyncIn.model_validate(body)  # the server's own validation
    assert parsed.report[0].error.endswith("…") and parsed.routes_known == ""


def test_sync_request_keeps_the_wait_in_bounds_and_says_no_gateway_with_null():
    body = wire.sync_request(None, 500, None, None)
    assert body == {"known": None, "wait": 60.0, "report": None, "routes_known": None}
    assert protocol.SyncIn.model_validate(body).wait == 60.0
    assert wire.sync_request("g", -3, [], "")["wait"] == 0.0


@given(iid=st.text(min_size=1, max_size=32), state=st.sampled_from(["starting", "running", "exited", "failed"]),
       cid=st.none() | st.text(max_size=80), healthy=st.none() | st.booleans(), code=maybe_int,
       ports=st.lists(st.fixed_dictionaries({"container_port": st.integers(1, 65535),
                                             "host_port": st.integers(1, 65535), "protocol": st.just("tcp")}),
                      max_size=3),
       restarts=st.integers(0, 10_000), error=st.text(max_size=5000))
def test_report_items_are_what_the_server_accepts_and_would_build(iid, state, cid, healthy, code, ports, restarts,
                                                                  error):
    item = wire.report_item(iid, state, container_id=cid, healthy=healthy, exit_code=code, host_ports=ports,
                            restart_count=restarts, error=error)
    assert protocol.ReportItem.model_validate(item).model_dump() == item


@given(known=st.none() | text, wait=st.floats(-10, 100), routes=st.none() | text)
def test_sync_requests_are_what_the_server_accepts_and_would_build(known, wait, routes):
    body = wire.sync_request(known, wait, None, routes)
    assert protocol.SyncIn.model_validate(body).model_dump() == body


@given(labels=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
       cpus=st.integers(0, 64) | st.floats(0, 64), memory=st.integers(0, 2**40), credential=st.none() | text)
def test_join_requests_are_what_the_server_accepts_and_would_build(labels, cpus, memory, credential):
    body = wire.join_request(join_token="t", node_name="node-1", gateway="0.0.0.0:8000", labels=labels, cpus=cpus,
                             memory=memory, agent_version="0.1.0", engine_version="20.10", credential=credential,
                             agent_url="https://10.0.0.1:4000", address="10.0.0.1", agent_cert="PEM")
    assert protocol.JoinIn.model_validate(body).model_dump() == body


def test_a_bad_node_name_is_the_servers_to_refuse():
    # the agent does not check names itself (that needs pydantic's spec module): the server's
    # 422 message is what its join loop logs
    with pytest.raises(ValidationError):
        protocol.JoinIn.model_validate(wire.join_request(join_token="t", node_name="Not_A_Name"))
