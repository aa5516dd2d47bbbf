"""Exec into an instance on the real engine: POST /v1/instances/{id}/exec, its WebSocket, the CLI.

Exit codes and both output streams come back; stdin reaches the command; a viewer is refused
(403) and an unknown instance is a 404; the call is an `instance_exec` event naming who ran
what; with the agent killed (its node not yet down) the answer is a 502 in the JSON error shape.
"""
from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from websockets.sync.client import connect

from tests.harness import ADMIN, DOCKYARD, Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def running(engine, tmp_path):  # type: ignore[no-untyped-def]
    # a long node TTL and no grace for a dropped agent: the node stays "ready" after its agent
    # is killed, so the call reaches it
    c = Cluster(tmp_path, server_args=["--node-ttl", "120", "--node-grace", "0"])
    try:
        c.start_server()
        c.start_agent("a")
        assert c.put("box", replicas=1).status_code == 201
        c.wait_ready("box", 1)
        yield c, c.instances("box")[0]["id"]
    finally:
        c.close()


def _token(c: Cluster, role: str) -> str:
    r = c.api.post("/v1/tokens", json={"name": f"t-{role}", "role": role})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_exec_post_exit_codes_output_stdin_and_audit(running):  # type: ignore[no-untyped-def]
    c, iid = running
    r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["exit_code"], body["stdout"], body["stderr"]) == (3, "out\n", "err\n")
    assert body["instance"] == iid and body["timed_out"] is False and body["truncated"] is False

    r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": ["cat"], "stdin": "fed in\n"})
    assert r.json()["stdout"] == "fed in\n" and r.json()["exit_code"] == 0

    r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": ["sleep", "30"], "timeout": 0.5})
    assert r.status_code == 200 and r.json()["timed_out"] is True and r.json()["exit_code"] is None

    r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": ["no-such-binary"]})
    assert r.status_code in (200, 502), r.text  # Docker: exit 126/127, or a refused exec
    if r.status_code == 200:
        assert r.json()["exit_code"] in (126, 127)
    else:
        assert r.json()["error"]["code"] == "bad_gateway"

    audit = [e for e in c.events(service="box") if e["kind"] == "instance_exec"]
    assert audit and audit[-1]["actor"] and "echo out" in audit[-1]["message"] and audit[-1]["instance"] == iid

    viewer = _token(c, "viewer")
    r = httpx.post(f"{c.url}/v1/instances/{iid}/exec", json={"command": ["true"]},
                   headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = c.api.post("/v1/instances/nope0000/exec", json={"command": ["true"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": []})
    assert r.status_code == 422


def _ws(c: Cluster, iid: str, first: dict, headers: dict | None = None) -> tuple:
    return c, iid, first, headers


def _session(target: tuple, send: list = ()) -> tuple[bytes, dict]:  # type: ignore[no-untyped-def]
    c, iid, first, headers = target
    out = b""
    with connect(f"ws://127.0.0.1:{c.port}/v1/instances/{iid}/exec/ws", additional_headers=headers or {},
                 open_timeout=10) as ws:
        ws.send(json.dumps(first))
        for m in send:
            ws.send(m)
        for msg in ws:
            if isinstance(msg, bytes):
                out += msg[1:]
                continue
            doc = json.loads(msg)
            if doc["type"] in ("exit", "error"):
                return out, doc
    raise AssertionError("the session closed without an exit")


def test_exec_websocket_tty_and_stdin(running):  # type: ignore[no-untyped-def]
    c, iid = running
    # a browser sends its token in the first message
    ws = _ws(c, iid, {"token": ADMIN, "command": ["sh"], "tty": True, "cols": 100, "rows": 30})
    out, end = _session(ws, [b"stty size; echo hi-$((40+2))\n", b"exit 7\n"])
    assert end == {"type": "exit", "exit_code": 7}, (out, end)
    assert b"30 100" in out and b"hi-42" in out
    # without a tty: stdin then end of input
    ws = _ws(c, iid, {"command": ["sh", "-c", "cat; echo done >&2"]}, {"Authorization": f"Bearer {ADMIN}"})
    out, end = _session(ws, [b"abc\n", json.dumps({"eof": True})])
    assert end["exit_code"] == 0 and out == b"abc\ndone\n"

    viewer = _token(c, "viewer")
    out, end = _session(_ws(c, iid, {"token": viewer, "command": ["true"]}))
    assert end["type"] == "error" and end["error"]["code"] == "forbidden"
    out, end = _session(_ws(c, "nope0000", {"token": ADMIN, "command": ["true"]}))
    assert end["type"] == "error" and end["error"]["code"] == "not_found"


def test_cli_exec_exit_code_is_its_own(running, tmp_path):  # type: ignore[no-untyped-def]
    c, iid = running
    env = {"DOCKYARD_URL": c.url, "DOCKYARD_TOKEN": ADMIN, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([DOCKYARD, "exec", "box", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 5"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (5, "to-out\n", "to-err\n"), p
    p = subprocess.run([DOCKYARD, "exec", "-i", iid, "--", "sh", "-c", "read x; echo got-$x; exit 2"],
                       env=env, input="it\n", capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (2, "got-it\n"), p
    p = subprocess.run([DOCKYARD, "exec", "nope", "--", "true"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "no service or instance" in p.stderr


def test_agent_gone_is_a_502_in_the_json_shape(running):  # type: ignore[no-untyped-def]
    c, iid = running
    c.kill_agent("a")
    assert c.node_status(c.node("a")) == "ready"  # the 120 s TTL: the server still calls the agent
    r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": ["true"]})
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "bad_gateway" and c.node("a") in r.json()["error"]["message"]
    out, end = _session(_ws(c, iid, {"token": ADMIN, "command": ["true"]}))
    assert end["type"] == "error" and end["error"]["code"] == "bad_gateway"


def test_exec_over_tls_both_ways(engine, tmp_path):  # type: ignore[no-untyped-def]
    """An https server and an agent serving TLS (its certificate pinned at join): the POST, the
    WebSocket (wss, verified against the server's certificate) and the CLI all work."""
    import ssl

    from tests.integration.test_agent_tls import TLSCluster

    c = TLSCluster(tmp_path)
    try:
        c.start_server()
        c.start_agent("a")
        assert c.agent_url(c.node("a")).startswith("https://")
        assert c.put("box", replicas=1).status_code == 201
        c.wait_ready("box", 1)
        iid = c.instances("box")[0]["id"]
        r = c.api.post(f"/v1/instances/{iid}/exec", json={"command": ["sh", "-c", "echo tls; exit 4"]})
        assert r.status_code == 200 and (r.json()["exit_code"], r.json()["stdout"]) == (4, "tls\n"), r.text
        ctx = ssl.create_default_context(cafile=str(c.cert))
        with connect(f"wss://127.0.0.1:{c.port}/v1/instances/{iid}/exec/ws", ssl=ctx, open_timeout=10) as ws:
            ws.send(json.dumps({"token": ADMIN, "command": ["sh", "-c", "echo over-wss; exit 6"], "tty": True}))
            out, end = b"", None
            for msg in ws:
                if isinstance(msg, bytes):
                    out += msg[1:]
                elif json.loads(msg)["type"] in ("exit", "error"):
                    end = json.loads(msg)
                    break
        assert end == {"type": "exit", "exit_code": 6} and b"over-wss" in out, (end, out)
        env = {"DOCKYARD_URL": c.url, "DOCKYARD_TOKEN": ADMIN, "DOCKYARD_CA_FILE": str(c.cert),
               "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        p = subprocess.run([DOCKYARD, "exec", "-i", "box", "--", "sh", "-c", "cat; exit 9"], input="piped\n",
                           env=env, capture_output=True, text=True, timeout=60)
        assert (p.returncode, p.stdout) == (9, "piped\n"), p
    finally:
        c.close()


def test_cli_exec_it_in_a_terminal(running, tmp_path):  # type: ignore[no-untyped-def]
    """`dockyard exec -it` on a real terminal (a pty): raw mode, the window's size passed on,
    the shell's exit code returned, the terminal's settings restored."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios
    import time

    c, _ = running
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    before = termios.tcgetattr(slave)
    env = {"DOCKYARD_URL": c.url, "DOCKYARD_TOKEN": ADMIN, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "TERM": "xterm", "LINES": "33", "COLUMNS": "111"}
    p = subprocess.Popen([DOCKYARD, "exec", "-it", "box", "--", "sh"], stdin=slave, stdout=slave, stderr=slave,
                         env=env, close_fds=True)
    out = b""

    def read_until(needle: bytes, timeout: float = 30) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while needle not in out:
            assert time.monotonic() < deadline, out
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break

    try:
        time.sleep(1.0)
        os.write(master, b"stty size; echo sum=$((20+3))\r")
        read_until(b"sum=23")
        assert b"33 111" in out, out
        os.write(master, b"exit 5\r")
        assert p.wait(30) == 5
        after = termios.tcgetattr(slave)
        assert after == before  # raw mode undone
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)
