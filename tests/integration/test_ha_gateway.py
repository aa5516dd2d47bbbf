"""The routing table with several servers on one PostgreSQL database: each server derives it
from the database and recomputes it on signals from the others, so a gateway whose agent
talks to one server sees replicas that became ready (or left) through another."""
from __future__ import annotations

import httpx
import pytest

from tests import pg
from tests.harness import HACluster, free_port, wait_for
from tests.integration.test_gateway import WHOAMI, get, routed

pytestmark = pytest.mark.integration


@pytest.fixture
def ha2(engine, tmp_path):  # type: ignore[no-untyped-def]
    url = pg.fresh_database()
    c = HACluster(tmp_path, url, servers=2, env={"DOCKYARD_LEASE_TTL": "3"})
    c.start_server()
    yield c
    c.close()
    pg.drop_database(url)


def test_gateways_on_agents_of_different_servers_see_the_same_routes(ha2):
    ha2.wait_leader()
    pa, pb = free_port(), free_port()
    # agent a talks to server 0 only, agent b to server 1 only: their reports are written by
    # different servers, and each gateway's table comes from its own server
    ha2.start_agent("a", "--gateway-listen", f"127.0.0.1:{pa}", "--drain-seconds", "1", servers=[0])
    ha2.start_agent("b", "--gateway-listen", f"127.0.0.1:{pb}", "--drain-seconds", "1", servers=[1])
    assert ha2.put("web", replicas=4, command=WHOAMI, expose=[{"port": 8080}]).status_code == 201
    ha2.wait_ready("web", 4)
    nodes = {c.labels["dockyard.node"] for c in ha2.containers("web")}
    assert len(nodes) == 2
    everyone = {c.id[:12] for c in ha2.containers("web")}
    assert routed(ha2, pa, 4) == everyone
    assert routed(ha2, pb, 4) == everyone
    tables = [httpx.get(f"{u}/v1/routes", headers=ha2.api.headers).json() for u in ha2.urls]
    assert tables[0]["version"] == tables[1]["version"]  # the same content, the same version
    assert {g["node"] for g in tables[0]["gateways"]} == {ha2.node("a"), ha2.node("b")}

    # scaled to 1 through server 1: both gateways stop sending to the three that go
    ha2.use(1)
    assert ha2.api.post("/v1/services/web/scale", json={"replicas": 1}).status_code == 200
    ha2.wait_running("web", 1)
    left = {c.id[:12] for c in ha2.containers("web")}
    for port in (pa, pb):
        answers = {get(port).text.strip() for _ in range(12)}
        assert answers == left, (port, answers, left)
    wait_for(lambda: all(len(httpx.get(f"{u}/v1/routes", headers=ha2.api.headers).json()["routes"][0]["endpoints"]) == 1
                         for u in ha2.urls), 10, what="both servers' tables list one endpoint")
