"""The agents' sync below FastAPI's routing (orchestrator/api/sync_path.py): a well-formed sync
is served by it, and everything else gets the answer the usual path gives, in the error shape."""
from __future__ import annotations

import json

import pytest

from orchestrator.api import sync_path
from orchestrator.errors import Conflict
from tests.api.principals import assert_error_shape, bearer, join_node, make_token

POLL = {"known": None, "wait": 0, "report": None}


@pytest.fixture
def served(monkeypatch):  # type: ignore[no-untyped-def]
    """Counts the syncs the fast path hands to the handler (FastAPI's route calls the handler
    through its own reference, not through this module's)."""
    calls: list[str] = []
    real = sync_path.agent.sync

    async def counted(body, request, st, p):  # type: ignore[no-untyped-def]
        calls.append(p.name)
        return await real(body, request, st, p)

    monkeypatch.setattr(sync_path.agent, "sync", counted)
    return calls


def test_a_well_formed_sync_is_served_below_the_routing(client, served) -> None:
    node = join_node(client, "n1")
    r = client.post("/v1/agent/sync", json=POLL, headers=bearer(node))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["node"] == "n1" and body["assignments"] == [] and body["heartbeat_interval"] > 0
    assert served == ["n1"]
    # the next one says it knows that generation: no assignments sent again
    r = client.post("/v1/agent/sync", json={**POLL, "known": body["generation"]}, headers=bearer(node))
    assert r.status_code == 200 and r.json()["assignments"] is None
    assert served == ["n1", "n1"]
    assert 'dockyard_http_requests_total{method="POST",status="200"}' in client.get("/metrics").text


@pytest.mark.parametrize("case", ["no credential", "bad credential", "user token", "bad body", "not json"])
def test_what_it_does_not_serve_gets_the_usual_answer(client, anon, served, case) -> None:
    node = join_node(client, "n1")
    headers = {"content-type": "application/json", **bearer(node)}
    content = json.dumps(POLL)
    if case == "no credential":
        del headers["Authorization"]
    elif case == "bad credential":
        headers.update(bearer("not-a-credential"))
    elif case == "user token":
        headers.update(bearer(make_token(client, "admin")))
    elif case == "bad body":
        content = json.dumps({"wait": -1})
    else:
        content = "{"
    r = anon.post("/v1/agent/sync", content=content, headers=headers)
    status, code = {"no credential": (401, "unauthorized"), "bad credential": (401, "unauthorized"),
                    "user token": (403, "forbidden"), "bad body": (422, "validation_error"),
                    "not json": (422, "validation_error")}[case]
    err = assert_error_shape(r, status, code)
    if case == "bad body":
        assert err["details"] and err["details"][0]["field"] == "wait"
    assert served == []


def test_a_body_without_a_json_content_type_goes_the_usual_way_and_works(client, served) -> None:
    node = join_node(client, "n1")
    r = client.post("/v1/agent/sync", content=json.dumps(POLL), headers={"content-type": "text/plain", **bearer(node)})
    assert r.status_code == 200 and r.json()["node"] == "n1"
    assert served == []


def test_a_body_over_the_limit_is_refused_as_everywhere(client, served) -> None:
    node = join_node(client, "n1")
    big = json.dumps({**POLL, "known": "x" * (2 * 1024 * 1024)})
    assert_error_shape(client.post("/v1/agent/sync", content=big, headers={"content-type": "application/json",
                                                                           **bearer(node)}), 413, "payload_too_large")
    assert served == []


def test_an_error_the_handler_raises_is_answered_by_the_apps_handlers(client, monkeypatch) -> None:
    node = join_node(client, "n1")

    async def refuses(body, request, st, p):  # type: ignore[no-untyped-def]
        raise Conflict("node n1 was removed meanwhile")

    monkeypatch.setattr(sync_path.agent, "sync", refuses)
    err = assert_error_shape(client.post("/v1/agent/sync", json=POLL, headers=bearer(node)), 409)
    assert "removed meanwhile" in err["message"]


@pytest.mark.parametrize("ctype, fast", [("application/json; charset=utf-8", True), ("Application/JSON", True),
                                         ("application/jsonl", False), ("application/json-seq", False)])
def test_only_the_json_media_type_is_served_below_the_routing(client, served, ctype, fast) -> None:
    node = join_node(client, "n1")
    r = client.post("/v1/agent/sync", content=json.dumps(POLL), headers={"content-type": ctype, **bearer(node)})
    if fast:
        assert r.status_code == 200 and served == ["n1"]
    else:  # FastAPI reads other media types as raw bytes: its usual 422
        assert_error_shape(r, 422, "validation_error")
        assert served == []


def test_a_repeated_authorization_header_counts_its_first_value_as_on_the_route(client, anon, served) -> None:
    node = join_node(client, "n1")
    admin = make_token(client, "admin")
    r = anon.post("/v1/agent/sync", content=json.dumps(POLL),
                  headers=[("content-type", "application/json"), ("authorization", f"Bearer {admin}"),
                           ("authorization", f"Bearer {node}")])
    assert_error_shape(r, 403, "forbidden")
    assert served == []


def test_a_body_over_the_limit_sent_in_chunks_is_refused_as_everywhere(client, served) -> None:
    node = join_node(client, "n1")

    def chunks():  # no Content-Length: the limit is found while reading
        yield b'{"known": "'
        for _ in range(20):
            yield b"x" * (128 * 1024)
        yield b'"}'

    r = client.post("/v1/agent/sync", content=chunks(), headers={"content-type": "application/json", **bearer(node)})
    assert_error_shape(r, 413, "payload_too_large")
    assert served == []


def test_an_unexpected_error_is_left_to_the_server_error_middleware(client, monkeypatch) -> None:
    """As on the route: raised (the test client re-raises; uvicorn logs it and answers 500),
    not turned into an answer by the catch-all handler here."""
    node = join_node(client, "n1")

    async def breaks(body, request, st, p):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the handler")

    monkeypatch.setattr(sync_path.agent, "sync", breaks)
    with pytest.raises(RuntimeError, match="a bug in the handler"):
        client.post("/v1/agent/sync", json=POLL, headers=bearer(node))
