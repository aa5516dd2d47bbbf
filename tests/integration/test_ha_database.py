"""PostgreSQL restarted under a running cluster: 503s with a JSON error while it is away,
containers keep running, servers reconnect by themselves, and the cluster converges after.

The test starts a PostgreSQL server of its own (scripts/start-postgres.sh on a free port):
stopping the one the other tests share would fail them."""
from __future__ import annotations

import shutil
import tempfile
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.harness import ROOT, HACluster, free_port, wait_for

pytestmark = pytest.mark.integration


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("this test needs PostgreSQL's server binaries: apt-get install -y postgresql")
    return found[-1].parent


def pg_ctl(data: Path, *args: str) -> None:
    subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", f"{pg_bin()}/pg_ctl -D {data} " + " ".join(args)],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def own_pg():  # type: ignore[no-untyped-def]
    # not under pytest's tmp_path: the postgres user must reach it (pytest's dirs are 0700 root)
    data, port = Path(tempfile.mkdtemp(prefix="dockyard-pg-")) / "data", free_port()
    url = subprocess.run([str(ROOT / "scripts" / "start-postgres.sh"), str(data), str(port)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.strip()
    yield data, url
    subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", f"{pg_bin()}/pg_ctl -D {data} -m immediate stop"],
                   capture_output=True, timeout=60)
    shutil.rmtree(data.parent, ignore_errors=True)


def test_postgres_restart_is_survived(engine, tmp_path, own_pg):
    data, url = own_pg
    c = HACluster(tmp_path, url, servers=2, env={"DOCKYARD_LEASE_TTL": "3"})
    try:
        c.start_server()
        c.wait_leader()
        c.start_agent("a")
        assert c.put("web", replicas=2).status_code == 201
        before = {ct.id for ct in c.wait_running("web", 2)}

        pg_ctl(data, "-m fast", "stop")
        def unavailable() -> bool:
            r = c.api.get("/v1/services/web")
            return r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        wait_for(unavailable, 20, 0.2, what="503 while the database is away")
        r = c.api.get("/v1/services/web")
        assert r.headers["content-type"].startswith("application/json") and "Traceback" not in r.text
        ready = httpx.get(f"{c.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        # the data plane does not need the control plane
        assert {ct.id for ct in c.containers("web")} == before

        pg_ctl(data, "-w", "-t 60", f"-o \"-h 127.0.0.1 -p {url.rsplit(':', 1)[1].split('/')[0]} -k /tmp\"",
               "-l", str(data / "server.log"), "start")
        wait_for(lambda: c.api.get("/v1/services/web").status_code == 200, 30, 0.2, what="the API back")
        c.wait_leader(timeout=20)
        assert c.api.post("/v1/services/web/scale", json={"replicas": 3}).status_code == 200
        c.wait_running("web", 3, timeout=60)
        c.wait_ready("web", 3)
        # the two that ran through the outage were never restarted
        assert before <= {ct.id for ct in c.containers("web")}
        assert c.node_status(c.node("a")) == "ready"
    finally:
        c.close()
