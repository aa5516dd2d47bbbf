"""The cluster as one Docker host: the unmodified docker CLI and the docker SDK against
`dockyard server --docker-api`, two agents (zones a and b) on the real engine.

The CLI is whatever `docker` is on PATH (the engine's package installs one); it talks to the
endpoint with DOCKER_HOST=tcp://... and `--config DIR` holding the bearer token in HttpHeaders,
exactly as docs/docker-api.md tells users to.
"""
from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import docker
import httpx
import pytest

from tests.harness import ADMIN, DOCKYARD, IMAGE, Cluster, Proc, free_port, self_signed, wait_for

LOOP = "i=0; echo hello; echo oops >&2; while true; do i=$((i+1)); echo line$i; sleep 0.2; done"


def _config(where: Path, token: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "config.json").write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {token}"}}))
    return where


class DockerCLI:
    def __init__(self, port: int, config: Path):
        exe = shutil.which("docker")
        if exe is None:
            pytest.fail("the Docker API tests need the docker CLI (Debian's docker.io installs it)")
        self.exe, self.config = exe, config
        self.env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{port}"}
        self.env.pop("DOCKER_CONTEXT", None)

    def __call__(self, *args: str, code: int = 0, timeout: float = 90) -> subprocess.CompletedProcess:
        r = subprocess.run([self.exe, "--config", str(self.config), *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        assert r.returncode == code, f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.exe, "--config", str(self.config), *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def dc(engine, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("dockerapi")
    port = free_port()
    c = Cluster(tmp, server_args=["--docker-api", f"127.0.0.1:{port}"])
    c.start_server()
    c.start_agent("a", "--label", "zone=a")
    c.start_agent("b", "--label", "zone=b")
    viewer = c.api.post("/v1/tokens", json={"name": "docker-viewer", "role": "viewer"})
    assert viewer.status_code == 201, viewer.text
    c.docker_port = port  # type: ignore[attr-defined]
    c.cli = DockerCLI(port, _config(tmp / "admin-config", ADMIN))  # type: ignore[attr-defined]
    c.viewer = DockerCLI(port, _config(tmp / "viewer-config", viewer.json()["token"]))  # type: ignore[attr-defined]
    c.anonymous = DockerCLI(port, _config(tmp / "anon-config", "wrong"))  # type: ignore[attr-defined]
    yield c
    c.close()
    for log in sorted(tmp.glob("*.log")):
        text = log.read_text()
        if "Traceback" in text:
            print(f"===== {log.name}\n{text[-6000:]}")


def test_run_ps_logs_inspect_stop_rm_with_the_docker_cli(dc) -> None:  # type: ignore[no-untyped-def]
    d = dc.cli
    host_port = free_port()
    run = d("run", "-d", "--name", "web", "-e", "GREETING=hi", "-p", f"{host_port}:80", "--stop-timeout", "1",
            "--label", "team=shop", IMAGE, "sh", "-c", LOOP)
    cid = run.stdout.strip().splitlines()[-1]
    assert len(cid) == 64, run.stdout
    assert dc.docker.containers.get(cid).status == "running"  # the real container id, on the engine
    svc = dc.service("web")
    assert svc["source"] == "docker-api" and svc["replicas"] == 1 and svc["spec"]["env"] == {"GREETING": "hi"}
    node = dc.docker.containers.get(cid).labels["dockyard.node"]

    ps = d("ps", "--filter", "label=team=shop", "--format", "{{.ID}} {{.Names}} {{.Ports}} {{.Status}}").stdout
    assert ps.split()[0] == cid[:12] and f"{node}/web" in ps and f"{host_port}->80/tcp" in ps, ps

    wait_for(lambda: "line2" in d("logs", "web").stdout, 20, what="two lines of output")
    logs = d("logs", "web")
    assert logs.stdout.startswith("hello\n") and "oops" in logs.stderr  # stdout and stderr kept apart
    tail = d("logs", "--tail", "1", "web").stdout.splitlines() + d("logs", "--tail", "1", "web").stderr.splitlines()
    assert len(tail) <= 2 and all(line.startswith(("line", "oops")) for line in tail), tail

    follow = d.popen("logs", "-f", "--tail", "0", "web")
    try:
        seen = [follow.stdout.readline().strip() for _ in range(3)]  # new lines, as they come
    finally:
        follow.kill()
        follow.wait()
    assert all(line.startswith("line") for line in seen) and len(set(seen)) == 3, seen

    inspect = json.loads(d("inspect", "web").stdout)[0]
    assert inspect["Id"] == cid and inspect["Node"]["Name"] == node and inspect["Name"] == f"/{node}/web"
    assert "GREETING=hi" in inspect["Config"]["Env"] and inspect["State"]["Running"] is True

    d("stop", "web")
    assert not dc.docker.containers.list(filters={"id": cid})  # stopped and removed on its node
    exited = d("ps", "-a", "--filter", "name=web", "--format", "{{.ID}} {{.Status}}").stdout
    assert exited.startswith(cid[:12]) and "Exited" in exited, exited
    assert d("ps", "-q", "--filter", "name=web").stdout.strip() == ""

    d("start", "web")
    assert "Up" in d("ps", "--filter", "name=web", "--format", "{{.Status}}").stdout
    refused = d("rm", "web", code=1)
    assert "You cannot remove a running container" in refused.stderr
    d("rm", "-f", "web")
    wait_for(lambda: dc.api.get("/v1/services/web").status_code == 404, 10, what="service removed")
    assert d("ps", "-a", "-q", "--filter", "name=web").stdout.strip() == ""
    assert "No such container: web" in d("logs", "web", code=1).stderr


def test_constraint_and_affinity_hints_place_like_classic_swarm(dc) -> None:  # type: ignore[no-untyped-def]
    d = dc.cli
    d("run", "-d", "--name", "on-b", "--stop-timeout", "1", "-e", "constraint:zone==b", IMAGE, "sleep", "300")
    assert json.loads(d("inspect", "on-b").stdout)[0]["Node"]["Name"] == dc.node("b")
    d("run", "-d", "--name", "with-b", "--stop-timeout", "1", "-e", "affinity:container==on-b", IMAGE, "sleep", "300")
    d("run", "-d", "--name", "not-b", "--stop-timeout", "1", "-e", "affinity:container!=on-b", IMAGE, "sleep", "300")
    nodes = {n: json.loads(d("inspect", n).stdout)[0]["Node"]["Name"] for n in ("with-b", "not-b")}
    assert nodes == {"with-b": dc.node("b"), "not-b": dc.node("a")}
    impossible = d("run", "-d", "--name", "nowhere", "-e", "constraint:zone==z", IMAGE, "sleep", "1", code=125)
    assert "could not be started" in impossible.stderr and "zone==z" in impossible.stderr
    assert dc.api.get("/v1/services/nowhere").status_code == 404  # nothing half-made
    d("rm", "-f", "on-b", "with-b", "not-b")


def test_v1_services_show_in_docker_ps(dc) -> None:  # type: ignore[no-untyped-def]
    assert dc.put("api", image=IMAGE, replicas=2, command=["sleep", "300"], stop_timeout=1).status_code == 201
    dc.wait_running("api", 2)
    slots = {i["slot"] for i in dc.instances("api")}
    names = [n for n in dc.cli("ps", "--format", "{{.Names}}").stdout.split() if "/api." in n]
    assert sorted(n.split("/", 1)[1] for n in names) == sorted(f"api.{k}" for k in slots), names
    assert {n.split("/", 1)[0] for n in names} == {dc.node("a"), dc.node("b")}  # spread, named by node
    refused = dc.cli("rm", "-f", names[0], code=1)
    assert "made through Dockyard's API" in refused.stderr
    assert dc.api.delete("/v1/services/api").status_code == 202


def test_tokens_and_roles(dc) -> None:  # type: ignore[no-untyped-def]
    dc.cli("run", "-d", "--name", "seen", "--stop-timeout", "1", IMAGE, "sleep", "300")
    assert "seen" in dc.viewer("ps").stdout  # a viewer reads
    dc.viewer("inspect", "seen")
    refused = dc.viewer("run", "-d", "--name", "nope", IMAGE, "sleep", "1", code=125)
    assert "Error response from daemon: this needs the 'operator' role" in refused.stderr
    assert "this needs the 'operator' role" in dc.viewer("rm", "-f", "seen", code=1).stderr
    anonymous = dc.anonymous("ps", code=1)
    assert "invalid" in anonymous.stderr.lower() or "unknown" in anonymous.stderr.lower(), anonymous.stderr
    r = httpx.get(f"http://127.0.0.1:{dc.docker_port}/v1.41/containers/json")
    assert r.status_code == 401 and set(r.json()) == {"message"}  # the Engine API's error shape
    dc.cli("rm", "-f", "seen")


def test_unsupported_commands_say_so(dc) -> None:  # type: ignore[no-untyped-def]
    build_dir = dc.tmp / "ctx"
    build_dir.mkdir(exist_ok=True)
    (build_dir / "Dockerfile").write_text("FROM scratch\n")
    build = dc.cli("build", str(build_dir), code=1)
    assert "not supported by Dockyard: docker build; build on a node and push to a registry" in build.stderr
    assert "not supported by Dockyard: docker network" in dc.cli("network", "ls", code=1).stderr
    assert "--user is not supported by Dockyard" in dc.cli("run", "-d", "-u", "nobody", IMAGE, code=125).stderr
    info = dc.cli("info", "--format", "{{json .}}").stdout
    assert json.loads(info)["NCPU"] > 0 and dc.node("a") in info and dc.node("b") in info
    assert IMAGE.split(":")[0] in dc.cli("images").stdout  # the union of the nodes' images


def test_the_docker_sdk_for_python(dc, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DOCKER_CONFIG", str(dc.cli.config))  # the SDK sends HttpHeaders from there too
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{dc.docker_port}", timeout=90)
    try:
        c = client.containers.run(IMAGE, ["sh", "-c", "echo from-sdk; sleep 300"], detach=True, name="sdk",
                                  environment={"X": "1"}, labels={"via": "sdk"})
        assert c.id == dc.docker.containers.get(c.id).id and c.status == "running"
        listed = client.containers.list(filters={"label": "via=sdk"})
        assert [x.id for x in listed] == [c.id] and listed[0].name.endswith("/sdk")
        wait_for(lambda: b"from-sdk" in c.logs(), 20, what="the SDK reads the logs")
        c.remove(force=True)
        wait_for(lambda: not client.containers.list(all=True, filters={"label": "via=sdk"}), 10, what="removed")
        assert client.version()["ApiVersion"] == "1.41"
    finally:
        client.close()


def test_restart_policy_no_is_not_rescheduled_when_its_node_dies(dc) -> None:  # type: ignore[no-untyped-def]
    d = dc.cli
    d("run", "-d", "--name", "once", "--restart", "no", "-e", "constraint:zone==a", "--stop-timeout", "1",
      IMAGE, "sleep", "300")
    d("run", "-d", "--name", "always", "--restart", "always", "-e", "constraint:zone!=b", "--stop-timeout", "1",
      IMAGE, "sleep", "300")
    assert {json.loads(d("inspect", n).stdout)[0]["Node"]["Name"] for n in ("once", "always")} == {dc.node("a")}
    dc.kill_agent("a")
    wait_for(lambda: dc.service("once")["replicas"] == 0, 30, what="'once' given up with its node")
    assert "Exited" in d("ps", "-a", "--filter", "name=once", "--format", "{{.Status}}").stdout
    assert dc.service("always")["replicas"] == 1  # waits for a zone-a-or-c node: restart always keeps it wanted
    dc.restart_agent("a")
    wait_for(lambda: "Up" in d("ps", "--filter", "name=always", "--format", "{{.Status}}").stdout, 60,
             what="'always' running again")
    time.sleep(0.5)
    d("rm", "-f", "once", "always")


def test_tls_with_the_servers_certificate(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert, key = self_signed(tmp_path)
    port = free_port()
    c = Cluster(tmp_path, server_args=["--tls-cert", str(cert), "--tls-key", str(key), "--docker-api",
                                       f"127.0.0.1:{port}"])
    c.url = f"https://127.0.0.1:{c.port}"
    c.api = httpx.Client(base_url=c.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30,
                         verify=ssl.create_default_context(cafile=str(cert)))
    c.server = Proc([DOCKYARD, "server", "--port", str(c.port), "--data-dir", str(tmp_path / "data"),
                     *c.server_args], c.env, tmp_path / "server.log").start()
    try:
        wait_for(lambda: c.api.get("/readyz").status_code == 200, 30, what="TLS server ready")
        c.start_agent("a", "--ca-file", str(cert))
        d = DockerCLI(port, _config(tmp_path / "cfg", ADMIN))
        tls = ("--tlsverify", "--tlscacert", str(cert))
        d(*tls, "run", "-d", "--name", "secure", "--stop-timeout", "1", IMAGE, "sleep", "300")
        assert "secure" in d(*tls, "ps").stdout
        (tmp_path / "other").mkdir()
        other, _ = self_signed(tmp_path / "other")
        untrusted = d("--tlsverify", "--tlscacert", str(other), "ps", code=1)  # another CA: refused ...
        assert "certificate" in untrusted.stderr.lower() or "x509" in untrusted.stderr.lower(), untrusted.stderr
        assert d("ps", code=1).returncode == 1  # ... and plain HTTP gets no answer from a TLS port
        d(*tls, "rm", "-f", "secure")
    finally:
        c.close()
