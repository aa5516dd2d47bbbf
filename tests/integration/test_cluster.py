"""A cluster of three agents on the one engine: placement, node loss, fencing, drain.

Each agent stands for a host (its own node name and zone label); killing an agent stands
for losing the host. The server runs with a short node TTL so that node loss is quick.
"""
from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.harness import wait_for

pytestmark = pytest.mark.integration

TTL = 3  # seconds of silence before a node is down (default 5): keeps the tests quick


@pytest.fixture(autouse=True)
def short_ttl(monkeypatch):  # type: ignore[no-untyped-def]
    # autouse fixtures run before `cluster`, whose Cluster copies the environment
    monkeypatch.setenv("DOCKYARD_NODE_TTL", str(TTL))


def start_nodes(cluster, *extra: str, shorts: str = "abc") -> list[str]:  # type: ignore[no-untyped-def]
    names = [cluster.start_agent(s, "--label", f"zone={s}", *extra, wait=False) for s in shorts]
    for n in names:
        wait_for(lambda n=n: cluster.node_status(n) == "ready", 30, what=f"node {n} ready")
    return names


def per_node(cluster, service: str, running_only: bool = True) -> Counter:  # type: ignore[no-untyped-def]
    """Containers of a service per node short name, as Docker sees them."""
    return Counter(c.labels["dockyard.node"].rsplit("-", 1)[1]
                   for c in cluster.containers(service, running_only=running_only))


def wait_spread(cluster, service: str, want: dict[str, int], timeout: float = 60.0) -> Counter:  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        running, every = per_node(cluster, service), per_node(cluster, service, running_only=False)
        return running if running == Counter(want) and every == running else None

    return wait_for(check, timeout, 0.2, what=f"{service} placed as {want}")


def test_nodes_report_capacity_labels_and_status(cluster):
    a, b, c = start_nodes(cluster, "--cpus", "2", "--memory", "256Mi")
    nodes = {n["name"]: n for n in cluster.api.get("/v1/nodes").json()}
    for short, name in zip("abc", (a, b, c)):
        n = nodes[name]
        assert n["labels"] == {"zone": short}
        assert (n["status"], n["availability"]) == ("ready", "active")
        assert n["cpus"] == 2 and n["memory"] == 256 * 1024 * 1024
    line = 'dockyard_nodes{availability="active",status="ready"} 3.0'
    metrics = wait_for(lambda: (m := cluster.api.get("/metrics").text) and line in m and m, 10, what=line)
    assert "dockyard_pending_instances 0.0" in metrics
    assert "dockyard_placement_seconds_count" in metrics


def test_spread_places_six_replicas_two_per_node(cluster):
    start_nodes(cluster)
    r = cluster.put("web", replicas=6, command=["httpd", "-f", "-p", "80", "-h", "/www"],
                    ports=[{"container_port": 80}])
    assert r.status_code == 201, r.text
    assert wait_spread(cluster, "web", {"a": 2, "b": 2, "c": 2})
    cluster.wait_ready("web", 6)
    # dynamic host ports: six containers on one engine, no conflict, each one answers
    ports = [i["host_ports"][0]["host_port"] for i in cluster.instances("web")]
    assert len(set(ports)) == 6
    assert httpx.get(f"http://127.0.0.1:{ports[0]}/", timeout=5).status_code == 200


def test_binpack_fills_one_node_first(cluster):
    start_nodes(cluster, "--memory", "256Mi")
    spec = {"resources": {"memory": "64Mi"}, "placement": {"strategy": "binpack"}}
    assert cluster.put("packed", replicas=3, **spec).status_code == 201
    first = wait_spread(cluster, "packed", {"a": 3})
    assert first == Counter({"a": 3})
    # the fourth still fits on a (4 x 64Mi = 256Mi); the next two go together to one more node
    assert cluster.api.post("/v1/services/packed/scale", json={"replicas": 6}).status_code == 200
    wait_spread(cluster, "packed", {"a": 4, "b": 2})


def test_constraints_restrict_placement(cluster):
    start_nodes(cluster)
    assert cluster.put("only-b", replicas=3, placement={"constraints": ["zone==b"]}).status_code == 201
    assert cluster.put("not-a", replicas=4, placement={"constraints": ["zone!=a"]}).status_code == 201
    assert cluster.put("a-or-c", replicas=2, placement={"constraints": ["zone in (a, c)"],
                                                        "max_per_node": 1}).status_code == 201
    wait_spread(cluster, "only-b", {"b": 3})
    wait_spread(cluster, "not-a", {"b": 2, "c": 2})
    wait_spread(cluster, "a-or-c", {"a": 1, "c": 1})


def test_unsatisfiable_request_stays_pending_and_says_why(cluster):
    start_nodes(cluster, "--memory", "256Mi")
    r = cluster.put("huge", replicas=2, resources={"memory": "512Mi"}, placement={"constraints": ["zone!=c"]})
    assert r.status_code == 201, r.text
    why = "0/3 nodes available: 2 insufficient memory, 1 did not match zone!=c"
    status = wait_for(lambda: (st := cluster.service("huge")["status"]) and why in st["message"] and st, 20,
                      what="unschedulable reason in the status")
    assert status["pending"] == 2 and status["running"] == 0
    assert all(i["state"] == "pending" and i["node"] is None for i in cluster.instances("huge"))
    events = [e for e in cluster.events(service="huge") if e["kind"] == "unschedulable"]
    assert len(events) == 1 and why in events[0]["message"]
    assert "dockyard_pending_instances 2.0" in cluster.api.get("/metrics").text
    assert not cluster.containers("huge", running_only=False)

    # the reason goes away once the request fits
    r = cluster.put("huge", replicas=2, resources={"memory": "128Mi"}, placement={"constraints": ["zone!=c"]})
    assert r.status_code == 200, r.text
    wait_spread(cluster, "huge", {"a": 1, "b": 1})
    assert cluster.wait_ready("huge", 2)["message"] == ""


def test_lost_node_is_replaced_and_fenced_when_it_returns(cluster):
    a, b, c = start_nodes(cluster)
    cluster.put("db", replicas=6)
    wait_spread(cluster, "db", {"a": 2, "b": 2, "c": 2})
    cluster.wait_ready("db", 6)
    stale = {x.id for x in cluster.containers("db", node=a)}

    cluster.kill_agent("a")  # the host is gone (its containers keep running on the engine)
    wait_for(lambda: cluster.node_status(a) == "down", TTL + 10, what="node a down")
    wait_for(lambda: Counter(x.labels["dockyard.node"] for x in cluster.containers("db")) ==
             Counter({a: 2, b: 3, c: 3}), 30, what="replacements on b and c")
    cluster.wait_ready("db", 6)
    assert {i["node"] for i in cluster.instances("db")} == {b, c}
    kinds = [e["kind"] for e in cluster.events(node=a)]
    assert "node_down" in kinds

    # the host comes back: its agent removes the containers of the re-placed instances
    cluster.restart_agent("a")
    wait_for(lambda: cluster.node_status(a) == "ready", 20, what="node a ready again")
    wait_spread(cluster, "db", {"b": 3, "c": 3})
    assert not stale & {x.id for x in cluster.containers("db", running_only=False)}
    assert len(cluster.containers("db", running_only=False)) == 6
    wait_for(lambda: len(cluster.api.get("/v1/instances", params={"all": True, "service": "db"}).json()) == 6,
             15, what="lost instance records forgotten")


def test_partitioned_agent_stops_replaced_containers_without_a_restart(cluster):
    a, b, c = start_nodes(cluster)
    cluster.put("q", replicas=3)
    wait_spread(cluster, "q", {"a": 1, "b": 1, "c": 1})
    proc = cluster.agents[a].p
    proc.send_signal(signal.SIGSTOP)  # a partition: the agent lives on, but the server hears nothing
    try:
        wait_for(lambda: cluster.node_status(a) == "down", TTL + 10, what="node a down")
        wait_for(lambda: len([x for x in cluster.containers("q") if x.labels["dockyard.node"] != a]) == 3, 30,
                 what="replacement placed")
    finally:
        proc.send_signal(signal.SIGCONT)
    wait_for(lambda: cluster.node_status(a) == "ready", 20, what="node a back")
    wait_spread(cluster, "q", {"b": 2, "c": 1})  # spread breaks the b/c tie by name
    assert sum(per_node(cluster, "q", running_only=False).values()) == 3


def test_drain_moves_instances_without_dropping_below_replicas_minus_one(cluster):
    a, b, c = start_nodes(cluster)
    replicas = 6
    cluster.put("api", replicas=replicas)
    wait_spread(cluster, "api", {"a": 2, "b": 2, "c": 2})
    cluster.wait_ready("api", replicas)

    low, stop = [replicas], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            low[0] = min(low[0], len(cluster.containers("api")))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = cluster.api.post(f"/v1/nodes/{a}/drain")
        assert r.status_code == 200 and r.json()["availability"] == "drained"
        # still ready while containers are moving: a drained node is not yet an empty one
        wait_spread(cluster, "api", {"b": 3, "c": 3})
        cluster.wait_ready("api", replicas)
    finally:
        stop.set()
        sampler.join()
    print(f"fewest running containers during the drain: {low[0]} of {replicas}")
    assert low[0] >= replicas - 1, f"only {low[0]} containers ran at some point during the drain"
    assert cluster.api.get(f"/v1/nodes/{a}").json()["instances"] == 0
    kinds = [e["kind"] for e in cluster.events(node=a)]
    assert "node_drained" in kinds and "node_drain_complete" in kinds
    assert kinds.count("instance_drained") == 2

    # new instances avoid the drained node; an active node cannot be removed, the drained one can
    cluster.api.post("/v1/services/api/scale", json={"replicas": 8})
    wait_spread(cluster, "api", {"b": 4, "c": 4})
    assert cluster.api.delete(f"/v1/nodes/{b}").status_code == 409
    cluster.kill_agent("a")  # first stop the host's agent, or it joins again as a new node
    assert cluster.api.delete(f"/v1/nodes/{a}").status_code == 200
    assert cluster.api.get(f"/v1/nodes/{a}").status_code == 404


def test_paused_node_keeps_its_instances_but_takes_no_new_ones(cluster):
    a, b, c = start_nodes(cluster)
    cluster.put("w", replicas=3)
    wait_spread(cluster, "w", {"a": 1, "b": 1, "c": 1})
    assert cluster.api.post(f"/v1/nodes/{a}/pause").json()["availability"] == "paused"
    cluster.api.post("/v1/services/w/scale", json={"replicas": 5})
    wait_spread(cluster, "w", {"a": 1, "b": 2, "c": 2})
    assert cluster.api.post(f"/v1/nodes/{a}/activate").json()["availability"] == "active"
    cluster.api.post("/v1/services/w/scale", json={"replicas": 6})
    wait_spread(cluster, "w", {"a": 2, "b": 2, "c": 2})


def test_agent_without_server_keeps_its_containers_running(cluster):
    start_nodes(cluster, shorts="a")
    cluster.put("keep", replicas=2)
    before = sorted(x.id for x in cluster.wait_running("keep", 2))
    cluster.wait_ready("keep", 2)
    cluster.stop_server(signal.SIGKILL)
    time.sleep(TTL + 2)  # longer than the node TTL: the agent must not tear anything down
    assert sorted(x.id for x in cluster.containers("keep")) == before
    assert cluster.agents[cluster.node("a")].alive
    # and it still restarts a crashed container from its last assignments
    cluster.docker.containers.get(before[0]).kill()
    wait_for(lambda: cluster.docker.containers.get(before[0]).status == "running", 20, what="restarted offline")

    cluster.start_server()
    wait_for(lambda: cluster.service("keep")["status"]["ready"] == 2, 20, what="ready after server restart")
    time.sleep(1)
    assert sorted(x.id for x in cluster.containers("keep", running_only=False)) == before
