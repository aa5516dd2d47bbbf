"""`dockyard compose up` against a live server, a live agent and the real engine: all or nothing,
depends_on order with waiting, named volumes under a volume root, variables from `.env`."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from tests.harness import ADMIN, IMAGE, Cluster, wait_for

pytestmark = pytest.mark.integration

STACK = f"""\
name: shop
services:
  db:
    image: {IMAGE}
    # ready only after 3 s: what depends on it must not be created before
    command: sh -c "sleep 3; touch /tmp/ready; exec sleep 3600"
    init: true
    stop_grace_period: 1s
    mem_limit: 64m
    volumes: ["data:/var/lib/db"]
    environment:
      discovery.type: single-node
      PASSWORD: ${{DB_PASSWORD:?set DB_PASSWORD in .env}}
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
  web:
    image: {IMAGE}
    command: sleep 3600
    init: true
    stop_grace_period: 1s
    depends_on:
      db: {{condition: service_healthy}}
    environment:
      DB_HOST: db
      COST: "$$5"
    deploy:
      replicas: ${{WEB_REPLICAS:-2}}
volumes:
  data: {{}}
"""


@pytest.fixture
def stack_cluster(engine, tmp_path, request):  # type: ignore[no-untyped-def]
    """A server that allows bind mounts under the test's volume root, and one agent."""
    root = tmp_path / "volumes"
    root.mkdir()
    c = Cluster(tmp_path, server_args=["--allow", f"bind:{root}"])
    c.start_server()
    c.start_agent("a")
    c.volume_root = root  # type: ignore[attr-defined]
    yield c
    c.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-6000:]}")


def dockyard(cluster, *args: str, code: int = 0):  # type: ignore[no-untyped-def]
    env = {"DOCKYARD_URL": cluster.url, "DOCKYARD_TOKEN": ADMIN, "DOCKYARD_CONFIG": str(cluster.tmp / "cli.json")}
    r = CliRunner().invoke(app, list(args), env=env)
    assert r.exit_code == code, f"dockyard {' '.join(args)} -> {r.exit_code}\n{r.output}"
    assert "Traceback" not in r.output
    return r


def created(cluster, name: str) -> datetime:  # type: ignore[no-untyped-def]
    return datetime.fromisoformat(cluster.service(name)["created_at"].replace("Z", "+00:00"))


def test_compose_up_all_or_nothing_then_in_dependency_order(stack_cluster, tmp_path):
    c = stack_cluster
    project = tmp_path / "shop"
    project.mkdir()
    f = project / "compose.yaml"
    (project / ".env").write_text("DB_PASSWORD=s3cret\n")

    # 1. one service the server's policy refuses (privileged is not allowed): nothing is created
    f.write_text(STACK.replace("    init: true\n    stop_grace_period: 1s\n    depends_on",
                               "    init: true\n    privileged: true\n    stop_grace_period: 1s\n    depends_on"))
    r = dockyard(c, "compose", "up", "-f", str(f), "--volume-root", str(c.volume_root), code=1)
    assert "nothing was applied" in r.output and "'web'" in r.output
    assert "web: privileged:" in r.output
    assert c.api.get("/v1/services").json() == []

    # 2. a named volume without a volume root is refused before the server is asked
    f.write_text(STACK)
    r = dockyard(c, "compose", "up", "-f", str(f), code=1)
    assert "db.volumes[0]: named volume 'data'" in r.output and "--volume-root" in r.output
    assert c.api.get("/v1/services").json() == []

    # 3. the good file: db first, web only once db is healthy
    r = dockyard(c, "compose", "up", "-f", str(f), "--volume-root", str(c.volume_root))
    assert r.stdout.index("service/db created") < r.stdout.index("service/web created")
    assert "waiting for db (service_healthy) before web" in r.output
    assert "db: service_healthy (1/1 ready)" in r.output
    assert (created(c, "web") - created(c, "db")).total_seconds() >= 3
    c.wait_ready("web", 2)
    (db,) = c.wait_running("db", 1)
    env = db.attrs["Config"]["Env"]
    assert "discovery.type=single-node" in env and "PASSWORD=s3cret" in env
    assert db.attrs["HostConfig"]["Memory"] == 64 * 2**20  # mem_limit 64m: MiB, as in Docker
    mounts = {m["Destination"]: m["Source"] for m in db.attrs["Mounts"]}
    assert mounts["/var/lib/db"] == str(c.volume_root / "shop" / "data")
    web = c.containers("web")[0]
    assert "COST=$5" in web.attrs["Config"]["Env"] and "DB_HOST=db" in web.attrs["Config"]["Env"]

    # 4. again: nothing changes, and nothing waits for long (db is healthy already)
    r = dockyard(c, "compose", "up", "-f", str(f), "--volume-root", str(c.volume_root))
    assert "service/db unchanged" in r.stdout and "service/web unchanged" in r.stdout

    # 5. a dry run checks on the server and prints the plan; down takes the stack away
    r = dockyard(c, "compose", "up", "-f", str(f), "--volume-root", str(c.volume_root), "--dry-run")
    assert "order: db -> web" in r.output
    dockyard(c, "compose", "down", "-f", str(f), "--wait")
    assert c.api.get("/v1/services").json() == []
    wait_for(lambda: not c.containers(running_only=False), 30, what="containers gone")


def test_compose_up_stops_when_a_dependency_cannot_get_ready(stack_cluster, tmp_path):
    c = stack_cluster
    f = tmp_path / "compose.yaml"
    f.write_text(f"""\
services:
  migrate:
    image: {IMAGE}
    command: sh -c "exit 3"
    restart: "no"
  app:
    image: {IMAGE}
    command: sleep 3600
    depends_on:
      migrate: {{condition: service_completed_successfully}}
""")
    r = dockyard(c, "compose", "up", "-f", str(f), "--stack", "jobs", code=1)
    assert "service/migrate created" in r.stdout
    assert "migrate cannot satisfy service_completed_successfully: instance migrate.1 exited with code 3" in r.output
    assert "not applied: app" in r.output
    assert [s["name"] for s in c.api.get("/v1/services").json()] == ["migrate"]
    # fixed: it completes, and what waits for it is applied
    f.write_text(f.read_text().replace('sh -c "exit 3"', 'sh -c "exit 0"'))
    r = dockyard(c, "compose", "up", "-f", str(f), "--stack", "jobs")
    assert "migrate: service_completed_successfully (1/1 completed)" in r.output
    assert "service/app created" in r.stdout
    c.wait_ready("app", 1)
    assert json.loads(dockyard(c, "get", "stacks", "jobs", "-o", "json").stdout)["services"] == ["app", "migrate"]
