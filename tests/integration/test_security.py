"""TLS end to end (server, agent, CLI) and host privileges reaching the real engine."""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time

import httpx
import pytest

from tests.harness import ADMIN, DOCKYARD, Cluster, Proc, self_signed, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_cluster(engine, tmp_path, request):  # type: ignore[no-untyped-def]
    cert, key = self_signed(tmp_path)
    c = Cluster(tmp_path, server_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    c.url = f"https://127.0.0.1:{c.port}"
    c.api = httpx.Client(base_url=c.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30,
                         verify=ssl.create_default_context(cafile=str(cert)))
    args = [DOCKYARD, "server", "--port", str(c.port), "--data-dir", str(tmp_path / "data"), *c.server_args]
    c.server = Proc(args, c.env, tmp_path / "server.log").start()
    wait_for(lambda: c.api.get("/readyz").status_code == 200, 30, what="TLS server ready")
    c.cert = cert  # type: ignore[attr-defined]
    yield c
    c.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-4000:]}")


def test_tls_server_agent_and_cli(tls_cluster):
    c = tls_cluster
    # plain HTTP and unverified HTTPS are refused
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{c.port}/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{c.url}/healthz", timeout=5)
    # an agent that does not trust the certificate cannot join ...
    c.start_agent("untrusting", wait=False)
    time.sleep(3)
    assert c.node_status(c.node("untrusting")) is None
    log = (c.tmp / "agent-untrusting.log").read_text()
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log
    c.kill_agent("untrusting")
    # ... one given the CA file joins and runs work
    c.start_agent("a", "--ca-file", str(c.cert))
    assert c.put("web", replicas=1).status_code == 201
    c.wait_running("web", 1)
    c.wait_ready("web", 1)
    # the CLI, with DOCKYARD_CA_FILE, and without it (a clear error, no traceback)
    env = {**os.environ, "DOCKYARD_URL": c.url, "DOCKYARD_TOKEN": ADMIN, "DOCKYARD_CONFIG": str(c.tmp / "cli.json")}
    ok = subprocess.run([DOCKYARD, "get", "nodes"], env={**env, "DOCKYARD_CA_FILE": str(c.cert)},
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and c.node("a") in ok.stdout, ok.stderr
    bad = subprocess.run([DOCKYARD, "get", "nodes"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_host_privileges_reach_docker_when_allowed(engine, tmp_path):
    data = tmp_path / "srv-data"
    data.mkdir()
    (data / "hello.txt").write_text("from the host\n")
    # (privileged mode itself cannot start a container in every sandbox this runs in; its translation
    # is covered by tests/unit/test_driver_privileges.py)
    c = Cluster(tmp_path, server_args=["--allow", f"host-network,host-pid,cap:NET_ADMIN,bind:{data}"])
    try:
        c.start_server()
        c.start_agent("a")
        spec = {"network_mode": "host", "pid_mode": "host", "cap_add": ["NET_ADMIN"],
                "volumes": [{"source": str(data), "target": "/data", "read_only": True}],
                "command": ["sh", "-c", "cat /data/hello.txt; sleep 3600"]}
        r = c.put("priv", replicas=1, **spec)
        assert r.status_code == 201, r.text
        (ctr,) = c.wait_running("priv", 1)
        hc = ctr.attrs["HostConfig"]
        assert hc["NetworkMode"] == "host" and hc["PidMode"] == "host" and hc["Privileged"] is False
        assert "NET_ADMIN" in (hc["CapAdd"] or []) or "CAP_NET_ADMIN" in (hc["CapAdd"] or [])
        assert f"{data}:/data:ro" in (hc["Binds"] or [])
        wait_for(lambda: b"from the host" in ctr.logs(), 15, what="bind-mounted file read")
        # what the list does not name is still refused, on the same server
        r = c.put("nope", replicas=1, privileged=True)
        assert r.status_code == 403 and "--allow privileged" in r.json()["error"]["message"]
    except BaseException:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        c.close()


def test_join_token_cannot_take_over_a_live_node(engine, tmp_path):
    """A second agent with a live node's name and the join token is refused; the node's own agent
    keeps working; once the node is down the name may be taken (orchestrator/join.py)."""
    c = Cluster(tmp_path, env={"DOCKYARD_AGENT_STATE_DIR": str(tmp_path / "state-a")})
    try:
        c.start_server()
        node = c.start_agent("a")
        assert c.put("web", replicas=1).status_code == 201
        (ctr,) = c.wait_running("web", 1)
        c.wait_ready("web", 1)
        before = c.api.get(f"/v1/nodes/{node}").json()
        # another host (its own state directory, so no credential), same name, the join token
        impostor = Proc([DOCKYARD, "agent", "--server", c.url, "--node-name", node],
                        {**c.env, "DOCKYARD_AGENT_STATE_DIR": str(tmp_path / "state-b")},
                        tmp_path / "agent-impostor.log").start()
        log = tmp_path / "agent-impostor.log"
        wait_for(lambda: "join refused (409)" in log.read_text(), 20, what="the second agent refused")
        text = log.read_text()
        assert "already joined and alive" in text and f"dockyard nodes rm {node}" in text, text
        assert "Traceback" not in text
        # the first agent keeps the node: same credential (it still syncs), its key still opens its logs
        time.sleep(2)
        assert c.node_status(node) == "ready"
        assert c.api.get(f"/v1/nodes/{node}").json()["agent_version"] == before["agent_version"]
        iid = c.instances("web")[0]["id"]
        assert c.api.get(f"/v1/instances/{iid}/logs").status_code == 200
        assert c.put("web", replicas=2).status_code == 200
        c.wait_running("web", 2)
        assert ctr.id in {x.id for x in c.containers("web")}
        assert not [e for e in c.events(node=node) if "re-joined" in e["message"]]
        # a restart of the node's own agent re-joins at once with its saved credential: nothing is lost
        # (a clean restart: a killed agent's node would go down after a 1 s grace without a reconnect)
        c.kill_agent("a", signal.SIGTERM)
        c.restart_agent("a")
        wait_for(lambda: "re-joined with its credential" in str(c.events(node=node)), 20, what="own re-join")
        assert c.node_status(node) == "ready" and ctr.id in {x.id for x in c.containers("web")}
        # once the node is down (its agent gone past the TTL) the name may be taken
        c.kill_agent("a")
        wait_for(lambda: c.node_status(node) == "down", 30, what="node down")
        wait_for(lambda: "re-joined (it was down)" in str(c.events(node=node)), 30, what="the other host joined")
        wait_for(lambda: c.node_status(node) == "ready", 10, what="node ready under the new agent")
        impostor.kill()
    except BaseException:
        for f in sorted(tmp_path.glob("*.log")):
            print(f"===== {f.name}\n{f.read_text()[-4000:]}")
        raise
    finally:
        c.close()
