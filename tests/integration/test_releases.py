"""Releases on the real engine: a 3-service package installed, upgraded with new values, a
broken upgrade rolled back as a whole by the leader, a manual rollback to release 1 that
restarts only what it must, and a server killed (-9) mid-upgrade that ends all-or-nothing."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.harness import wait_for
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.integration

META = """name: shop
version: 1.0.0
description: two web services and a worker
values:
  front: {version: v1, health: /}
  api: {version: v1, health: /}
  worker: {tick: 5}
"""
WEB = """{% for svc in ["front", "api"] %}
---
name: {{ svc }}
image: dockyard-test:latest
command: [sh, -c, "echo $VERSION > /www/index.html; exec httpd -f -p 8080 -h /www"]
env: {VERSION: {{ values[svc].version | quote }}}
replicas: 2
init: true
stop_timeout: 1
health: {type: http, port: 8080, path: {{ values[svc].health | quote }}, interval: 1, retries: 2}
update: {max_surge: 1, max_unavailable: 0, progress_deadline: 60}
{% endfor %}
"""
WORKER = """name: worker
image: dockyard-test:latest
command: [sh, -c, "while true; do sleep {{ values.worker.tick }}; done"]
init: true
stop_timeout: 1
"""


def package(root: Path) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "stack.yaml").write_text(META)
    (root / "templates" / "web.yaml").write_text(WEB)
    (root / "templates" / "worker.yaml").write_text(WORKER)
    return root


def settled(cluster, release: int | None = None, state: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """The stack once no release rolls out, every service runs its release's revision and is ready."""
    def check():  # type: ignore[no-untyped-def]
        st = cluster.api.get("/v1/stacks/shop").json()
        if st["state"] == "rolling" or (release is not None and st["release"] != release):
            return None
        if state is not None and st["state"] != state:
            return None
        if all(s["revision"] == s["release_revision"] and s["ready"] == s["replicas"] for s in st["services"]):
            return st
        return None

    return wait_for(check, 120, 0.3, what=f"stack shop settled on release {release}")


def revisions(cluster) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {s["name"]: s["revision"] for s in cluster.api.get("/v1/services").json()}


def containers(cluster) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    out: dict[str, set[str]] = {}
    for c in cluster.containers():
        out.setdefault(c.labels["dockyard.service"], set()).add(c.id)
    return out


def test_install_upgrade_fail_rollback_and_crash(cluster, tmp_path):
    cluster.start_agent("a")
    cli = Cli(cluster, tmp_path)
    pkg = str(package(tmp_path / "shop"))

    # 1. install: release 1
    assert "stack/shop installed: release 1" in cli("stack", "install", "shop", pkg, "--wait").stdout
    settled(cluster, 1, "deployed")
    assert revisions(cluster) == {"front": 1, "api": 1, "worker": 1}
    worker = containers(cluster)["worker"]

    # 2. two services get new values: release 2; the worker is left alone
    diff = cli("stack", "diff", "shop", pkg, "--set", "front.version=v2", "--set", "api.version=v2").stdout
    assert "~ service front (updated)" in diff and "~ service api (updated)" in diff and "worker" not in diff
    cli("stack", "upgrade", "shop", pkg, "--set", "front.version=v2", "--set", "api.version=v2", "--wait")
    settled(cluster, 2, "deployed")
    assert revisions(cluster) == {"front": 2, "api": 2, "worker": 1}
    assert containers(cluster)["worker"] == worker

    # 3. a broken health check on api: the whole stack goes back to release 2 by itself
    r = cli("stack", "upgrade", "shop", pkg, "--reuse-values", "--set", "front.version=v3",
            "--set", "api.version=v3", "--set", "api.health=/missing", "--wait", code=1)
    assert "rolled_back" in r.output and "release 3 failed" in r.output and "service api" in r.output
    st = settled(cluster, 2, "rolled_back")
    assert "rolled back to release 2" in st["reason"]
    assert revisions(cluster) == {"front": 2, "api": 2, "worker": 1}  # front too, though it was healthy
    assert containers(cluster)["worker"] == worker
    # the same values as release 2 again: nothing changes, and --wait says the stack runs release 2
    same = cli("stack", "upgrade", "shop", pkg, "--set", "front.version=v2", "--set", "api.version=v2", "--wait")
    assert "stack/shop unchanged (release 2)" in same.stdout and "release 2 running" in same.stdout
    history = cli.json("stack", "history", "shop")
    assert [(h["number"], h["status"]) for h in history] == [(3, "failed"), (2, "deployed"), (1, "superseded")]

    # 4. manual rollback to release 1: front and api back to revision 1; the worker not restarted
    before = containers(cluster)
    cli("stack", "rollback", "shop", "1", "--wait")
    settled(cluster, 1, "deployed")
    assert revisions(cluster) == {"front": 1, "api": 1, "worker": 1}
    after = containers(cluster)
    assert after["worker"] == worker and not (after["front"] & before["front"]) and not (after["api"] & before["api"])
    assert [i["restart_count"] for i in cluster.instances("worker")] == [0]
    stacks = cli("get", "stacks").stdout.split()
    assert stacks[:10] == ["NAME", "SERVICES", "READY", "RELEASE", "STATE", "shop", "3", "5/5", "1", "deployed"]

    # 5. kill -9 the server mid-upgrade: after a restart the stack is all new or all old
    cli("stack", "upgrade", "shop", pkg, "--set", "front.version=v4", "--set", "api.version=v4")
    assert cluster.api.get("/v1/stacks/shop").json()["state"] == "rolling"
    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    st = wait_for(lambda: (x := cluster.api.get("/v1/stacks/shop").json())["state"] != "rolling" and x, 120, 0.3,
                  what="the interrupted release decided")
    assert st["state"] in ("deployed", "rolled_back"), st
    st = settled(cluster, st["release"], st["state"])
    rel = cluster.api.get(f"/v1/stacks/shop/releases/{st['release']}").json()
    assert revisions(cluster) == {n: r["revision"] for n, r in rel["services"].items()}
    # front's revisions: v1, v2, v3 (failed), v4
    expected = {"deployed": (4, 4), "rolled_back": (1, 1)}[st["state"]]
    assert (st["release"], revisions(cluster)["front"]) == expected

    # 6. uninstall
    cli("stack", "uninstall", "shop", "--wait")
    assert cluster.api.get("/v1/services").json() == []
    wait_for(lambda: not cluster.containers(), 60, 0.3, what="containers gone")


def test_cli_template_values_compare_status_and_delete_stack(cluster, tmp_path):
    cluster.start_agent("a")
    cli = Cli(cluster, tmp_path)
    pkg = package(tmp_path / "shop")
    (tmp_path / "prod.yaml").write_text("worker: {tick: 7}\n")
    out = cli("stack", "template", "shop", str(pkg), "-f", str(tmp_path / "prod.yaml"), "--set", "api.version=x").stdout
    assert "# Source: worker.yaml" in out and "sleep 7" in out and "VERSION: \"x\"" in out
    bad = cli("stack", "template", "shop", str(pkg), "--set", "front=oops", code=1).output
    assert "web.yaml" in bad and "nothing was applied" in bad

    cli("stack", "install", "shop", str(pkg), "-f", str(tmp_path / "prod.yaml"), "--wait")
    assert "exists" in cli("stack", "install", "shop", str(pkg), code=1).output
    cli("stack", "upgrade", "shop", str(pkg), "--reuse-values", "--set", "worker.tick=8", "--wait")
    assert cli.json("stack", "values", "shop", "--release", "1") == {
        "front": {"version": "v1", "health": "/"}, "api": {"version": "v1", "health": "/"}, "worker": {"tick": 7}}
    cmp = cli("stack", "compare", "shop", "1", "2").stdout
    assert "~ service worker (updated)" in cmp and "~ values.worker.tick: 7 -> 8" in cmp
    assert "front" not in cmp
    status = cli("stack", "status", "shop").stdout
    assert status.startswith("stack shop: release 2, deployed") and "worker" in status
    assert "stack/shop unchanged (release 2)" in cli("stack", "upgrade", "shop", str(pkg), "--reuse-values").stdout

    # `delete stack` of a server-side stack takes its releases too
    cli("delete", "stack", "shop", "--wait")
    assert cluster.api.get("/v1/stacks/shop").status_code == 404
    assert cli.json("get", "stacks") == []


def test_the_new_leader_finishes_a_release_the_old_one_left(engine, tmp_path):  # noqa: F811
    """Two servers on PostgreSQL: the leader is killed (-9) just after a broken upgrade was
    accepted; the other server takes the lease and rolls the whole stack back."""
    from tests import pg
    from tests.harness import HACluster

    url = pg.fresh_database()
    ha = HACluster(tmp_path, url, servers=2, env={"DOCKYARD_LEASE_TTL": "3"})
    try:
        ha.start_server()
        leader = ha.wait_leader()
        ha.start_agent("a")

        def body(version: str, health: str) -> dict:
            web = {"image": "dockyard-test:latest", "init": True, "stop_timeout": 1, "replicas": 1,
                   "command": ["sh", "-c", "exec httpd -f -p 8080 -h /www"], "env": {"VERSION": version},
                   "health": {"type": "http", "port": 8080, "path": health, "interval": 1, "retries": 2},
                   "update": {"max_surge": 1, "max_unavailable": 0}}
            return {"services": [{"name": "front", **web}, {"name": "api", **web},
                                 {"name": "worker", "image": "dockyard-test:latest", "init": True, "stop_timeout": 1,
                                  "command": ["sleep", "3600"]}], "values": {"version": version}}

        ha.use(leader)
        assert ha.api.put("/v1/stacks/shop", json=body("v1", "/")).status_code == 201
        settled(ha, 1, "deployed")
        worker = containers(ha)["worker"]
        r = ha.api.put("/v1/stacks/shop", json=body("v2", "/missing"))
        assert r.status_code == 200 and r.json()["stack"]["state"] == "rolling"
        ha.stop_server(leader, signal.SIGKILL)
        other = 1 - leader
        ha.use(other)
        ha.wait_leader([other], timeout=20)
        st = settled(ha, 1, "rolled_back")
        assert "release 2 failed" in st["reason"]
        assert revisions(ha) == {"front": 1, "api": 1, "worker": 1}
        assert containers(ha)["worker"] == worker
    finally:
        ha.close()
        pg.drop_database(url)
