"""Test harness: real `dockyard server` and `dockyard agent` processes on the real Docker engine.

Each Cluster gets its own data dir, port and node-name prefix, so tests never touch
containers of other tests (or of anybody else) on the shared engine.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import docker
import httpx

ROOT = Path(__file__).resolve().parent.parent
DOCKYARD = str(Path(sys.executable).parent / "dockyard")
IMAGE = "dockyard-test:latest"
ADMIN = "test-admin-token"
JOIN = "test-join-token"


def self_signed(where: Path, names: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
    """A throw-away self-signed certificate and key (needs the openssl command)."""
    import shutil

    import pytest

    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", f"subjectAltName={names}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (httpx.HTTPError, docker.errors.APIError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.args, self.env, self.log = args, env, log
        self.p: subprocess.Popen | None = None

    def start(self) -> "Proc":
        f = open(self.log, "ab")
        self.p = subprocess.Popen(self.args, env=self.env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def send(self, sig: int) -> None:
        """Send a signal and return at once (SIGSTOP / SIGCONT)."""
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)

    @property
    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None


class Cluster:
    def __init__(self, tmp: Path, server_args: list[str] | None = None, env: dict[str, str] | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = "t" + secrets.token_hex(3)
        self.server_args = server_args or []
        self.env = {**os.environ, "DOCKYARD_ADMIN_TOKEN": ADMIN, "DOCKYARD_JOIN_TOKEN": JOIN, **(env or {})}
        self.server: Proc | None = None
        self.agents: dict[str, Proc] = {}
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        self.docker = docker.from_env(timeout=120)

    # -- processes -------------------------------------------------------------------
    def start_server(self) -> None:
        args = [DOCKYARD, "server", "--port", str(self.port), "--data-dir", str(self.tmp / "data"), *self.server_args]
        self.server = Proc(args, self.env, self.tmp / "server.log").start()
        wait_for(lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200, 30, what="server ready")

    def stop_server(self, sig: int = signal.SIGKILL) -> None:
        assert self.server is not None
        self.server.kill(sig)

    def node(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def start_agent(self, short: str, *extra: str, wait: bool = True) -> str:
        name = self.node(short)
        args = [DOCKYARD, "agent", "--server", self.url, "--node-name", name, *extra]
        self.agents[name] = Proc(args, self.env, self.tmp / f"agent-{short}.log").start()
        if wait:
            wait_for(lambda: self.node_status(name) == "ready", 30, what=f"node {name} ready")
        return name

    def kill_agent(self, short: str, sig: int = signal.SIGKILL) -> None:
        self.agents[self.node(short)].kill(sig)

    def restart_agent(self, short: str) -> None:
        self.agents[self.node(short)].start()

    def node_status(self, name: str) -> str | None:
        r = self.api.get(f"/v1/nodes/{name}")
        return r.json()["status"] if r.status_code == 200 else None

    # -- API helpers -----------------------------------------------------------------
    def put(self, name: str, **spec: Any) -> httpx.Response:
        body = {"image": IMAGE, "init": True, "stop_timeout": 1, "command": ["sleep", "3600"], **spec}
        return self.api.put(f"/v1/services/{name}", json=body)

    def service(self, name: str) -> dict:
        r = self.api.get(f"/v1/services/{name}")
        r.raise_for_status()
        return r.json()

    def instances(self, service: str) -> list[dict]:
        r = self.api.get(f"/v1/services/{service}/instances")
        r.raise_for_status()
        return r.json()

    def events(self, **params: Any) -> list[dict]:
        return self.api.get("/v1/events", params=params).json()

    # -- Docker view -----------------------------------------------------------------
    def containers(self, service: str | None = None, running_only: bool = True, node: str | None = None) -> list:
        out = []
        # ignore_removed: another test (or an agent) may remove a container between list and inspect
        for c in self.docker.containers.list(all=not running_only, filters={"label": "dockyard.node"},
                                             ignore_removed=True):
            labels = c.labels
            if not labels.get("dockyard.node", "").startswith(self.prefix + "-"):
                continue
            if service and labels.get("dockyard.service") != service:
                continue
            if node and labels.get("dockyard.node") != node:
                continue
            out.append(c)
        return out

    def wait_running(self, service: str, count: int, timeout: float = 60.0) -> list:
        def check():  # type: ignore[no-untyped-def]
            cs = self.containers(service)
            return cs if len(cs) == count and len(self.containers(service, running_only=False)) == count else None

        return wait_for(check, timeout, 0.2, what=f"{count} running containers of {service}")

    def wait_ready(self, service: str, count: int, timeout: float = 60.0) -> dict:
        def check():  # type: ignore[no-untyped-def]
            st = self.service(service)["status"]
            return st if st["ready"] == count and st["running"] == count else None

        return wait_for(check, timeout, 0.2, what=f"{service} status ready={count}")

    # -- teardown --------------------------------------------------------------------
    def close(self) -> None:
        for a in self.agents.values():
            a.kill(signal.SIGKILL)
        if self.server:
            self.server.kill(signal.SIGTERM)
        for c in self.containers(running_only=False):
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass
        self.api.close()


class HACluster(Cluster):
    """Several servers on one PostgreSQL database; agents get every server's URL."""

    def __init__(self, tmp: Path, database_url: str, servers: int = 3, env: dict[str, str] | None = None):
        super().__init__(tmp, env={"DOCKYARD_DATABASE_URL": database_url, **(env or {})})
        self.ports = [free_port() for _ in range(servers)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.servers: list[Proc | None] = [None] * servers
        self.url = self.urls[0]
        self.use(0)

    def use(self, k: int) -> None:
        """Send the test's API calls to server k."""
        self.api.close()
        self.url = self.urls[k]
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)

    def start_server(self, k: int | None = None) -> None:  # type: ignore[override]
        for i in ([k] if k is not None else range(len(self.ports))):
            args = [DOCKYARD, "server", "--port", str(self.ports[i]), "--data-dir", str(self.tmp / f"data{i}")]
            self.servers[i] = Proc(args, self.env, self.tmp / f"server{i}.log").start()
        for i in ([k] if k is not None else range(len(self.ports))):
            wait_for(lambda: httpx.get(f"{self.urls[i]}/readyz", timeout=2).status_code == 200, 30,
                     what=f"server {i} ready")
        self.server = self.servers[0]

    def stop_server(self, k: int = 0, sig: int = signal.SIGKILL) -> None:  # type: ignore[override]
        proc = self.servers[k]
        assert proc is not None
        proc.kill(sig)

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.servers) if p is not None and p.alive]

    def cluster_state(self, k: int) -> dict:
        return httpx.get(f"{self.urls[k]}/v1/cluster", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5).json()

    def leader(self, among: list[int] | None = None) -> int | None:
        """The index of the server that says it leads (None if none does)."""
        leading = []
        for i in among if among is not None else self.alive():
            try:
                if self.cluster_state(i)["leading"]:
                    leading.append(i)
            except httpx.HTTPError:
                pass
        assert len(leading) <= 1, f"more than one server says it leads: {leading}"
        return leading[0] if leading else None

    def wait_leader(self, among: list[int] | None = None, timeout: float = 15.0, interval: float = 0.1) -> int:
        box: list[int] = []

        def found() -> bool:
            k = self.leader(among)
            if k is not None:
                box.append(k)
            return k is not None

        wait_for(found, timeout, interval, what=f"a leader among servers {among if among is not None else self.alive()}")
        return box[-1]

    def start_agent(self, short: str, *extra: str, wait: bool = True, servers: list[int] | None = None) -> str:  # type: ignore[override]
        name = self.node(short)
        urls = ",".join(self.urls[i] for i in (servers if servers is not None else range(len(self.urls))))
        args = [DOCKYARD, "agent", "--server", urls, "--node-name", name, *extra]
        self.agents[name] = Proc(args, self.env, self.tmp / f"agent-{short}.log").start()
        if wait:
            wait_for(lambda: self.node_status(name) == "ready", 30, what=f"node {name} ready")
        return name

    def close(self) -> None:
        for a in self.agents.values():
            a.kill(signal.SIGKILL)
        for p in self.servers:
            if p is not None:
                p.send(signal.SIGCONT)
                p.kill(signal.SIGTERM)
        self.server = None
        super().close()
