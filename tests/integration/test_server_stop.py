"""A server that stops on purpose (SIGTERM) answers its agents' long polls at once instead of
leaving them to be cancelled when its graceful shutdown runs out (a traceback each: megabytes
of log with thousands of agents). Needs no engine: the agents here are plain HTTP clients."""
from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.harness import JOIN, Cluster, wait_for


def test_long_polls_are_answered_when_the_server_stops(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start_server()
        results: list[object] = []
        polling = []
        for k in range(3):
            r = httpx.post(f"{c.url}/v1/agent/join", json={"join_token": JOIN, "node_name": f"stop-{k}"}, timeout=10)
            assert r.status_code == 200, r.text
            auth = {"Authorization": f"Bearer {r.json()['credential']}"}
            first = httpx.post(f"{c.url}/v1/agent/sync", json={}, headers=auth, timeout=10).json()

            def poll(auth=auth, known=first["generation"]) -> None:  # type: ignore[no-untyped-def]
                try:
                    results.append(httpx.post(f"{c.url}/v1/agent/sync", json={"known": known, "wait": 30},
                                              headers=auth, timeout=40).status_code)
                except httpx.HTTPError as exc:
                    results.append(exc)

            t = threading.Thread(target=poll, daemon=True)
            t.start()
            polling.append(t)
        time.sleep(1.0)  # the three polls reach the server and wait (30 s asked)
        assert results == []
        c.server.send(signal.SIGTERM)  # type: ignore[union-attr]
        for t in polling:
            t.join(timeout=20)
        assert results == [200, 200, 200]  # answered, not cut off when the graceful shutdown ran out
        wait_for(lambda: not c.server.alive, timeout=20, what="the server to exit")  # type: ignore[union-attr]
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    finally:
        c.close()
