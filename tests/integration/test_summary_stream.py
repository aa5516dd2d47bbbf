"""/v1/summary?watch=true on a real server: a snapshot, then only what changed.

A scale shows up as one changed row, a delete as a removed key, and a token limited to a
namespace is told nothing about services outside it.
"""
from __future__ import annotations

import json
import queue
import threading

import httpx
import pytest

from tests.harness import ADMIN, Cluster, wait_for

pytestmark = pytest.mark.integration


def _follow(c: Cluster, token: str, out: queue.Queue, stop: threading.Event) -> None:
    try:
        with httpx.stream("GET", f"{c.url}/v1/summary", params={"watch": "true"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30) as r:
            event = None
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    out.put((event, json.loads(line[5:])))
    except httpx.HTTPError:
        pass  # the server stopped at the end of the test


def test_stream_sends_a_snapshot_then_changed_rows(cluster):  # type: ignore[no-untyped-def]
    c = cluster
    assert c.api.post("/v1/namespaces", json={"name": "dev"}).status_code == 201
    assert c.put("web", replicas=2).status_code == 201
    assert c.put("db", replicas=1).status_code == 201
    # no agent: the loop makes their instances, which stay pending; wait for that, so it moves no row later
    wait_for(lambda: c.service("web")["status"]["pending"] == 2 and c.service("db")["status"]["pending"] == 1,
             30, what="pending instances")
    dev = c.api.post("/v1/tokens", json={"name": "d", "role": "viewer", "namespaces": ["dev"]}).json()["token"]
    stop = threading.Event()
    admin_q: queue.Queue = queue.Queue()
    dev_q: queue.Queue = queue.Queue()
    for token, q in ((ADMIN, admin_q), (dev, dev_q)):
        threading.Thread(target=_follow, args=(c, token, q, stop), daemon=True).start()
    try:
        kind, snap = admin_q.get(timeout=15)
        assert kind == "snapshot" and {r["key"] for r in snap["services"]} == {"web", "db"}
        kind, snap = dev_q.get(timeout=15)
        assert kind == "snapshot" and snap["services"] == [] and snap["you"]["namespaces"] == ["dev"]

        assert c.api.post("/v1/services/web/scale", json={"replicas": 5}).status_code == 200
        kind, ch = admin_q.get(timeout=15)
        assert kind == "changes" and [r["key"] for r in ch["services"]] == ["web"], ch
        assert ch["services"][0]["replicas"] == 5 and ch["removed_services"] == []

        assert c.api.delete("/v1/services/db").status_code == 202
        while True:  # the loop may still be moving web's new instances along: those rows come first
            kind, ch = admin_q.get(timeout=15)
            assert kind == "changes", ch
            if ch["removed_services"]:
                break
            assert [r["key"] for r in ch["services"]] == ["web"], ch
        assert ch["removed_services"] == ["db"], ch
        assert dev_q.empty(), dev_q.get()  # nothing in dev changed: the scoped token heard nothing
    finally:
        stop.set()
