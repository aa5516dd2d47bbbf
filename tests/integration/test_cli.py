"""The `dockyard` command line against a live server, live agents and the real Docker engine."""
from __future__ import annotations

import json
import os
import queue
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli.main import app
from tests.harness import ADMIN, DOCKYARD, IMAGE, JOIN, ROOT, Cluster, Proc, self_signed, wait_for

pytestmark = pytest.mark.integration
DATA = ROOT / "tests" / "data"

SERVICE = f"""\
name: web
image: {IMAGE}
command: ["sleep", "3600"]
init: true
stop_timeout: 1
replicas: 2
env:
  GREETING: hi
resources:
  memory: 32Mi
"""


class Cli:
    """Runs `dockyard ...` in-process against one test cluster (flags and config come from env)."""

    def __init__(self, cluster, tmp: Path):  # type: ignore[no-untyped-def]
        self.cluster, self.tmp = cluster, tmp
        self.env = {"DOCKYARD_URL": cluster.url, "DOCKYARD_TOKEN": ADMIN, "DOCKYARD_CONFIG": str(tmp / "cli.json")}

    def __call__(self, *args: str, code: int = 0, input: str | None = None,  # type: ignore[no-untyped-def]
                 env: dict[str, str | None] | None = None):
        r = CliRunner().invoke(app, list(args), env={**self.env, **(env or {})}, input=input)
        assert r.exit_code == code, f"dockyard {' '.join(args)} -> {r.exit_code}\n{r.output}"
        assert "Traceback" not in r.output
        return r

    def json(self, *args: str):  # type: ignore[no-untyped-def]
        return json.loads(self(*args, "-o", "json").stdout)

    def file(self, name: str, text: str) -> str:
        p = self.tmp / name
        p.write_text(text)
        return str(p)


@pytest.fixture
def cli(cluster, tmp_path) -> Cli:  # type: ignore[no-untyped-def]
    return Cli(cluster, tmp_path)


def test_apply_dry_run_get_scale_rollout_delete(cluster, cli):
    node = cluster.start_agent("a")
    f = cli.file("web.yaml", SERVICE)

    plan = cli("apply", "-f", f, "--dry-run").stdout
    assert "+ service 'web' (create)" in plan and f'+ image:' in plan and "Plan: 1 to create." in plan
    assert cluster.api.get("/v1/services/web").status_code == 404  # a dry run changes nothing

    assert cli("apply", "-f", f).stdout.strip() == "service/web created"
    assert cli("apply", "-f", f).stdout.strip() == "service/web unchanged"
    assert "service/web successfully rolled out: revision 1, 2/2 ready" in cli("rollout", "status", "web").stdout

    # every output format of every list
    table = cli("get", "services").stdout.splitlines()
    assert table[0].split() == ["NAME", "STACK", "READY", "UP-TO-DATE", "REVISION", "ROLLOUT", "AGE"]
    assert table[1].split()[:6] == ["web", "-", "2/2", "2", "1", "complete"]
    assert IMAGE in cli("get", "services", "-o", "wide").stdout
    assert [s["name"] for s in cli.json("get", "services")] == ["web"]
    one = yaml.safe_load(cli("get", "services", "web", "-o", "yaml").stdout)
    assert one["spec"]["env"] == {"GREETING": "hi"} and one["replicas"] == 2
    insts = cli.json("get", "instances", "-s", "web")
    assert len(insts) == 2 and {i["node"] for i in insts} == {node}
    assert cli.json("get", "instances", insts[0]["id"])["id"] == insts[0]["id"]
    assert insts[0]["id"] in cli("get", "instances", "web").stdout
    assert "CONTAINER" in cli("get", "instances", "-o", "wide").stdout
    assert yaml.safe_load(cli("get", "nodes", "-o", "yaml").stdout)[0]["name"] == node
    assert node in cli("get", "nodes").stdout and "LABELS" in cli("get", "nodes", "-o", "wide").stdout
    assert "service_created" in cli("get", "events", "web").stdout
    assert any(e["kind"] == "service_created" for e in cli.json("get", "events"))
    described = cli("describe", "service", "web").stdout
    for part in ("Name:      web", "Namespace: default", "Rollout:   complete", "GREETING: hi", insts[0]["id"], "service_created"):
        assert part in described
    assert cli.json("describe", "service", "web")["service"]["name"] == "web"
    assert node in cli("describe", "node", node).stdout

    # a spec change: the plan shows the field diff, apply starts a rollout, history and undo follow it
    f2 = cli.file("web2.yaml", SERVICE.replace("GREETING: hi", "GREETING: hello").replace("replicas: 2", "replicas: 3"))
    plan = cli("apply", "-f", f2, "--dry-run").stdout
    assert "~ service 'web' (update: new revision, rolling update)" in plan
    assert '~ env.GREETING: "hi" => "hello"' in plan and "~ replicas:     2 => 3" in plan
    assert cluster.service("web")["revision"] == 1
    assert "revision 2, rolling update started" in cli("apply", "-f", f2).stdout
    cli("rollout", "status", "web", "--timeout", "60")
    cluster.wait_running("web", 3)
    history = cli.json("rollout", "history", "web")
    assert [(r["number"], r["current"]) for r in history] == [(2, True), (1, False)]
    assert "GREETING: hello" in cli("rollout", "history", "web", "--revision", "2").stdout
    assert '~ env.GREETING: "hi" => "hello"' in cli("rollout", "diff", "web", "1", "2").stdout
    assert "rolled back from revision 2 to revision 1" in cli("rollout", "undo", "web").stdout
    cli("rollout", "status", "web", "--timeout", "60")
    assert cluster.service("web")["spec"]["env"] == {"GREETING": "hi"}

    assert cli("scale", "web", "1").stdout.strip() == "service/web scaled to 1"
    cluster.wait_running("web", 1)
    cli("delete", "service", "web", "--wait", "--timeout", "60")
    assert not cluster.containers("web", running_only=False)
    r = cli("get", "services", "web", code=1)
    assert "error: service 'web' not found" in r.output
    assert "not found" in cli("scale", "web", "2", code=1).output


@pytest.mark.parametrize("action, phase_text", [("rollback", "was rolled back"), ("pause", "is paused")])
def test_rollout_status_fails_for_a_failing_rollout(cluster, cli, action, phase_text):
    cluster.start_agent("a")
    good = SERVICE + f"update:\n  failure_action: {action}\n"
    cli("apply", "-f", cli.file("good.yaml", good))
    cli("rollout", "status", "web", "--timeout", "60")
    bad = good.replace(f"image: {IMAGE}", "image: dockyard-no-such-image:1\npull: never")
    cli("apply", "-f", cli.file("bad.yaml", bad))
    r = cli("rollout", "status", "web", "--timeout", "60", code=1)
    assert f"error: rollout of web {phase_text}" in r.output and "dockyard-no-such-image:1" in r.output
    assert "Traceback" not in r.output
    assert cli("rollout", "status", "web", "--no-watch", code=1)


def test_rollout_pause_and_resume(cluster, cli):
    cluster.start_agent("a")
    slow = SERVICE + "update:\n  max_surge: 1\n  max_unavailable: 0\n  min_ready_seconds: 3\n"
    cli("apply", "-f", cli.file("v1.yaml", slow))
    cli("rollout", "status", "web", "--timeout", "60")
    assert "no rollout in progress" in cli("rollout", "pause", "web", code=1).output
    cli("apply", "-f", cli.file("v2.yaml", slow.replace("GREETING: hi", "GREETING: v2")))
    assert cli("rollout", "pause", "web").stdout.strip() == "service/web rollout paused"
    r = cli("rollout", "status", "web", code=1)
    assert "error: rollout of web is paused (revision 2)" in r.output and "rollout resume web" in r.output
    assert cluster.service("web")["rollout"]["phase"] == "paused"
    assert cli("rollout", "resume", "web").stdout.strip() == "service/web rollout resumed"
    assert "successfully rolled out: revision 2, 2/2 ready" in cli("rollout", "status", "web", "--timeout", "60").stdout
    assert "is not paused" in cli("rollout", "resume", "web", code=1).output


def test_stacks(cluster, cli):
    cluster.start_agent("a")
    two = SERVICE + "---\n" + SERVICE.replace("name: web", "name: api").replace("replicas: 2", "replicas: 1")
    f = cli.file("shop.yaml", two)
    assert "several documents form a stack" in cli("apply", "-f", f, code=1).output
    out = cli("apply", "-f", f, "--stack", "shop").stdout
    assert "service/web created" in out and "service/api created" in out
    cli("apply", "-f", cli.file("lone.yaml", SERVICE.replace("name: web", "name: lone")))
    wait_for(lambda: cli.json("get", "stacks") == [{"name": "shop", "services": ["api", "web"], "replicas": 3,
                                                    "ready": 3}], 60, 0.3, what="stack ready")
    assert cli("get", "stacks").stdout.split()[:10] == ["NAME", "SERVICES", "READY", "RELEASE", "STATE", "shop", "2",
                                                          "3/3", "-", "-"]
    assert "api,web" in cli("get", "stacks", "-o", "wide").stdout
    assert yaml.safe_load(cli("get", "stacks", "shop", "-o", "yaml").stdout)["services"] == ["api", "web"]
    assert [s["name"] for s in cli.json("get", "services", "--stack", "shop")] == ["api", "web"]

    # the file without api, with --prune: the plan says api goes, then it does
    only_web = cli.file("web.yaml", SERVICE)
    plan = cli("apply", "-f", only_web, "--stack", "shop", "--prune", "--dry-run").stdout
    assert "= service 'web' (unchanged)" in plan and "- service 'api' (delete" in plan
    assert "service/api deleted" in cli("apply", "-f", only_web, "--stack", "shop", "--prune").stdout

    out = cli("delete", "stack", "shop", "--wait", "--timeout", "60").stdout
    assert "service/web deleted" in out and "stack/shop deleted (1 service(s))" in out
    assert not cluster.containers("web", running_only=False)
    assert [s["name"] for s in cli.json("get", "services")] == ["lone"]
    assert "stack 'shop' not found" in cli("delete", "stack", "shop", code=1).output


def test_logs(cluster, cli):
    cluster.start_agent("a")
    body = SERVICE.replace('command: ["sleep", "3600"]',
                           'command: ["sh", "-c", "for i in 1 2 3; do echo line-$i; done; sleep 3600"]')
    cli("apply", "-f", cli.file("web.yaml", body))
    cluster.wait_ready("web", 2)
    wait_for(lambda: cli("logs", "web").stdout.count("line-3") == 2, 20, 0.3, what="both instances' logs")
    out = cli("logs", "web", "--tail", "1").stdout.splitlines()
    assert sorted(out) == ["web.1 | line-3", "web.2 | line-3"]
    inst = cluster.instances("web")[0]["id"]
    assert cli("logs", inst).stdout.splitlines() == ["line-1", "line-2", "line-3"]
    assert "no service or instance named 'nope'" in cli("logs", "nope", code=1).output

    # -f merges the followed streams of both instances until interrupted
    proc = subprocess.Popen([DOCKYARD, "logs", "web", "-f", "--tail", "1"], env={**os.environ, **cli.env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = _reader(proc)
    try:
        got = sorted(lines.get(timeout=20).rstrip("\n") for _ in range(2))
        assert got == ["web.1 | line-3", "web.2 | line-3"]
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _reader(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return lines


def test_events_watch_streams_new_events(cluster, cli):
    since = max([e["id"] for e in cluster.events(limit=1)] or [0])
    proc = subprocess.Popen([DOCKYARD, "events", "-w", "--json", "--limit", "0", "--since", str(since)],
                            env={**os.environ, **cli.env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = _reader(proc)
    try:
        def created() -> bool:
            cluster.put("watched", replicas=0)
            while True:
                e = json.loads(lines.get(timeout=15))
                if e["kind"] == "service_created" and e["service"] == "watched":
                    return True

        assert created()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _compose_for_test_engine(cluster, src: Path, dst_dir: Path) -> Path:  # type: ignore[no-untyped-def]
    """The webapp compose file made runnable here, in the test only: every image is the local test image,
    commands sleep, health checks pass, host ports are left to Docker, the pinned node is a test node."""
    data = yaml.safe_load(src.read_text())
    cpus = float(os.cpu_count() or 1)
    for svc in data["services"].values():
        svc["image"] = IMAGE
        svc["command"] = "sleep 3600"
        svc.pop("entrypoint", None)
        svc["init"] = True
        if "healthcheck" in svc:
            svc["healthcheck"] = {"test": ["CMD", "true"], "interval": "1s", "timeout": "1s", "retries": 3}
        if "ports" in svc:
            svc["ports"] = [str(p).split(":")[-1] for p in svc["ports"]]
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        if "cpus" in limits:
            limits["cpus"] = str(min(float(limits["cpus"]), cpus))
        placement = svc.get("deploy", {}).get("placement", {})
        placement["constraints"] = [c.replace("db-1", cluster.node("b")) for c in placement.get("constraints", [])]
    shutil.copy(DATA / "compose-webapp.env", dst_dir / "compose-webapp.env")
    (dst_dir / "db_password.txt").write_text("s3cret\n")  # the file secret the stack mounts
    out = dst_dir / "docker-compose.yml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_compose_convert_and_up_converge_on_the_engine(engine, tmp_path):  # type: ignore[no-untyped-def]
    # named volumes and the file secret are bind mounts under tmp_path: the server must allow them
    stack_dir, volumes = tmp_path / "stack", tmp_path / "volumes"
    stack_dir.mkdir()
    cluster = Cluster(tmp_path, server_args=["--allow", f"bind:{tmp_path}"])
    cluster.start_server()
    try:
        _compose_converge(cluster, Cli(cluster, tmp_path), stack_dir, volumes)
    finally:
        cluster.close()


def _compose_converge(cluster, cli, stack_dir: Path, volumes: Path) -> None:  # type: ignore[no-untyped-def]
    # the file as shipped, beside its .env and secret file (bind mounts resolve against its directory)
    shipped = stack_dir / "compose-webapp.yml"
    shutil.copy(DATA / "compose-webapp.yml", shipped)
    shutil.copy(DATA / "compose-webapp.env", stack_dir / "compose-webapp.env")
    # a named volume needs --volume-root: without it, convert refuses and names the volume
    refused = cli("compose", "convert", "-f", str(shipped), code=1)
    assert "worker.volumes[0]: named volume 'media'" in refused.output and "--volume-root" in refused.output
    converted = cli("compose", "convert", "-f", str(shipped), "--volume-root", str(volumes))
    docs = list(yaml.safe_load_all(converted.stdout))
    assert {d["name"] for d in docs} == {"web", "worker", "db"} and {d["stack"] for d in docs} == {"webapp"}
    assert "order (compose up waits between levels): worker, db -> web" in converted.output  # depends_on
    assert "warning: db: 'shm_size' is not supported" in converted.output
    # what convert prints, apply takes as it is (dry run: the images do not exist here)
    plan = cli("apply", "-f", "-", "--dry-run", input=converted.stdout).stdout
    assert "Plan: 3 to create." in plan
    assert cluster.api.get("/v1/services").json() == []

    # web wants at most 2 per node (3 replicas: two nodes); db is pinned to an ssd node by name
    cluster.start_agent("a", "--cpus", "16", "--memory", "64Gi")
    db_node = cluster.start_agent("b", "--cpus", "16", "--memory", "64Gi", "--label", "disk=ssd")
    f = _compose_for_test_engine(cluster, DATA / "compose-webapp.yml", stack_dir)
    up = cli("compose", "up", "-f", str(f), "--volume-root", str(volumes))
    for name in ("web", "worker", "db"):
        assert f"service/{name} created" in up.stdout

    def converged() -> bool:
        svcs = cli.json("get", "services", "--stack", "webapp")
        return len(svcs) == 3 and all(s["status"]["ready"] == s["replicas"] for s in svcs)

    wait_for(converged, 90, 0.5, what="the webapp stack ready")
    assert cli.json("get", "stacks", "webapp") == {"name": "webapp", "services": ["db", "web", "worker"],
                                                   "replicas": 6, "ready": 6}
    assert len(cluster.wait_running("web", 3)) == 3 and len(cluster.wait_running("worker", 2)) == 2
    (db,) = cluster.wait_running("db", 1)
    assert db.labels["dockyard.node"] == db_node
    mounts = {m["Destination"]: m for m in db.attrs["Mounts"]}
    assert mounts["/run/secrets/db_password"]["Source"] == str(stack_dir / "db_password.txt")
    assert mounts["/run/secrets/db_password"]["RW"] is False
    assert mounts["/var/lib/postgresql/data"]["Source"] == str(volumes / "webapp" / "pgdata")
    (web, *_) = cluster.containers("web")
    env = web.attrs["Config"]["Env"]
    assert "SECRET_KEY=change me" in env and "DJANGO_SETTINGS_MODULE=shop.settings.production" in env
    assert web.labels["com.example.team"] == "storefront"
    assert web.attrs["HostConfig"]["Memory"] == 512 * 1024**2
    assert "unchanged" in cli("compose", "up", "-f", str(f), "--volume-root", str(volumes)).stdout

    cli("compose", "down", "-f", str(f), "--wait")
    assert cli.json("get", "stacks") == []
    assert not cluster.containers(running_only=False)


def test_tokens_and_join_token(cluster, cli):
    # create: the secret alone on stdout, the note on stderr; it works at once with its role
    r = cli("token", "create", "ci-deployer", "--role", "operator", "--expires-in", "24h")
    secret = r.stdout.strip()
    assert secret.startswith("dyt_") and "\n" not in secret
    assert "token/ci-deployer created" in r.stderr and "role operator" in r.stderr and "(in 24h)" in r.stderr
    assert "shown only once" in r.stderr
    as_ci = {"DOCKYARD_TOKEN": secret}
    cli("apply", "-f", cli.file("w.yaml", "name: w\nimage: x\nreplicas: 0\n"), env=as_ci)
    r = cli("token", "ls", code=1, env=as_ci)  # an operator may deploy, not manage tokens
    assert "error:" in r.output and "admin" in r.output
    assert "a token named 'ci-deployer' exists" in cli("token", "create", "ci-deployer", "--role", "viewer", code=1).output
    assert "--expires-in" in cli("token", "create", "x", "--role", "viewer", "--expires-in", "soon", code=2).output

    # ls in every format; never a secret
    viewer = cli.json("token", "create", "dash", "--role", "viewer")
    assert viewer["token"].startswith("dyt_") and viewer["expires_at"] is None
    table = cli("token", "ls").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "ROLE", "AGE", "LAST-USED", "EXPIRES"]
    rows = {line.split()[1]: line.split() for line in table[1:]}
    assert rows["ci-deployer"][2] == "operator" and rows["ci-deployer"][-2:] == ["in", "24h"]
    assert rows["dash"][-2:] == ["never", "never"] and rows["admin"][2] == "admin"
    listed = cli.json("token", "ls")
    assert {t["name"] for t in listed} == {"admin", "ci-deployer", "dash"}
    assert yaml.safe_load(cli("token", "ls", "-o", "yaml").stdout) == cli.json("token", "ls")
    assert secret not in cli("token", "ls", "-o", "yaml").stdout
    ci = next(t for t in listed if t["name"] == "ci-deployer")
    assert ci["last_used_at"] is not None

    # rm by id and by name; a revoked token is refused with a hint at where it came from
    assert cli("token", "rm", ci["id"]).stdout.strip() == f"token/ci-deployer ({ci['id']}) revoked"
    r = cli("get", "services", code=1, env=as_ci)
    assert "error:" in r.output and "the token came from DOCKYARD_TOKEN" in r.output
    assert cli("token", "rm", "dash").stdout.strip() == f"token/dash ({viewer['id']}) revoked"
    assert "no token has the id or name 'dash'" in cli("token", "rm", "dash", code=1).output
    assert "restart" in cli("token", "rm", "admin", code=1).output  # the bootstrap token stays
    assert [t["name"] for t in cli.json("token", "ls")] == ["admin"]
    kinds = [(e["kind"], e.get("actor")) for e in cluster.events(limit=20)]
    assert ("token_created", "token:admin") in kinds and ("token_deleted", "token:admin") in kinds

    # join-token rotate: the old token no longer admits nodes, the new one does
    r = cli("join-token", "rotate")
    join = r.stdout.strip()
    assert join.startswith("dyj_") and "shown only once" in r.stderr
    old = httpx.post(f"{cluster.url}/v1/agent/join", json={"join_token": JOIN, "node_name": cluster.node("old"),
                                                            "cpus": 1, "memory": 1024**3}, timeout=10)
    assert old.status_code == 401
    cluster.start_agent("new", "--join-token", join)
    assert cluster.node_status(cluster.node("new")) == "ready"


def test_cli_over_tls_needs_the_ca_file(engine, tmp_path):
    cert, key = self_signed(tmp_path)
    c = Cluster(tmp_path, server_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    c.url = f"https://127.0.0.1:{c.port}"
    args = [DOCKYARD, "server", "--port", str(c.port), "--data-dir", str(tmp_path / "data"), *c.server_args]
    c.server = Proc(args, c.env, tmp_path / "server.log").start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        wait_for(lambda: httpx.get(f"{c.url}/readyz", verify=trust, timeout=2).status_code == 200, 30,
                 what="TLS server ready")
        cli = Cli(c, tmp_path)
        r = cli("get", "nodes", code=1)
        assert f"error: cannot verify the TLS certificate of the Dockyard server at {c.url}" in r.output
        assert "--ca-file" in r.output and "DOCKYARD_CA_FILE" in r.output and "cannot connect" not in r.output
        assert "no nodes" in cli("get", "nodes", "--ca-file", str(cert)).output
        assert cli("token", "ls", "-o", "name", env={"DOCKYARD_CA_FILE": str(cert)}).stdout == "admin\n"
        (tmp_path / "other").mkdir()
        other, _ = self_signed(tmp_path / "other")
        r = cli("get", "nodes", "--ca-file", str(other), code=1)
        assert f"the CA bundle {other} (from --ca-file) does not vouch for this certificate" in r.output
        assert "cannot use" in cli("get", "nodes", "--ca-file", str(tmp_path / "nope.pem"), code=1).output
        r = cli("get", "nodes", env={"DOCKYARD_URL": f"http://127.0.0.1:{c.port}"}, code=1)
        assert "if it serves HTTPS, use an https:// URL" in r.output
        # login saves the CA file, so later commands need no flag
        cli("login", "--server", c.url, "--token", ADMIN, "--ca-file", str(cert))
        assert json.loads((tmp_path / "cli.json").read_text())["ca_file"] == str(cert)
        assert "no nodes" in cli("get", "nodes", env={"DOCKYARD_URL": None, "DOCKYARD_TOKEN": None}).output
    finally:
        c.close()
