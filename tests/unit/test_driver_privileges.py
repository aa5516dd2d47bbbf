"""The Docker driver passes a spec's host privileges through to Docker's HostConfig (fake engine API)."""
from __future__ import annotations

from docker.types import HostConfig

from agent.driver import DockerDriver
from agent.types import Assignment


class FakeAPI:
    def __init__(self) -> None:
        self.created: dict = {}

    def inspect_image(self, image):  # type: ignore[no-untyped-def]
        return {"Id": image}

    def create_host_config(self, **kw):  # type: ignore[no-untyped-def]
        return HostConfig(version="1.41", **kw)

    def create_container(self, image, **kw):  # type: ignore[no-untyped-def]
        self.created = {"image": image, **kw}
        return {"Id": "c0ffee"}

    def start(self, cid):  # type: ignore[no-untyped-def]
        pass

    def inspect_container(self, cid):  # type: ignore[no-untyped-def]
        return {"Id": cid, "Config": {"Labels": self.created["labels"]}, "State": {"Status": "running"},
                "NetworkSettings": {"Ports": {}}}


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeAPI()


def _run(spec: dict) -> dict:
    client = FakeClient()
    DockerDriver("n1", client=client).run(Assignment("i1", "svc", 1, 1, {"image": "img", **spec}))
    return client.api.created


def test_host_privileges_reach_the_host_config():
    made = _run({"privileged": True, "pid_mode": "host", "cap_add": ["NET_ADMIN", "SYS_TIME"],
                 "volumes": [{"source": "/srv/data", "target": "/data", "read_only": True},
                             {"source": "/srv/logs", "target": "/logs", "read_only": False}]})
    hc = made["host_config"]
    assert hc["Privileged"] is True and hc["PidMode"] == "host"
    assert hc["CapAdd"] == ["NET_ADMIN", "SYS_TIME"]
    assert sorted(hc["Binds"]) == ["/srv/data:/data:ro", "/srv/logs:/logs:rw"]


def test_host_network_publishes_no_ports():
    made = _run({"network_mode": "host", "ports": [{"container_port": 80, "host_port": 8080}]})
    assert made["host_config"]["NetworkMode"] == "host"
    assert not made["host_config"].get("PortBindings") and made["ports"] is None


def test_a_plain_spec_asks_for_nothing():
    hc = _run({"ports": [{"container_port": 80}]})["host_config"]
    assert not hc.get("Privileged") and "PidMode" not in hc and not hc.get("CapAdd") and not hc.get("Binds")
    assert hc["NetworkMode"] == "default" and hc["PortBindings"]
