"""The Docker Engine API's pure mapping: create bodies to specs, rows to Engine API views."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from orchestrator.dockerapi import translate
from orchestrator.dockerapi.translate import Refused, Row
from orchestrator.spec import ServiceApply

# what `docker run -d --name web -e A=1 -p 8080:80 --cpus 0.5 --memory 64m --label team=x
#  --restart on-failure -e constraint:zone==b busybox sh -c 'sleep 1'` sends (CLI 28, trimmed)
RUN = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "ExposedPorts": {"80/tcp": {}}, "Tty": False, "OpenStdin": False, "StdinOnce": False,
    "Env": ["A=1", "constraint:zone==b", "EMPTY="], "Cmd": ["sh", "-c", "sleep 1"], "Image": "busybox",
    "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {"team": "x"},
    "HostConfig": {"Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                   "NetworkMode": "default", "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 0}, "AutoRemove": False,
                   "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None,
                   "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
                   "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
                   "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
                   "UTSMode": "", "UsernsMode": "", "ShmSize": 0, "Isolation": "", "CpuShares": 0,
                   "Memory": 67108864, "NanoCpus": 500000000, "CgroupParent": "", "BlkioWeight": 0,
                   "CpuPeriod": 0, "CpuQuota": 0, "CpusetCpus": "", "Devices": [], "MemoryReservation": 0,
                   "MemorySwap": 0, "OomKillDisable": False, "PidsLimit": None, "Ulimits": [], "Mounts": None},
    "NetworkingConfig": {"EndpointsConfig": {}},
}


def test_docker_run_becomes_a_valid_one_replica_service() -> None:
    plan = translate.create_spec("web", RUN)
    assert plan.name == "web"
    body = ServiceApply.model_validate(plan.body)  # what store.create applies
    assert body.replicas == 1 and body.image == "busybox" and body.command == ["sh", "-c", "sleep 1"]
    assert body.env == {"A": "1", "EMPTY": ""}  # the hint is not passed to the container
    assert body.placement.constraints == ["zone==b"]
    assert [(p.container_port, p.host_port, p.protocol) for p in body.ports] == [(80, 8080, "tcp")]
    assert body.resources.cpus == 0.5 and body.resources.memory == 64 * 2**20
    assert body.labels == {"team": "x"} and body.restart.policy == "on-failure"


@pytest.mark.parametrize("policy,ours", [("no", "never"), ("", "never"), ("always", "always"),
                                         ("unless-stopped", "always"), ("on-failure", "on-failure")])
def test_restart_policies(policy: str, ours: str) -> None:
    body = {**RUN, "HostConfig": {**RUN["HostConfig"], "RestartPolicy": {"Name": policy}}}
    assert translate.create_spec(None, body).body["restart"] == {"policy": ours}


@pytest.mark.parametrize("change,flag", [
    ({"User": "nobody"}, "--user"), ({"WorkingDir": "/x"}, "--workdir"),
    ({"HostConfig": {"AutoRemove": True}}, "--rm"), ({"HostConfig": {"Links": ["a:b"]}}, "--link"),
    ({"OpenStdin": True}, "-i"), ({"HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}},
                                  "on-failure:N"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "1"}]}}}, "host address"),
    ({"HostConfig": {"NetworkMode": "mynet"}}, "--network mynet"), ({"Env": ["affinity:image==x"]}, "affinity:image"),
    ({"Env": ["constraint:zone"]}, "constraint:KEY==VALUE"), ({"HostConfig": {"Binds": ["vol:/data"]}}, "bind mounts"),
])
def test_what_dockyard_cannot_honour_is_refused_naming_the_flag(change: dict, flag: str) -> None:
    body = dict(RUN)
    for k, v in change.items():
        body[k] = {**RUN[k], **v} if isinstance(v, dict) and isinstance(RUN.get(k), dict) else v
    with pytest.raises(Refused, match=flag.replace("-", r"\-").replace(".", r"\.").replace("+", r"\+")):
        translate.create_spec("web", body)


@pytest.mark.parametrize("name", ["Web", "my_app", "-x", "a" * 64, "a.b"])
def test_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(Refused, match="DNS label"):
        translate.create_spec(name, RUN)


@given(st.integers(min_value=0, max_value=10))
def test_generated_names_are_valid_service_names(_: int) -> None:
    plan = translate.create_spec(None, RUN)
    ServiceApply.model_validate(plan.body)
    assert translate.check_name(plan.name) == plan.name


def test_affinities_become_node_constraints() -> None:
    nodes = {"web": {"n2", "n1"}}
    assert translate.affinity_constraints([("==", "web")], nodes) == ["node.name in (n1, n2)"]
    assert translate.affinity_constraints([("!=", "web")], nodes) == ["node.name!=n1", "node.name!=n2"]
    assert translate.affinity_constraints([("!=", "db")], nodes) == []
    with pytest.raises(Refused, match="no running container is named 'db'"):
        translate.affinity_constraints([("==", "db")], nodes)


def _row(**kw) -> Row:  # type: ignore[no-untyped-def]
    base = dict(container_id="a" * 64, name="web", display="web", node="n1", node_address="10.0.0.1",
                image="busybox", command=["sh"], labels={"team": "x"}, state="running", exit_code=None,
                host_ports=[{"container_port": 80, "host_port": 8080, "protocol": "tcp"}], ports=[],
                created=1000.0, updated=1000.0, source="docker-api", instance="i1", restart="never", env={"A": "1"})
    return Row(**{**base, **kw})


def test_summary_and_inspect_carry_the_node() -> None:
    r = _row()
    s = translate.summary(r, 1005.0)
    assert s["Names"] == ["/n1/web"] and s["State"] == "running" and s["Status"] == "Up 5 seconds"
    assert s["Ports"] == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]
    node = translate.node_view("n1", "10.0.0.1", 2, 2**30, {"zone": "a"})
    built = translate.inspect(r, node, None)
    assert built["Node"]["Name"] == "n1" and built["Name"] == "/n1/web" and built["Config"]["Tty"] is False
    assert built["HostConfig"]["RestartPolicy"]["Name"] == "no"
    engine = translate.inspect(r, node, {"Id": r.container_id, "Name": "/dy-web-1", "Config": {"Tty": False}})
    assert engine["Name"] == "/n1/web" and engine["Node"] == node


def test_exited_status_reads_like_docker() -> None:
    r = _row(state="exited", exit_code=3, updated=1000.0)
    assert translate.status_text(r, 1001.0) == "Exited (3) 1 second ago"
    assert translate.status_text(r, 1000.0 + 7200) == "Exited (3) 2 hours ago"


def test_filters() -> None:
    r = _row()
    assert translate.matches(r, translate.parse_filters({"label": ["team=x"]}))
    assert translate.matches(r, translate.parse_filters({"label": {"team": True}}))
    assert not translate.matches(r, {"label": ["team=y"]})
    assert translate.matches(r, {"name": ["n1/web"]}) and not translate.matches(r, {"name": ["db"]})
    assert translate.matches(r, {"status": ["running"]}) and not translate.matches(r, {"status": ["exited"]})
    with pytest.raises(Refused, match="'volume'"):
        translate.matches(r, {"volume": ["x"]})


def test_resolve_by_id_prefix_name_and_node_name() -> None:
    a = _row(container_id="abcd" + "0" * 60)
    b = _row(container_id="abce" + "0" * 60, name="api", display="api.1", node="n2", source="api")
    rows = [a, b]
    assert translate.resolve(rows, "web") is a and translate.resolve(rows, "/n1/web") is a
    assert translate.resolve(rows, "n2/api.1") is b and translate.resolve(rows, "abce") is b
    assert translate.resolve(rows, a.container_id) is a and translate.resolve(rows, "nothing") is None
    assert translate.resolve(rows, "abc") is None  # under 4 characters: not taken as an id prefix
    with pytest.raises(Refused, match="multiple containers"):
        translate.resolve([a, _row(container_id="abcd" + "1" * 60, name="x", display="x")], "abcd")
