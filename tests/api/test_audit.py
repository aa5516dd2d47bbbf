"""Audit: every mutating call of the user API becomes an event naming the token that made it.

The list of mutating operations comes from /openapi.json, so a new write endpoint without
a recipe here (and so without a checked audit event) fails the coverage test.
"""
from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.api.principals import bearer, join_node, make_token
from tests.api.test_roles import OPERATIONS

# a stack of one service with no replicas: its release is deployed at the leader's next pass
STACK = {"services": [{"name": "sa", "image": "busybox:1", "replicas": 0}]}
# (method, path) -> (principal, url, body, expected event kind)
RECIPES = [
    ("PUT", "/v1/services/{name}", "op", "/v1/services/web", {"image": "busybox:1", "replicas": 1}, "service_created"),
    ("PATCH", "/v1/services/{name}", "op", "/v1/services/web", {"env": {"A": "1"}}, "service_updated"),
    ("POST", "/v1/services/{name}/rollout/pause", "op", "/v1/services/web/rollout/pause", None, "rollout_paused"),
    ("POST", "/v1/services/{name}/rollout/resume", "op", "/v1/services/web/rollout/resume", None, "rollout_resumed"),
    ("POST", "/v1/services/{name}/scale", "op", "/v1/services/web/scale", {"replicas": 3}, "service_scaled"),
    ("POST", "/v1/services/{name}/rebalance", "op", "/v1/services/web/rebalance", None, "rebalance_requested"),
    ("POST", "/v1/services/{name}/rollback", "op", "/v1/services/web/rollback", None, "rollback"),
    ("DELETE", "/v1/services/{name}", "op", "/v1/services/web", None, "service_deleted"),
    ("POST", "/v1/apply", "op", "/v1/apply", {"services": [{"name": "batch", "image": "busybox:1"}]},
     "service_created"),
    ("PUT", "/v1/stacks/{name}", "op", "/v1/stacks/shop", STACK, "stack_released"),
    ("PUT", "/v1/stacks/{name}", "op", "/v1/stacks/shop", {**STACK, "values": {"a": 1}}, "stack_released"),
    ("POST", "/v1/stacks/{name}/rollback", "op", "/v1/stacks/shop/rollback", {"release": 1}, "stack_rollback"),
    ("DELETE", "/v1/stacks/{name}", "op", "/v1/stacks/shop", None, "stack_deleted"),
    ("POST", "/v1/namespaces", "adm", "/v1/namespaces", {"name": "team"}, "namespace_created"),
    ("PUT", "/v1/namespaces/{ns}/stacks/{name}", "op", "/v1/namespaces/team/stacks/shop", STACK, "stack_released"),
    ("PUT", "/v1/namespaces/{ns}/stacks/{name}", "op", "/v1/namespaces/team/stacks/shop",
     {**STACK, "values": {"a": 1}}, "stack_released"),
    ("POST", "/v1/namespaces/{ns}/stacks/{name}/rollback", "op", "/v1/namespaces/team/stacks/shop/rollback",
     {"release": 1}, "stack_rollback"),
    ("DELETE", "/v1/namespaces/{ns}/stacks/{name}", "op", "/v1/namespaces/team/stacks/shop", None, "stack_deleted"),
    ("PUT", "/v1/namespaces/{ns}/services/{name}", "op", "/v1/namespaces/team/services/web",
     {"image": "busybox:1", "replicas": 1}, "service_created"),
    ("PATCH", "/v1/namespaces/{ns}/services/{name}", "op", "/v1/namespaces/team/services/web", {"env": {"A": "1"}},
     "service_updated"),
    ("POST", "/v1/namespaces/{ns}/services/{name}/rollout/pause", "op", "/v1/namespaces/team/services/web/rollout/pause",
     None, "rollout_paused"),
    ("POST", "/v1/namespaces/{ns}/services/{name}/rollout/resume", "op",
     "/v1/namespaces/team/services/web/rollout/resume", None, "rollout_resumed"),
    ("POST", "/v1/namespaces/{ns}/services/{name}/scale", "op", "/v1/namespaces/team/services/web/scale",
     {"replicas": 3}, "service_scaled"),
    ("POST", "/v1/namespaces/{ns}/services/{name}/rebalance", "op", "/v1/namespaces/team/services/web/rebalance",
     None, "rebalance_requested"),
    ("POST", "/v1/namespaces/{ns}/services/{name}/rollback", "op", "/v1/namespaces/team/services/web/rollback", None,
     "rollback"),
    ("DELETE", "/v1/namespaces/{ns}/services/{name}", "op", "/v1/namespaces/team/services/web", None,
     "service_deleted"),
    ("POST", "/v1/namespaces/{ns}/apply", "op", "/v1/namespaces/team/apply",
     {"services": [{"name": "batch", "image": "busybox:1"}]}, "service_created"),
    ("PATCH", "/v1/namespaces/{ns}", "adm", "/v1/namespaces/team", {"quotas": {"instances": 50}}, "namespace_updated"),
    ("DELETE", "/v1/namespaces/{ns}", "adm", "/v1/namespaces/team", None, "namespace_deleted"),
    ("POST", "/v1/nodes/{name}/pause", "adm", "/v1/nodes/n1/pause", None, "node_paused"),
    ("POST", "/v1/nodes/{name}/activate", "adm", "/v1/nodes/n1/activate", None, "node_activated"),
    ("POST", "/v1/nodes/{name}/drain", "adm", "/v1/nodes/n1/drain", None, "node_drained"),
    ("DELETE", "/v1/nodes/{name}", "adm", "/v1/nodes/n1", None, "node_removed"),
    ("POST", "/v1/tokens", "adm", "/v1/tokens", {"name": "made", "role": "viewer"}, "token_created"),
    ("DELETE", "/v1/tokens/{token_id}", "adm", "/v1/tokens/{made}", None, "token_deleted"),
    ("POST", "/v1/cluster/join-token/rotate", "adm", "/v1/cluster/join-token/rotate", None, "join_token_rotated"),
]
NOT_AUDITED = {("POST", "/v1/agent/join"), ("POST", "/v1/agent/sync"),  # the agent protocol, not user calls
               ("POST", "/v1/agent/metrics"), ("POST", "/v1/agent/leave")}
# audited, and checked where the operation can run: an exec needs an instance placed on a node
AUDITED_ELSEWHERE = {("POST", "/v1/instances/{instance_id}/exec"): "tests/api/test_exec.py"}


def _wait_empty(client, node: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + 10
    while time.time() < deadline:
        if next(n for n in client.get("/v1/nodes").json() if n["name"] == node)["instances"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"node {node} still has instances 10 s after its drain")


def _wait_settled(client, url: str) -> None:  # type: ignore[no-untyped-def]
    stack = url.removesuffix("/rollback")
    deadline = time.time() + 10
    while time.time() < deadline:
        r = client.get(stack)
        if r.status_code == 404 or r.json()["state"] != "rolling":
            return
        time.sleep(0.05)
    raise AssertionError(f"{stack} still rolling 10 s later")


def test_every_mutating_operation_has_an_audit_recipe():
    mutating = {(m, p) for m, p, _ in OPERATIONS if m != "GET"} - NOT_AUDITED - set(AUDITED_ELSEWHERE)
    covered = {(m, p) for m, p, *_ in RECIPES}
    assert mutating <= covered, f"mutating operations with no audit check: {sorted(mutating - covered)}"


def test_mutating_calls_are_events_naming_their_token(client):
    tokens = {"op": make_token(client, "operator", "deployer"), "adm": make_token(client, "admin", "root-ops")}
    labels = {"op": "token:deployer", "adm": "token:root-ops"}
    join_node(client, "n1")
    anon = TestClient(client.app)
    made_id = None
    for method, _path, who, url, body, kind in RECIPES:
        if "{made}" in url:
            url = url.replace("{made}", made_id)
        if kind == "node_removed":
            _wait_empty(client, "n1")  # the drain just asked the leader's next pass to move 'batch' off n1
        if kind.startswith("stack_"):
            _wait_settled(client, url)  # a change while a release rolls out is a 409
        last = client.get("/v1/events", params={"limit": 1}).json()
        since = last[0]["id"] if last else 0
        r = anon.request(method, url, json=body, headers=bearer(tokens[who]))
        assert r.status_code < 300, (method, url, r.status_code, r.text)
        if kind == "token_created":
            made_id = r.json()["id"]
        deadline = time.time() + 5
        while True:
            new = client.get("/v1/events", params={"since": since}).json()
            mine = [e for e in new if e["kind"] == kind and e["actor"] == labels[who]]
            if mine or time.time() > deadline:
                break
            time.sleep(0.05)
        assert mine, f"{method} {url}: no {kind!r} event by {labels[who]}; got {[(e['kind'], e['actor']) for e in new]}"
