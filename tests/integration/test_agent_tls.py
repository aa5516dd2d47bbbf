"""The server's calls to an agent's API travel over TLS and are verified (real processes).

- against an https server, the agent serves its API over TLS with a certificate it makes
  at start, which the server pins at join: logs work, a wrong pin is refused;
- with the agent's certificate from flags/env and the server's DOCKYARD_AGENT_CA: logs work
  with the right CA, a server with another CA refuses;
- the per-node agent key is still checked on every call.
"""
from __future__ import annotations

import hashlib
import sqlite3
import ssl
from pathlib import Path

import httpx
import pytest

from tests.harness import ADMIN, DOCKYARD, Cluster, Proc, self_signed, wait_for

pytestmark = pytest.mark.integration
TALK = "echo hello over tls; while true; do echo tick; sleep 0.3; done"


def _cert(where: Path, names: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
    where.mkdir(parents=True, exist_ok=True)
    return self_signed(where, names)


class TLSCluster(Cluster):
    """A cluster whose server serves HTTPS with a self-signed certificate."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None):
        super().__init__(tmp, env={"DOCKYARD_AGENT_STATE_DIR": str(tmp / "agent-state"), **(env or {})})
        self.cert, key = _cert(tmp / "server-tls")
        self.server_args = ["--tls-cert", str(self.cert), "--tls-key", str(key)]
        self.url = f"https://127.0.0.1:{self.port}"
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30,
                                verify=ssl.create_default_context(cafile=str(self.cert)))

    def start_server(self) -> None:
        args = [DOCKYARD, "server", "--port", str(self.port), "--data-dir", str(self.tmp / "data"), *self.server_args]
        self.server = Proc(args, self.env, self.tmp / "server.log").start()
        wait_for(lambda: self.api.get("/readyz").status_code == 200, 30, what="TLS server ready")

    def start_agent(self, short: str, *extra: str, wait: bool = True) -> str:
        return super().start_agent(short, "--ca-file", str(self.cert), *extra, wait=wait)

    def db(self, sql: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.tmp / "data" / "dockyard.db") as db:
            return db.execute(sql, args).fetchall()

    def agent_url(self, node: str) -> str:
        return self.db("select agent_url from nodes where name = ?", node)[0][0]


@pytest.fixture
def make(engine, tmp_path, request):  # type: ignore[no-untyped-def]
    made: list[TLSCluster] = []

    def factory(sub: str = "c", env: dict[str, str] | None = None) -> TLSCluster:
        (tmp_path / sub).mkdir()
        c = TLSCluster(tmp_path / sub, env)
        made.append(c)
        c.start_server()
        return c

    yield factory
    for c in made:
        c.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for log in sorted(tmp_path.glob("*/*.log")):
            print(f"===== {log}\n{log.read_text()[-4000:]}")


def _talker(c: TLSCluster) -> str:
    assert c.put("talker", replicas=1, command=["sh", "-c", TALK]).status_code == 201
    c.wait_ready("talker", 1)
    return c.instances("talker")[0]["id"]


def test_logs_over_tls_with_the_pinned_agent_certificate(make):  # type: ignore[no-untyped-def]
    c = make()
    node = c.start_agent("a")
    iid = _talker(c)
    url = c.agent_url(node)
    assert url.startswith("https://127.0.0.1:"), url
    text = wait_for(lambda: (r := c.api.get(f"/v1/instances/{iid}/logs")).status_code == 200
                    and "hello over tls" in r.text and r.text, 20, what="logs through TLS")
    assert "tick" in text
    # followed, through TLS too
    with c.api.stream("GET", f"/v1/instances/{iid}/logs", params={"tail": 0, "follow": "true"},
                      timeout=httpx.Timeout(10.0, read=5.0)) as r:
        assert r.status_code == 200
        for chunk in r.iter_text():
            if "tick" in chunk:
                break
    # the agent speaks TLS only, and still wants the node's key
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5, trust_env=False)
    pinned = c.db("select value from settings where key like 'agent_cert:%'")[0][0]
    agent_ctx = ssl.create_default_context(cadata=pinned)
    agent_ctx.check_hostname = False
    assert httpx.get(f"{url}/healthz", verify=agent_ctx, trust_env=False).status_code == 200
    assert httpx.get(f"{url}/v1/instances/{iid}/logs", verify=agent_ctx, trust_env=False).status_code == 401

    # a wrong pin (what a server sees when someone else answers at the agent's address): refused
    other, _ = _cert(c.tmp / "impostor")
    key = "agent_cert:" + hashlib.sha256(node.encode()).hexdigest()[:40]
    c.db("update settings set value = ? where key = ?", other.read_text(), key)
    r = c.api.get(f"/v1/instances/{iid}/logs")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "bad_gateway" and "does not trust" in r.json()["error"]["message"]
    # the right pin again: served
    c.db("update settings set value = ? where key = ?", pinned, key)
    assert c.api.get(f"/v1/instances/{iid}/logs").status_code == 200


def test_agent_certificate_from_a_ca_the_server_is_given(make, tmp_path):  # type: ignore[no-untyped-def]
    # the operator's certificate for the agent (self-signed: it is its own CA)
    agent_cert, agent_key = _cert(tmp_path / "agent-tls")
    wrong_ca, _ = _cert(tmp_path / "wrong-ca")
    env = {"DOCKYARD_AGENT_TLS_CERT": str(agent_cert), "DOCKYARD_AGENT_TLS_KEY": str(agent_key)}
    good = make("good", {**env, "DOCKYARD_AGENT_CA": str(agent_cert)})
    good.start_agent("a")
    iid = _talker(good)
    wait_for(lambda: "hello over tls" in good.api.get(f"/v1/instances/{iid}/logs").text, 20, what="logs via --agent-ca")

    bad = make("bad", {**env, "DOCKYARD_AGENT_CA": str(wrong_ca)})
    bad.start_agent("a")
    iid = _talker(bad)
    r = bad.api.get(f"/v1/instances/{iid}/logs")
    assert r.status_code == 502, r.text
    msg = r.json()["error"]["message"]
    assert "does not trust" in msg and "--agent-ca" in msg and "CERTIFICATE_VERIFY_FAILED" in msg


def test_a_tls_server_refuses_to_call_a_plain_http_agent(make, tmp_path):  # type: ignore[no-untyped-def]
    # an agent whose API is plain HTTP (as before this change): its key must not travel in clear text
    c = make()
    node = c.start_agent("a")
    iid = _talker(c)
    c.db("update nodes set agent_url = replace(agent_url, 'https://', 'http://') where name = ?", node)
    r = c.api.get(f"/v1/instances/{iid}/logs")
    assert r.status_code == 503 and "plain HTTP" in r.json()["error"]["message"], r.text
