"""Faults on the real engine: kill -9 the server or the agent mid-work, restart dockerd under a
running cluster, take the server away from a working agent. After each: what should run runs,
once (no duplicate containers), and nothing runs that nobody owns."""
from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import docker
import pytest

from tests.harness import IMAGE, Cluster, wait_for

pytestmark = pytest.mark.integration


def assert_one_container_per_instance(cluster: Cluster, service: str, replicas: int) -> list:
    """Exactly `replicas` containers (all states), one per live instance, one per slot."""
    cs = cluster.containers(service, running_only=False)
    instances = cluster.instances(service)
    per_instance = Counter(c.labels["dockyard.instance"] for c in cs)
    assert len(cs) == replicas and all(c.status == "running" for c in cs), [(c.name, c.status) for c in cs]
    assert max(per_instance.values(), default=0) == 1, f"duplicate containers: {per_instance}"
    assert set(per_instance) == {i["id"] for i in instances}, "containers and instances differ (orphans?)"
    assert sorted(i["slot"] for i in instances) == list(range(1, replicas + 1))  # slots count from 1
    assert sorted(int(c.labels["dockyard.slot"]) for c in cs) == list(range(1, replicas + 1))
    return cs


def steady(cluster: Cluster, service: str, replicas: int, timeout: float = 180) -> list:
    cluster.wait_running(service, replicas, timeout=timeout)
    cluster.wait_ready(service, replicas, timeout=60)
    time.sleep(2)  # a few more loop and agent passes: nothing extra may appear
    return assert_one_container_per_instance(cluster, service, replicas)


def test_server_killed_while_scaling_0_to_30(cluster):
    cluster.start_agent("a")
    assert cluster.put("burst", replicas=0).status_code == 201
    r = cluster.api.post("/v1/services/burst/scale", json={"replicas": 30})
    assert r.status_code == 200 and r.json()["replicas"] == 30
    # kill -9 right after the 2xx: the scale is committed even if nothing was placed yet
    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    # and again while the agent is busy starting the containers
    wait_for(lambda: len(cluster.containers("burst", running_only=False)) >= 3, 90, what="containers starting")
    started = len(cluster.containers("burst", running_only=False))
    cluster.stop_server(signal.SIGKILL)
    assert started < 30, "the agent started everything before the kill: the test did not test a kill mid-scale"
    time.sleep(1)
    cluster.start_server()
    cs = steady(cluster, "burst", 30)
    assert cluster.service("burst")["replicas"] == 30
    # nothing else of ours runs on the engine
    assert {c.labels["dockyard.service"] for c in cluster.containers(running_only=False)} == {"burst"}
    ids = {c.id for c in cs}
    time.sleep(2)
    assert {c.id for c in cluster.containers("burst", running_only=False)} == ids  # stable: no churn


def test_agent_killed_while_starting_containers(cluster):
    node = cluster.start_agent("a", "--concurrency", "2")
    assert cluster.put("many", replicas=20).status_code == 201
    wait_for(lambda: len(cluster.containers("many", running_only=False)) >= 2, 60, what="containers starting")
    cluster.kill_agent("a", signal.SIGKILL)
    at_kill = len(cluster.containers("many", running_only=False))
    assert at_kill < 20, "the agent started everything before the kill: the test did not test a kill mid-start"
    labels = {"dockyard.node": node, "dockyard.service": "ghost", "dockyard.instance": "ghost0000orphan",
              "dockyard.revision": "1", "dockyard.slot": "0"}
    # an orphan on this node (its instance is unknown to the server) and a left-over created container
    orphan = cluster.docker.containers.run(IMAGE, ["sleep", "3600"], detach=True, init=True, labels=labels,
                                           name=f"dy-ghost-0-{cluster.prefix}")
    created = cluster.docker.containers.create(IMAGE, ["sleep", "3600"], labels={**labels, "dockyard.instance": "ghost1"},
                                               name=f"dy-ghost-1-{cluster.prefix}")
    # a container of another node: not this agent's to touch
    other = cluster.docker.containers.run(IMAGE, ["sleep", "3600"], detach=True, init=True,
                                          labels={**labels, "dockyard.node": cluster.node("other"),
                                                  "dockyard.instance": "otherinstance"},
                                          name=f"dy-other-0-{cluster.prefix}")
    cluster.restart_agent("a")
    steady(cluster, "many", 20)

    def gone(c) -> bool:  # type: ignore[no-untyped-def]
        try:
            c.reload()
            return False
        except docker.errors.NotFound:
            return True

    wait_for(lambda: gone(orphan) and gone(created), 30, what="orphan containers removed")
    other.reload()
    assert other.status == "running"
    ours = [c for c in cluster.containers(running_only=False, node=node)]
    assert {c.labels["dockyard.service"] for c in ours} == {"many"} and len(ours) == 20


# -- a private Docker engine, so the machine's own dockerd is never restarted ---------------
BRIDGE = "dytestbr0"
BRIDGE_CIDR = "10.213.7.1/24"


class PrivateEngine:
    def __init__(self, root: Path):
        self.root = root
        self.sock = f"unix://{root}/docker.sock"
        self.pidfile = root / "docker.pid"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.root / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.pidfile), "-H", self.sock, f"--bridge={BRIDGE}", "--iptables=false",
             "--ip6tables=false"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, 0.3, what="private dockerd up")

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"private dockerd exited ({self.proc.returncode}):\n{log}")
        try:
            client = docker.DockerClient(base_url=self.sock, timeout=10)
        except docker.errors.DockerException:
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_engine(engine):  # type: ignore[no-untyped-def]
    if shutil.which("dockerd") is None or shutil.which("ip") is None:
        pytest.fail("the dockerd-restart test needs dockerd and iproute2 (ip) on the machine")
    root = Path(tempfile.mkdtemp(prefix="dyeng-", dir="/tmp"))  # short: unix socket paths are limited
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)  # left over by a crashed run
    subprocess.run(["ip", "link", "add", "name", BRIDGE, "type", "bridge"], check=True)
    eng = PrivateEngine(root)
    try:
        subprocess.run(["ip", "addr", "add", BRIDGE_CIDR, "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
        eng.start()
        save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", eng.sock, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
        save.wait(60)
        yield eng
    finally:
        try:
            if eng.proc is None:
                eng.start()
            client = docker.DockerClient(base_url=eng.sock, timeout=30)
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        except Exception:
            pass
        eng.stop()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_dockerd_restart_under_a_running_cluster(private_engine, tmp_path, request):
    c = Cluster(tmp_path, env={"DOCKER_HOST": private_engine.sock})
    c.docker = docker.DockerClient(base_url=private_engine.sock, timeout=60)
    try:
        c.start_server()
        node = c.start_agent("a")
        assert c.put("web", replicas=3).status_code == 201
        before = steady(c, "web", 3, timeout=90)
        assert all(x.labels["dockyard.node"] == node for x in before)

        private_engine.restart()  # containers stop with the daemon (no live-restore)
        c.docker = docker.DockerClient(base_url=private_engine.sock, timeout=60)
        assert c.node_status(node) == "ready"  # the control plane never noticed
        after = steady(c, "web", 3, timeout=120)
        assert {x.labels["dockyard.instance"] for x in after} == {x.labels["dockyard.instance"] for x in before}
        # the events stream reconnected too: a crash is seen and healed
        victim = after[0]
        iid = victim.labels["dockyard.instance"]

        def restarts() -> int:
            return next(i["restart_count"] for i in c.instances("web") if i["id"] == iid)

        wait_for(lambda: {x.id for x in c.containers("web")} == {x.id for x in after}, 10, what="stable")
        count = restarts()
        victim.kill()
        wait_for(lambda: restarts() > count, 30, what="restart after the crash")
        steady(c, "web", 3, timeout=60)
        # and new work reaches the restarted engine
        assert c.api.post("/v1/services/web/scale", json={"replicas": 4}).status_code == 200
        steady(c, "web", 4, timeout=60)
    finally:
        c.close()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            for log in sorted(list(tmp_path.glob("*.log")) + [private_engine.root / "dockerd.log"]):
                print(f"===== {log.name}\n{log.read_text(errors='replace')[-6000:]}")


def test_agent_keeps_running_without_the_server_and_catches_up(cluster):
    node = cluster.start_agent("a")
    assert cluster.put("web", replicas=3).status_code == 201
    ids = {x.id for x in steady(cluster, "web", 3)}
    agent_pid = cluster.agents[node].p.pid

    cluster.stop_server(signal.SIGKILL)
    time.sleep(8)  # longer than the node TTL, many failed heartbeats
    assert cluster.agents[node].alive and cluster.agents[node].p.pid == agent_pid
    assert {x.id for x in cluster.containers("web")} == ids  # the data plane outlives the control plane
    # a crash while the server is away is still healed locally (same container, restarted)
    crashed = next(iter(cluster.containers("web")))
    crashed.kill()
    wait_for(lambda: {x.id for x in cluster.containers("web")} == ids, 30, what="local restart without a server")

    cluster.start_server()
    wait_for(lambda: cluster.node_status(node) == "ready", 30, what="node ready again")
    cluster.wait_ready("web", 3)
    assert {x.id for x in cluster.containers("web", running_only=False)} == ids  # nothing was replaced
    # it catches up: the restart it made while alone is reported, and new desired state arrives
    wait_for(lambda: sum(i["restart_count"] for i in cluster.instances("web")) >= 1, 30, what="restart reported")
    assert cluster.api.post("/v1/services/web/scale", json={"replicas": 5}).status_code == 200
    cs = steady(cluster, "web", 5)
    assert ids <= {x.id for x in cs}
    kinds = [e["kind"] for e in cluster.events(node=node)]
    assert "node_down" not in kinds, "the restarted server must not declare the node down"
