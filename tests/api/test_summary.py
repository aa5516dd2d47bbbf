"""GET /v1/summary (the dashboard's rows), on SQLite and PostgreSQL: a token limited to a
namespace sees only its rows. The live stream is tested against a real server process
(tests/integration/test_summary_stream.py): the in-process client cannot read an endless body."""
from __future__ import annotations

from tests.api.principals import bearer, make_token


def test_summary_rows_and_scope(client):  # type: ignore[no-untyped-def]
    assert client.post("/v1/namespaces", json={"name": "dev"}).status_code == 201
    assert client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 2}).status_code == 201
    assert client.put("/v1/namespaces/dev/services/api", json={"image": "busybox:1", "replicas": 1}).status_code == 201
    body = client.get("/v1/summary").json()
    assert body["you"]["role"] == "admin"
    rows = {r["key"]: r for r in body["services"]}
    assert set(rows) == {"web", "dev/api"}
    assert (rows["web"]["replicas"], rows["web"]["ready"], rows["web"]["health"]) == (2, 0, "degraded")
    dev = make_token(client, "viewer", namespaces=["dev"])
    body = client.get("/v1/summary", headers=bearer(dev)).json()
    assert [r["key"] for r in body["services"]] == ["dev/api"] and body["you"]["namespaces"] == ["dev"]
    assert client.get("/v1/summary", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_cached_rows_match_a_full_read_after_changes(client):  # type: ignore[no-untyped-def]
    """The feed's cache recomputes only rows whose fingerprint moved; what it answers must be
    what a read from scratch answers, after creates, scales, updates, deletes and node joins."""
    from orchestrator.api import summary
    from tests.api.principals import join_node
    from tests.harness import wait_for

    st = client.app.state.dy
    cache = summary.Cache()
    steps = [
        lambda: client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 2,
                                                    "resources": {"cpus": 0.5, "memory": "64Mi"}}),
        lambda: join_node(client, "n1"),
        lambda: client.post("/v1/services/web/scale", json={"replicas": 4}),
        lambda: client.put("/v1/services/db", json={"image": "busybox:1", "replicas": 1}),
        lambda: client.patch("/v1/services/web", json={"image": "busybox:2"}),
        lambda: client.post("/v1/nodes/n1/drain"),
        lambda: client.delete("/v1/services/db"),
    ]
    def agree() -> bool:
        # the loop runs in the background: compare only while two reads from scratch agree around
        # the cached one; a row the cache got wrong stays wrong, so this fails within the wait
        before, cached, after = summary._read(st), summary._read(st, cache), summary._read(st)
        return before == after == cached

    for step in [lambda: True, *steps]:
        assert step() is not None
        wait_for(agree, 15, 0.02, what="the cached read to match a read from scratch")
    web = summary._read(st, cache)["services"]["web"]
    assert (web["replicas"], web["image"]) == (4, "busybox:2")
