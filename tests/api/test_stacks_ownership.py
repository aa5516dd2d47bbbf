"""A stack owns its services: another stack, an apply without a stack, or a stack reaching for a
service outside any stack is refused (409 naming the owner) by PUT, PATCH and /v1/apply alike;
`take_over` in /v1/apply moves a service on purpose."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.service_ops import owner_conflict
from tests.api.principals import assert_error_shape

SPEC = {"image": "busybox:1", "command": ["sleep", "60"]}
OWNED = "service 'web' belongs to stack 'shop'; delete it there or apply with stack 'shop'"

stacks = st.one_of(st.none(), st.sampled_from(["shop", "blog", "s"]))


@given(current=stacks, wanted=stacks, take_over=st.booleans())
def test_owner_rule(current, wanted, take_over):
    why = owner_conflict("web", current, wanted, take_over)
    assert (why is None) == (take_over or current == wanted)
    if why is not None:
        assert why.startswith("service 'web' ")
        if current is None:
            assert "outside any stack" in why and f"stack {wanted!r}" in why
        else:
            assert f"belongs to stack {current!r}" in why and f"apply with stack {current!r}" in why


def _web(client) -> dict:  # type: ignore[no-untyped-def]
    return client.get("/v1/services/web").json()


def _owned(client) -> dict:  # type: ignore[no-untyped-def]
    r = client.put("/v1/services/web", json={**SPEC, "replicas": 2, "stack": "shop"})
    assert r.status_code == 201, r.text
    return r.json()


def test_put_from_another_stack_is_refused_and_changes_nothing(client):
    before = _owned(client)
    err = assert_error_shape(client.put("/v1/services/web", json={**SPEC, "image": "busybox:2", "stack": "blog"}),
                             409, "conflict")
    assert err["message"] == OWNED and err["owner_stack"] == "shop"
    assert err["details"] == [{"field": "stack", "problem": OWNED}]
    after = _web(client)
    assert (after["stack"], after["spec"], after["version"]) == ("shop", before["spec"], before["version"])


def test_put_without_a_stack_is_refused_even_when_nothing_else_changes(client):
    _owned(client)
    client.get("/v1/services/web")  # an answer in the read cache: PUT's fast path must refuse too
    assert_error_shape(client.put("/v1/services/web", json={**SPEC, "replicas": 2}), 409, "conflict")
    assert_error_shape(client.put("/v1/services/web", json={**SPEC, "image": "busybox:2"}), 409, "conflict")
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 2, "stack": "shop"}).status_code == 200
    assert _web(client)["version"] == 1


def test_a_stack_does_not_adopt_a_service_outside_any_stack(client):
    assert client.put("/v1/services/web", json=SPEC).status_code == 201
    err = assert_error_shape(client.put("/v1/services/web", json={**SPEC, "stack": "shop"}), 409, "conflict")
    assert "exists outside any stack" in err["message"] and "take_over" in err["message"]
    assert _web(client)["stack"] is None
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 3}).status_code == 200  # stays stackless


def test_patch_keeps_the_stack_and_cannot_move_it(client):
    _owned(client)
    r = client.patch("/v1/services/web", json={"replicas": 3})
    assert r.status_code == 200 and r.json()["stack"] == "shop"
    assert_error_shape(client.patch("/v1/services/web", json={"stack": "blog"}), 409, "conflict")
    assert_error_shape(client.patch("/v1/services/web", json={"stack": None}), 409, "conflict")
    assert _web(client)["stack"] == "shop"


def test_take_over_moves_a_service_on_purpose(client):
    _owned(client)
    body = {**SPEC, "name": "web", "replicas": 2}
    r = client.post("/v1/apply", json={"services": [{**body, "stack": "blog"}], "take_over": True})
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert res["action"] == "updated" and res["service"]["stack"] == "blog"
    assert res["service"]["revision"] == 1  # a move is no new spec: no revision, no rollout
    moved = [e for e in client.get("/v1/events", params={"service": "web"}).json() if e["kind"] == "service_moved"]
    assert [e["message"] for e in moved] == ["stack shop -> blog"] and moved[0]["actor"]
    # and out of any stack, and back into one
    r = client.post("/v1/apply", json={"services": [body], "take_over": True})
    assert r.json()["results"][0]["service"]["stack"] is None and _web(client)["stack"] is None
    r = client.post("/v1/apply", json={"services": [{**body, "stack": "shop"}], "take_over": True, "dry_run": True})
    assert r.json()["results"][0]["service"]["stack"] == "shop" and _web(client)["stack"] is None
    assert client.get("/v1/services", params={"stack": "blog"}).json() == []


def test_a_name_is_free_again_once_its_stack_deleted_it(client):
    _owned(client)
    assert client.delete("/v1/services/web").status_code == 202
    r = client.post("/v1/apply", json={"services": [{**SPEC, "name": "web", "stack": "blog"}]})
    assert r.status_code == 200 and r.json()["results"][0]["action"] == "created"
    assert _web(client)["stack"] == "blog"
