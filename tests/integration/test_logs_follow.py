"""A followed log whose reader vanishes leaves nothing behind, on the server or the agent.

50 clients follow the logs of a container that prints nothing, then disappear without a
word (half close their socket, half reset it). The agent's thread count (/proc/PID/task)
and the server's open log streams (dockyard_log_streams_open) come back to where they were.
"""
from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from tests.harness import ADMIN, Cluster, wait_for

pytestmark = pytest.mark.integration
FOLLOWS = 50


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _open_streams(c: Cluster) -> float:
    for line in c.api.get("/metrics").text.splitlines():
        if line.startswith("dockyard_log_streams_open "):
            return float(line.split()[1])
    raise AssertionError("no dockyard_log_streams_open in /metrics")


def _follow(c: Cluster, iid: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    s.sendall(f"GET /v1/instances/{iid}/logs?follow=true HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {ADMIN}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "the server closed the follow"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def test_abandoned_follows_leave_no_thread_behind(engine, tmp_path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path, env={"DOCKYARD_AGENT_STATE_DIR": str(tmp_path / "agent-state")})
    try:
        c.start_server()
        node = c.start_agent("a")
        assert c.put("silent", replicas=1).status_code == 201  # sleep 3600: prints nothing
        c.wait_ready("silent", 1)
        iid = c.instances("silent")[0]["id"]
        agent = c.agents[node].p
        assert agent is not None
        time.sleep(2)  # settle: the agent's pools and timers have started
        baseline = _threads(agent.pid)
        assert _open_streams(c) == 0

        socks = [_follow(c, iid) for _ in range(FOLLOWS)]
        wait_for(lambda: _open_streams(c) == FOLLOWS, 10, what="every follow relayed")
        # each follow holds threads on the agent: the test would see a leak
        assert _threads(agent.pid) >= baseline + FOLLOWS, (baseline, _threads(agent.pid))

        for k, s in enumerate(socks):
            if k % 2:  # reset instead of a clean close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        wait_for(lambda: _open_streams(c) == 0, 5, what="the server's streams closed")
        # timers of the agent's own loop may come and go: allow two
        wait_for(lambda: _threads(agent.pid) <= baseline + 2, 5,
                 what=f"agent threads back to {baseline} (now {_threads(agent.pid)})")
        # and logs still work afterwards; integers past any bound are a 422, not a 500
        assert c.api.get(f"/v1/instances/{iid}/logs").status_code == 200
        for tail in (2**31, 2**64, 10**30, -1):
            r = c.api.get(f"/v1/instances/{iid}/logs", params={"tail": tail})
            assert r.status_code == 422 and r.json()["error"]["details"][0]["field"].endswith("tail"), r.text
    except BaseException:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        c.close()
