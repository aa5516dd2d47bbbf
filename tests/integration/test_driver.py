"""The Docker driver against the real local engine (image dockyard-test:latest, no registry).

Every test uses its own node name and removes only containers carrying that name.
"""
from __future__ import annotations

import queue
import socket
import threading
import time
import uuid

import docker
import pytest

from agent.driver import DockerDriver, DriverError
from agent.types import Assignment
from orchestrator.spec import ServiceSpec

pytestmark = pytest.mark.integration

IMAGE = "dockyard-test:latest"


@pytest.fixture(scope="module")
def client():
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except Exception as e:  # pragma: no cover - only without an engine
        pytest.fail(f"no Docker engine: {e}")
    try:
        c.images.get(IMAGE)
    except docker.errors.ImageNotFound:  # pragma: no cover
        pytest.fail(f"test image {IMAGE} missing: ./scripts/build-test-image.sh")
    return c


def _cleanup(client, node):
    for c in client.api.containers(all=True, filters={"label": f"dockyard.node={node}"}):
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def node(client):
    name = f"drv-test-{uuid.uuid4().hex[:8]}"
    yield name
    _cleanup(client, name)


@pytest.fixture
def driver(client, node):
    return DockerDriver(node, client=client)


def assignment(service="web", slot=0, revision=1, **spec) -> Assignment:
    spec.setdefault("image", IMAGE)
    spec.setdefault("init", True)
    spec.setdefault("stop_timeout", 1)
    return Assignment(instance_id=uuid.uuid4().hex[:12], service=service, slot=slot, revision=revision,
                      spec=ServiceSpec.model_validate(spec).model_dump())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_info_and_ping(driver):
    assert driver.ping()
    info = driver.info()
    assert info["cpus"] > 0 and info["memory"] > 0 and info["engine_version"]


def test_run_sets_everything(client, driver, node):
    a = assignment(command=["sleep", "300"], env={"GREETING": "hi there"}, labels={"team": "blue"},
                   resources={"cpus": 0.5, "memory": "64Mi"}, stop_timeout=3,
                   ports=[{"container_port": 8080}],
                   health={"type": "exec", "command": ["true"], "interval": 1, "retries": 2})
    obs = driver.run(a)
    assert obs.state == "running" and obs.instance_id == a.instance_id
    assert obs.service == "web" and obs.slot == 0 and obs.revision == 1
    assert obs.started_at and obs.finished_at is None and obs.exit_code is None

    c = client.api.inspect_container(obs.container_id)
    assert c["Name"] == f"/dy-web-0-{a.instance_id}"
    assert c["Config"]["Labels"] == {
        "team": "blue", "dockyard.instance": a.instance_id, "dockyard.service": "web",
        "dockyard.node": node, "dockyard.revision": "1", "dockyard.slot": "0",
        "dockyard.namespace": "default"}
    assert "GREETING=hi there" in c["Config"]["Env"]
    assert c["Config"]["Cmd"] == ["sleep", "300"]
    assert c["Config"]["StopTimeout"] == 3
    hc = c["HostConfig"]
    assert hc["Memory"] == 64 * 1024 * 1024
    assert hc["NanoCpus"] == 500_000_000
    assert hc["Init"] is True
    assert hc["RestartPolicy"]["Name"] in ("", "no")
    assert hc["LogConfig"]["Type"] == "json-file"
    assert c["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    assert c["Config"]["Healthcheck"]["Interval"] == 1_000_000_000

    # the dynamic host port is a real, bound port
    assert len(obs.host_ports) == 1
    hp = obs.host_ports[0]
    assert hp["container_port"] == 8080 and hp["protocol"] == "tcp" and hp["host_port"] > 0
    with socket.create_connection(("127.0.0.1", hp["host_port"]), timeout=2):
        pass

    listed = driver.list()
    assert [o.container_id for o in listed] == [obs.container_id]
    assert listed[0].state == "running" and listed[0].instance_id == a.instance_id
    assert listed[0].host_ports == obs.host_ports
    # the exec health check turns healthy, seen by both inspect and the cheap list
    wait_for(lambda: driver.inspect(obs.container_id).health == "healthy")
    wait_for(lambda: driver.list()[0].health == "healthy")


def test_fixed_host_port_conflict(client, driver):
    port = free_port()
    first = driver.run(assignment(ports=[{"container_port": 80, "host_port": port}]))
    assert first.host_ports == [{"container_port": 80, "host_port": port, "protocol": "tcp"}]

    second = assignment(slot=1, ports=[{"container_port": 80, "host_port": port}])
    with pytest.raises(DriverError) as e:
        driver.run(second)
    assert f"host port {port}/tcp is already in use" in str(e.value)
    # the failed container was removed: only the first one is left
    assert [o.container_id for o in driver.list()] == [first.container_id]
    assert client.api.containers(all=True, filters={"name": f"dy-web-1-{second.instance_id}"}) == []


def test_missing_image_with_pull_never(driver):
    with pytest.raises(DriverError, match="not present on this node and pull policy is 'never'"):
        driver.run(assignment(image="dockyard-nonexistent:1", pull="never"))
    assert driver.list() == []


def test_missing_image_pull_fails_clearly(driver):
    with pytest.raises(DriverError, match="image 'dockyard-nonexistent:1' not found: pull failed"):
        driver.run(assignment(image="dockyard-nonexistent:1", pull="if-not-present"))
    assert driver.list() == []


def test_pull_always_falls_back_to_local_image(driver):
    obs = driver.run(assignment(pull="always"))
    assert obs.state == "running"


def test_kill_then_start_in_place(client, driver):
    obs = driver.run(assignment())
    client.api.kill(obs.container_id)
    dead = wait_for(lambda: [o for o in driver.list() if o.state == "exited"])
    assert dead[0].container_id == obs.container_id and dead[0].exit_code == 137
    full = driver.inspect(obs.container_id)
    assert full.exit_code == 137 and full.finished_at and not full.oom_killed

    driver.start(obs.container_id)
    back = driver.inspect(obs.container_id)
    assert back.state == "running" and back.container_id == obs.container_id and back.exit_code is None
    assert [o.state for o in driver.list()] == ["running"]


def test_remove_is_idempotent(driver):
    obs = driver.run(assignment())
    driver.remove(obs.container_id, stop_timeout=1)
    assert driver.inspect(obs.container_id) is None
    assert driver.list() == []
    driver.remove(obs.container_id, stop_timeout=1)  # already gone: fine
    with pytest.raises(DriverError, match="no longer exists"):
        driver.start(obs.container_id)


def test_events_see_start_and_die(client, driver):
    stop = threading.Event()
    q: queue.Queue = queue.Queue()

    def pump():
        for ev in driver.events(stop):
            q.put(ev)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        obs = driver.run(assignment())

        def next_for(action, timeout=10.0):
            deadline = time.monotonic() + timeout
            while True:
                ev = q.get(timeout=max(0.01, deadline - time.monotonic()))
                if ev[0] == action and ev[1] == obs.container_id:
                    return ev

        assert next_for("start")[2] == obs.instance_id
        client.api.kill(obs.container_id)
        assert next_for("die") == ("die", obs.container_id, obs.instance_id)
    finally:
        stop.set()
        t.join(timeout=5)
    assert not t.is_alive(), "events() did not return after stop was set"


def test_events_reconnect_after_broken_stream(driver):
    """A failing events request (dockerd restarting) is retried, not fatal."""

    class FlakyApi:
        calls = 0

        def events(self, **kw):
            FlakyApi.calls += 1
            if FlakyApi.calls == 1:
                raise docker.errors.APIError("connection refused")
            ev = {"Action": "health_status: unhealthy", "timeNano": time.time_ns(),
                  "Actor": {"ID": "abc", "Attributes": {"dockyard.instance": "i1"}}}
            return _Stream([ev])

    class _Stream(list):
        def close(self):
            pass

    driver.api = FlakyApi()
    stop = threading.Event()
    gen = driver.events(stop)
    assert next(gen) == ("health_status", "abc", "i1")
    stop.set()
    assert list(gen) == []


def test_logs(driver):
    obs = driver.run(assignment(command=["sh", "-c", "echo hello; echo oops >&2; sleep 1; echo later; sleep 300"]))
    out = wait_for(lambda: b"".join(driver.logs(obs.container_id, tail="all", follow=False)))
    assert out.startswith(b"hello\n") or out.startswith(b"oops\n")
    assert b"hello\n" in out and b"oops\n" in out
    assert b"".join(driver.logs(obs.container_id, tail=1)) in (b"hello\n", b"oops\n", b"later\n")

    # follow keeps streaming what is printed later (read in a thread: bounded wait)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [q.put(c) for c in driver.logs(obs.container_id, "all", True)],
                     daemon=True).start()
    got = b""
    deadline = time.monotonic() + 10
    while b"later\n" not in got:
        got += q.get(timeout=max(0.01, deadline - time.monotonic()))
    with pytest.raises(DriverError, match="no longer exists"):
        driver.logs("0" * 64)


def test_list_ignores_other_nodes(client, driver, node):
    other = DockerDriver(f"{node}-other", client=client)
    try:
        mine = driver.run(assignment())
        theirs = other.run(assignment())
        assert [o.container_id for o in driver.list()] == [mine.container_id]
        assert [o.container_id for o in other.list()] == [theirs.container_id]
    finally:
        _cleanup(client, f"{node}-other")
