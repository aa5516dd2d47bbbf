"""Node loss, both ways, with a real server and real agents on the local engine.

A SIGKILLed agent's node goes down on the fast path (its long poll's connection closed, no
reconnect within the grace): the server runs with a 30 s node TTL, so only the fast path can
take it down within the tests' waits. A SIGSTOPped agent (a silent host: no FIN) still goes
down after the TTL. A server restart, or an agent stopped on purpose (SIGTERM), marks nothing
suspect or down. With two servers on PostgreSQL, a drop seen by a server that does not lead
reaches the leader.
"""
from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests import pg
from tests.harness import Cluster, HACluster, wait_for

pytestmark = pytest.mark.integration
LONG_TTL = "30"  # a node TTL no wait below reaches: down within them means the fast path


def suspects_sqlite(c: Cluster) -> dict[str, float | None]:
    with sqlite3.connect(Path(c.tmp) / "data" / "dockyard.db") as db:
        return dict(db.execute("SELECT name, suspect_since FROM nodes"))


def node_down_events(c: Cluster, node: str) -> list[dict]:
    return [e for e in c.events(node=node) if e["kind"] == "node_down"]


@pytest.fixture
def slow_ttl(engine, tmp_path, request):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path, env={"DOCKYARD_NODE_TTL": LONG_TTL})
    c.start_server()
    yield c
    for a in c.agents.values():
        a.send(signal.SIGCONT)
    c.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-5000:]}")


def two_nodes_with(c: Cluster, service: str) -> tuple[str, str]:
    a, b = c.start_agent("a"), c.start_agent("b")
    assert c.put(service, replicas=4).status_code == 201
    wait_for(lambda: {x.labels["dockyard.node"] for x in c.containers(service)} == {a, b}, 60, what="spread on a and b")
    c.wait_ready(service, 4)
    return a, b


def test_a_killed_agent_is_down_after_the_grace_not_the_ttl(slow_ttl):
    c = slow_ttl
    a, b = two_nodes_with(c, "web")
    # let the agent settle into its long poll: just after its replicas turned ready it may be
    # between polls (reporting), the window where a kill falls back to the TTL (cluster.md)
    time.sleep(3.0)
    c.kill_agent("a")  # SIGKILL: the kernel closes its sockets; the server sees the long poll drop
    wait_for(lambda: c.node_status(a) == "down", 20, what="node a down long before its 30 s TTL")
    # replaced on b, in the order the loop works: down, then replacements placed and running
    wait_for(lambda: len([x for x in c.containers("web") if x.labels["dockyard.node"] == b]) == 4, 30,
             what="all four replicas running on b")
    c.wait_ready("web", 4)
    down = node_down_events(c, a)
    assert len(down) == 1 and "closed its agent's connection" in down[0]["message"], down
    # it comes back as it did before: ready when it beats again, its stale containers removed
    c.restart_agent("a")
    wait_for(lambda: c.node_status(a) == "ready", 30, what="node a ready again")
    wait_for(lambda: not c.containers("web", running_only=False, node=a), 30, what="a's fenced containers removed")
    assert c.node_status(b) == "ready" and len(node_down_events(c, b)) == 0


def test_a_stopped_agent_still_goes_down_after_the_ttl(engine, tmp_path):
    # a silent host: no FIN, packets just stop; only the TTL can tell
    c = Cluster(tmp_path, env={"DOCKYARD_NODE_TTL": "3"})
    c.start_server()
    try:
        a, b = two_nodes_with(c, "q")
        c.agents[a].send(signal.SIGSTOP)
        try:
            wait_for(lambda: c.node_status(a) == "down", 30, what="node a down after its TTL")
            down = node_down_events(c, a)
            assert len(down) == 1 and "missed heartbeats" in down[0]["message"], down
            assert suspects_sqlite(c)[a] is None  # its connection never closed
        finally:
            c.agents[a].send(signal.SIGCONT)
        wait_for(lambda: c.node_status(a) == "ready", 30, what="node a back")
        c.wait_ready("q", 4)
    finally:
        c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_server_restart_marks_no_node_suspect_or_down(slow_ttl, sig):
    c = slow_ttl
    a, b = two_nodes_with(c, "web")
    c.stop_server(sig)  # every agent's long poll closes, from the server's side
    time.sleep(1.5)  # longer than the grace: agents retry meanwhile, and fail
    c.start_server()
    for n in (a, b):
        wait_for(lambda n=n: c.node_status(n) == "ready", 30, what=f"{n} ready")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4:  # several graces and loop passes
        assert c.node_status(a) == "ready" and c.node_status(b) == "ready"
        time.sleep(0.2)
    assert node_down_events(c, a) == [] and node_down_events(c, b) == []
    assert suspects_sqlite(c) == {a: None, b: None}
    assert len(c.containers("web")) == 4


def test_an_agent_stopped_on_purpose_waits_for_the_ttl(slow_ttl):
    # SIGTERM: the agent tells the server it leaves; its containers keep running, and a restart
    # (an upgrade) usually follows, so its node is not suspect
    c = slow_ttl
    a, b = two_nodes_with(c, "web")
    before = {x.id for x in c.containers("web", node=a)}
    c.kill_agent("a", signal.SIGTERM)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4:
        assert c.node_status(a) == "ready"
        time.sleep(0.2)
    assert suspects_sqlite(c)[a] is None and node_down_events(c, a) == []
    c.restart_agent("a")
    time.sleep(2)
    assert c.node_status(a) == "ready" and {x.id for x in c.containers("web", node=a)} == before


def test_a_drop_seen_by_a_server_that_does_not_lead_reaches_the_leader(engine, tmp_path, request):
    url = pg.fresh_database()
    c = HACluster(tmp_path, url, servers=2, env={"DOCKYARD_NODE_TTL": LONG_TTL, "DOCKYARD_LEASE_TTL": "3"})
    try:
        c.start_server()
        leader = c.wait_leader()
        follower = 1 - leader
        a = c.start_agent("a", servers=[follower])  # a's long poll goes to the follower only
        b = c.start_agent("b", servers=[follower, leader])  # the follower first, the leader if it is away
        assert c.put("web", replicas=4).status_code == 201
        wait_for(lambda: {x.labels["dockyard.node"] for x in c.containers("web")} == {a, b}, 60, what="spread")
        c.wait_ready("web", 4)
        c.kill_agent("a")
        wait_for(lambda: c.node_status(a) == "down", 20, what="node a down long before its 30 s TTL")
        down = node_down_events(c, a)
        assert len(down) == 1 and "closed its agent's connection" in down[0]["message"], down
        wait_for(lambda: len([x for x in c.containers("web") if x.labels["dockyard.node"] == b]) == 4, 30,
                 what="all four replicas running on b")
        assert c.node_status(b) == "ready" and node_down_events(c, b) == []
        # the server an agent talks to restarts: it moves to the other one, and is not suspected
        c.stop_server(follower, signal.SIGTERM)
        c.start_server(follower)
        time.sleep(4)
        assert c.node_status(b) == "ready" and node_down_events(c, b) == []
        engine_ = create_engine(url)
        with engine_.connect() as db:
            assert db.execute(text("SELECT suspect_since FROM nodes WHERE name = :n"), {"n": b}).scalar() is None
        engine_.dispose()
    finally:
        c.close()
        pg.drop_database(url)
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            for log in sorted(tmp_path.glob("*.log")):
                print(f"===== {log.name}\n{log.read_text()[-5000:]}")
