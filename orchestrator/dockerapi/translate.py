"""Engine API bodies <-> Dockyard specs and views. Pure: plain data in, plain data out.

`create_spec` turns a `POST /containers/create` body (what `docker run` sends) into the
body of a one-replica service, or refuses what Dockyard cannot honour, naming the docker
flag. `summary` and `inspect` render a container the way the Engine API does, from what the
database knows (the node's name in front, as classic Swarm did: `node-1/web`).
"""
from __future__ import annotations

import datetime
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec import DNS_LABEL

API_VERSION = "1.41"  # Docker 20.10's: the CLI and SDK negotiate down to it
MIN_API_VERSION = "1.24"
SOURCE = "docker-api"

# Engine API create fields Dockyard cannot honour, with the docker flag that sets them.
_REFUSED_CONFIG = {
    "User": "--user", "WorkingDir": "--workdir", "Hostname": "--hostname", "Domainname": "--domainname",
    "Volumes": "-v with an anonymous volume", "Healthcheck": "--health-cmd (use a Dockyard health check)",
    "MacAddress": "--mac-address", "StopSignal": "--stop-signal", "Shell": "SHELL",
}
_REFUSED_HOST = {
    "AutoRemove": "--rm", "VolumesFrom": "--volumes-from", "Links": "--link", "Devices": "--device",
    "CapDrop": "--cap-drop", "Dns": "--dns", "DnsSearch": "--dns-search", "ExtraHosts": "--add-host",
    "Mounts": "--mount (use -v HOST:CTR)", "Tmpfs": "--tmpfs", "IpcMode": "--ipc", "UTSMode": "--uts",
    "UsernsMode": "--userns", "ShmSize": "--shm-size", "ReadonlyRootfs": "--read-only", "Sysctls": "--sysctl",
    "SecurityOpt": "--security-opt", "CpusetCpus": "--cpuset-cpus", "CpuShares": "--cpu-shares",
    "MemoryReservation": "--memory-reservation", "PidsLimit": "--pids-limit", "Ulimits": "--ulimit",
    "GroupAdd": "--group-add", "OomKillDisable": "--oom-kill-disable", "Runtime": "--runtime",
    "PublishAllPorts": "-P (publish each port with -p)", "VolumeDriver": "--volume-driver",
}
_EMPTY = (None, "", 0, False, [], {}, "default", "private", "host-default")
_WORDS_A = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nifty", "quiet", "sharp", "swift", "witty")
_WORDS_B = ("albattani", "bohr", "curie", "darwin", "euler", "fermi", "galois", "hopper", "lovelace", "noether",
            "pascal", "turing")


class Refused(ValueError):
    """The request asks for something Dockyard does not do; the message says what and why."""


@dataclass
class CreatePlan:
    name: str
    body: dict[str, Any]  # a ServiceApply body
    affinities: list[tuple[str, str]] = field(default_factory=list)  # (op, container name)
    warnings: list[str] = field(default_factory=list)


def random_name() -> str:
    return f"{secrets.choice(_WORDS_A)}-{secrets.choice(_WORDS_B)}-{secrets.token_hex(2)}"


def check_name(name: str) -> str:
    n = name.lstrip("/")
    if not DNS_LABEL.fullmatch(n):
        raise Refused(f"invalid container name {name!r}: Dockyard names containers like its services, a DNS label "
                      "(1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)")
    return n


def _restart(policy: dict | None) -> dict:
    name = (policy or {}).get("Name") or "no"
    if name == "no":
        return {"policy": "never"}
    if name in ("always", "unless-stopped"):
        return {"policy": "always"}
    if name == "on-failure":
        if (policy or {}).get("MaximumRetryCount"):
            raise Refused("--restart on-failure:N is not supported by Dockyard: it retries with back-off "
                          "without a count; use --restart on-failure")
        return {"policy": "on-failure"}
    raise Refused(f"unknown restart policy {name!r}: use no, always, unless-stopped or on-failure")


def _ports(bindings: dict | None, exposed: dict | None) -> list[dict]:
    out = []
    for key, binds in (bindings or {}).items():
        cport, _, proto = str(key).partition("/")
        if not cport.isdigit():
            raise Refused(f"invalid port {key!r}")
        for b in binds or [{}]:
            host_port = (b or {}).get("HostPort") or ""
            if (b or {}).get("HostIp") not in (None, "", "0.0.0.0", "::"):
                raise Refused("-p with a host address is not supported by Dockyard: ports publish on every address")
            if "-" in host_port or (host_port and not host_port.isdigit()):
                raise Refused(f"-p {host_port}:{cport}: port ranges are not supported by Dockyard")
            out.append({"container_port": int(cport), "host_port": int(host_port) if host_port else None,
                        "protocol": proto or "tcp"})
    return out


_SWARM_ENV = re.compile(r"^(constraint|affinity):(.+?)(==|!=)(.+)$")


def _hints(env: list[str]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(plain env, node constraints, container affinities) from classic Swarm's -e hints."""
    plain, constraints, affinities = [], [], []
    for e in env:
        m = _SWARM_ENV.match(e)
        if m is None:
            if e.startswith(("constraint:", "affinity:")):
                raise Refused(f"cannot read the scheduling hint {e!r}: write constraint:KEY==VALUE, "
                              "constraint:KEY!=VALUE, affinity:container==NAME or affinity:container!=NAME")
            plain.append(e)
            continue
        kind, key, op, value = m.groups()
        value = value.lstrip("~")  # Swarm's soft '~' preference is taken as a hard rule
        if kind == "constraint":
            constraints.append(f"{'node.name' if key == 'node' else key}{op}{value}")
        elif key == "container":
            affinities.append((op, value.lstrip("/")))
        else:
            raise Refused(f"affinity:{key} is not supported by Dockyard: only affinity:container==/!=NAME")
    return plain, constraints, affinities


def create_spec(name: str | None, body: dict[str, Any]) -> CreatePlan:
    """A one-replica service body from an Engine API container-create body."""
    if not isinstance(body, dict):
        raise Refused("the body must be a JSON object")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise Refused("HostConfig must be a JSON object")
    for k, flag in _REFUSED_CONFIG.items():
        if body.get(k) not in _EMPTY:
            raise Refused(f"{flag} is not supported by Dockyard")
    for k, flag in _REFUSED_HOST.items():
        if host.get(k) not in _EMPTY and not (k == "ShmSize" and host.get(k) == 67108864):
            raise Refused(f"{flag} is not supported by Dockyard")
    if body.get("OpenStdin") or body.get("AttachStdin"):
        raise Refused("-i (an attached stdin) is not supported by Dockyard: use docker run -d")
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise Refused("an image is required")
    env = body.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise Refused("Env must be a list of KEY=VALUE strings")
    plain, constraints, affinities = _hints(env)
    spec: dict[str, Any] = {
        "image": image, "replicas": 1, "restart": _restart(host.get("RestartPolicy")),
        "env": dict(e.split("=", 1) if "=" in e else (e, "") for e in plain),
        "labels": dict(body.get("Labels") or {}),
        "ports": _ports(host.get("PortBindings"), body.get("ExposedPorts")),
        "placement": {"constraints": constraints},
        "change_cause": "docker run",
    }
    if body.get("Cmd"):
        spec["command"] = body["Cmd"]
    if body.get("Entrypoint"):
        spec["entrypoint"] = body["Entrypoint"] if isinstance(body["Entrypoint"], list) else [body["Entrypoint"]]
    resources: dict[str, Any] = {}
    if host.get("NanoCpus"):
        resources["cpus"] = host["NanoCpus"] / 1e9
    elif host.get("CpuQuota") and host.get("CpuPeriod"):
        resources["cpus"] = host["CpuQuota"] / host["CpuPeriod"]
    if host.get("Memory"):
        resources["memory"] = host["Memory"]
    if resources:
        spec["resources"] = resources
    if body.get("StopTimeout") is not None:
        spec["stop_timeout"] = body["StopTimeout"]
    if host.get("Init"):
        spec["init"] = True
    if host.get("Privileged"):
        spec["privileged"] = True
    if host.get("CapAdd"):
        spec["cap_add"] = host["CapAdd"]
    mode = host.get("NetworkMode") or "default"
    if mode not in ("default", "bridge", "host", "none"):
        raise Refused(f"--network {mode} is not supported by Dockyard: only bridge, host or none")
    if mode != "default":
        spec["network_mode"] = mode
    if host.get("PidMode"):
        spec["pid_mode"] = host["PidMode"]
    volumes = []
    for b in host.get("Binds") or []:
        parts = str(b).split(":")
        if len(parts) not in (2, 3) or not parts[0].startswith("/"):
            raise Refused(f"-v {b}: only bind mounts of host paths (-v /host/path:/path[:ro]) are supported by Dockyard")
        volumes.append({"source": parts[0], "target": parts[1], "read_only": len(parts) == 3 and "ro" in parts[2].split(",")})
    if volumes:
        spec["volumes"] = volumes
    return CreatePlan(check_name(name) if name else random_name(), spec, affinities)


def affinity_constraints(affinities: list[tuple[str, str]], nodes_of: dict[str, set[str]]) -> list[str]:
    """Node constraints for `affinity:container==/!=NAME`, given the nodes each named container
    runs on (decided once, at creation, like classic Swarm)."""
    out = []
    for op, target in affinities:
        nodes = nodes_of.get(target)
        if not nodes:
            if op == "==":
                raise Refused(f"affinity:container=={target}: no running container is named {target!r}")
            continue
        if op == "==":
            out.append(f"node.name in ({', '.join(sorted(nodes))})")
        else:
            out.extend(f"node.name!={n}" for n in sorted(nodes))
    return out


# --- views -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One container as the database knows it."""

    container_id: str  # the engine's id (or, for a stopped docker-api container, its last one)
    name: str  # the service's key
    display: str  # what `docker ps` shows after the node: name, or name.slot for a /v1 service's
    node: str | None
    node_address: str
    image: str
    command: list[str]
    labels: dict[str, str]
    state: str  # the instance's state, or 'exited' for a stopped docker-api container
    exit_code: int | None
    host_ports: list[dict]
    ports: list[dict]  # the spec's
    created: float
    updated: float
    source: str
    instance: str | None
    restart: str
    env: dict[str, str]


def docker_state(state: str) -> str:
    return {"running": "running", "starting": "running", "pending": "created", "assigned": "created",
            "created": "created", "exited": "exited", "failed": "exited", "lost": "dead",
            "stopped": "exited", "removing": "removing", "restarting": "restarting"}.get(state, "exited")


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return "Less than a second" if s < 1 else "1 second" if s == 1 else f"{s} seconds"
    if s < 3600:
        return f"{s // 60} minutes" if s >= 120 else "About a minute"
    return f"{s // 3600} hours" if s >= 7200 else "About an hour"


def status_text(r: Row, now: float) -> str:
    st = docker_state(r.state)
    if st == "running":
        return f"Up {_ago(now - r.created)}"
    if st == "exited":
        return f"Exited ({r.exit_code or 0}) {_ago(now - r.updated)} ago"
    return st.capitalize()


def full_name(r: Row) -> str:
    return f"/{r.node or 'unscheduled'}/{r.display}"


def _port_list(r: Row) -> list[dict]:
    if r.host_ports:
        return [{"IP": "0.0.0.0", "PrivatePort": p["container_port"], "PublicPort": p["host_port"],
                 "Type": p.get("protocol", "tcp")} for p in r.host_ports]
    return [{"PrivatePort": p["container_port"], "Type": p.get("protocol", "tcp")} for p in r.ports]


def summary(r: Row, now: float) -> dict[str, Any]:
    """A `GET /containers/json` entry."""
    return {
        "Id": r.container_id, "Names": [full_name(r)], "Image": r.image, "ImageID": "",
        "Command": " ".join(r.command), "Created": int(r.created), "Ports": _port_list(r),
        "Labels": r.labels, "State": docker_state(r.state), "Status": status_text(r, now),
        "HostConfig": {"NetworkMode": "default"}, "NetworkSettings": {"Networks": {}}, "Mounts": [],
    }


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def node_view(name: str | None, address: str, cpus: float = 0.0, memory: int = 0,
              labels: dict | None = None) -> dict[str, Any]:
    """Classic Swarm's `Node` field of an inspected container."""
    return {"ID": name or "", "Name": name or "", "Addr": address, "IP": address.rsplit(":", 1)[0] if address else "",
            "Cpus": int(cpus), "Memory": memory, "Labels": labels or {}}


def inspect(r: Row, node: dict[str, Any], engine: dict[str, Any] | None) -> dict[str, Any]:
    """`GET /containers/{id}/json`: the engine's own answer when the node could give it, else
    one built from the database; either way with the cluster's name and the `Node` field."""
    st = docker_state(r.state)
    if engine:
        out = dict(engine)
    else:
        ports = {f"{p['container_port']}/{p.get('protocol', 'tcp')}":
                 [{"HostIp": "0.0.0.0", "HostPort": str(p["host_port"])}] for p in r.host_ports}
        out = {
            "Id": r.container_id, "Created": _iso(r.created), "Path": r.command[0] if r.command else "",
            "Args": r.command[1:], "Image": "",
            "State": {"Status": st, "Running": st == "running", "Paused": False, "Restarting": st == "restarting",
                      "OOMKilled": False, "Dead": st == "dead", "Pid": 0, "ExitCode": r.exit_code or 0,
                      "Error": "", "StartedAt": _iso(r.created), "FinishedAt": _iso(r.updated) if st != "running" else
                      "0001-01-01T00:00:00Z"},
            "RestartCount": 0, "Driver": "", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
            "HostConfig": {"RestartPolicy": {"Name": {"never": "no"}.get(r.restart, r.restart), "MaximumRetryCount": 0},
                           "NetworkMode": "default"},
            "Config": {"Image": r.image, "Cmd": r.command, "Env": [f"{k}={v}" for k, v in r.env.items()],
                       "Labels": r.labels, "Tty": False, "AttachStdout": False, "AttachStderr": False,
                       "OpenStdin": False},
            "NetworkSettings": {"Ports": ports, "Networks": {}}, "Mounts": [],
        }
    out["Name"] = full_name(r)
    out["Node"] = node
    return out


def parse_filters(raw: Any) -> dict[str, list[str]]:
    """Engine API filters: {"label": ["a=b"]} or the legacy {"label": {"a=b": true}}."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise Refused("filters must be a JSON object")
    out = {}
    for k, v in raw.items():
        out[k] = list(v.keys()) if isinstance(v, dict) else [str(x) for x in v] if isinstance(v, list) else [str(v)]
    return out


_FILTERS = ("label", "name", "id", "status", "ancestor", "node")


def matches(r: Row, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if key not in _FILTERS:
            raise Refused(f"the filter {key!r} is not supported by Dockyard: use {', '.join(_FILTERS)}")
        if key == "label":
            for w in wanted:
                k, sep, v = w.partition("=")
                if k not in r.labels or (sep and r.labels[k] != v):
                    return False
        elif key == "name" and not any(w.lstrip("/") in full_name(r) for w in wanted):
            return False
        elif key == "id" and not any(r.container_id.startswith(w) for w in wanted):
            return False
        elif key == "status" and docker_state(r.state) not in wanted:
            return False
        elif key == "ancestor" and r.image not in wanted and not any(r.image.split(":")[0] == w for w in wanted):
            return False
        elif key == "node" and r.node not in wanted:
            return False
    return True


def resolve(rows: list[Row], ref: str) -> Row | None:
    """The container a CLI argument names: a full or unambiguous short id, `node/name`, or a name
    (the service's, or name.slot); an ambiguous one raises Refused."""
    ref = ref.lstrip("/")
    for r in rows:
        if r.container_id == ref or f"{r.node}/{r.display}" == ref or r.display == ref:
            return r
    by_name = [r for r in rows if r.source == SOURCE and r.name == ref]
    if len(by_name) == 1:
        return by_name[0]
    if len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
        hits = {r.container_id: r for r in rows if r.container_id.startswith(ref)}
        if len(hits) > 1:
            raise Refused(f"multiple containers found with provided prefix: {ref}")
        if hits:
            return next(iter(hits.values()))
    return None
