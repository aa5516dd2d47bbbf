"""The agent's Docker driver: translate one node's wishes into Docker API calls, nothing more.

This is the imperative shell around the local Docker engine. It makes no decisions (what
to start, when to restart, what to remove is the local reconcile's job); it only creates,
starts, inspects, lists, stops and removes containers labelled with this node's name, and
turns Docker's errors into `DriverError` messages a human can act on.
"""
from __future__ import annotations

import logging
import re
import struct
import threading
import time
from typing import Any, Iterator

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig

from agent.types import (
    LABEL_INSTANCE,
    LABEL_NAMESPACE,
    LABEL_NODE,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_SLOT,
    Assignment,
    Observed,
    service_parts,
)

log = logging.getLogger(__name__)

# Stops can take stop_timeout seconds and pulls can be slow: a short HTTP timeout would
# turn a slow but healthy engine into spurious errors.
CLIENT_TIMEOUT = 120
EVENT_WINDOW = 1.0  # seconds: how long one events request lasts, so `stop` is seen that fast
EVENT_ACTIONS = ["die", "start", "oom", "health_status", "destroy"]
_NEVER = "0001-01-01T00:00:00Z"  # Docker's zero time: "not started / not finished yet"
_EXITED = re.compile(r"^Exited \((-?\d+)\)")
GATEWAY_HOST = "dockyard-gateway"
# Seconds an image seen present is taken as present without asking the engine again: a
# converge of N containers of one image asked N times (a fifth of the agent's CPU per start).
# An image removed meanwhile fails the create with "not found", which forgets it: the retry
# asks (and pulls) again.
IMAGE_PRESENT_SECONDS = 30.0
_PORT_IN_USE = re.compile(r"port is already allocated|address already in use", re.I)
_PORT_IN_TEXT = re.compile(r":(\d+)(?: failed|: bind)")


class DriverError(Exception):
    """A Docker operation failed; the message says why in words a user understands."""


def _docker_text(e: Exception) -> str:
    return getattr(e, "explanation", None) or str(e)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _time(value: str | None) -> str | None:
    return None if not value or value.startswith("0001-01-01") else value


def _observed(cid: str, labels: dict[str, str] | None, state: str, **kw: Any) -> Observed:
    labels = labels or {}
    # A container carrying our node label but broken other labels still gets reported
    # (with placeholder values), so the reconcile sees it as unassigned and removes it.
    return Observed(
        instance_id=labels.get(LABEL_INSTANCE, ""),
        # the service key the server knows it by (agent/types.py service_parts, reversed)
        service=labels.get(LABEL_SERVICE, "") if labels.get(LABEL_NAMESPACE, "default") == "default"
        else f"{labels[LABEL_NAMESPACE]}/{labels.get(LABEL_SERVICE, '')}",
        revision=_int(labels.get(LABEL_REVISION), 0),
        slot=_int(labels.get(LABEL_SLOT), -1),
        container_id=cid,
        state=state,
        **kw,
    )


def _dedupe(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Docker reports one binding per address family (0.0.0.0 and ::); the agent wants one.
    seen, out = set(), []
    for p in ports:
        key = (p["container_port"], p["host_port"], p["protocol"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return sorted(out, key=lambda p: (p["container_port"], p["protocol"]))


def publishes_ports(spec: dict[str, Any]) -> bool:
    """Does a container of this spec publish ports (host ports the engine chooses)?"""
    return spec.get("network_mode") != "host" and bool(spec.get("ports") or spec.get("expose"))


class DockerDriver:
    """Drives the local engine for the containers of one node name."""

    def __init__(self, node: str, client: docker.DockerClient | None = None):
        self.node = node
        # the node's gateway port, when it runs one: containers reach it as dockyard-gateway
        # (Docker's host-gateway address) and are told so in DOCKYARD_GATEWAY
        self.gateway_port: int | None = None
        # from_env honours DOCKER_HOST / DOCKER_TLS_VERIFY; API version auto-negotiated,
        # so an older engine (20.10 speaks API 1.41) works with a newer SDK.
        # a connection each for the start pool, the list, the events stream and the probes:
        # the SDK's default pool of 10 makes busy agents open and drop connections
        self.client = client or docker.from_env(timeout=CLIENT_TIMEOUT, max_pool_size=32)
        self.api = self.client.api
        self._present: dict[str, float] = {}  # image -> when the engine last said it has it

    # --- engine ------------------------------------------------------------------------

    def info(self) -> dict:
        i = self.api.info()
        return {"cpus": float(i.get("NCPU") or 0), "memory": int(i.get("MemTotal") or 0),
                "engine_version": str(i.get("ServerVersion") or "")}

    def ping(self) -> bool:
        try:
            return bool(self.api.ping())
        except (DockerException, requests.RequestException):
            return False

    # --- observe -----------------------------------------------------------------------

    def list(self) -> list[Observed]:
        # One list call, no per-container inspect: the list response already has labels,
        # state, status text and published ports, and the agent lists on every pass.
        out = []
        for c in self.api.containers(all=True, filters={"label": f"{LABEL_NODE}={self.node}"}):
            state = c.get("State") or ""
            status = c.get("Status") or ""
            m = _EXITED.match(status)
            health = None
            for word in ("health: starting", "unhealthy", "healthy"):
                if f"({word})" in status:
                    health = word.removeprefix("health: ")
                    break
            ports = [{"container_port": p["PrivatePort"], "host_port": p["PublicPort"],
                      "protocol": p.get("Type", "tcp")}
                     for p in c.get("Ports") or [] if p.get("PublicPort")]
            out.append(_observed(c["Id"], c.get("Labels"), state,
                                 exit_code=int(m.group(1)) if m else None,
                                 host_ports=_dedupe(ports), health=health))
        return out

    def inspect(self, container_id: str) -> Observed | None:
        try:
            c = self.api.inspect_container(container_id)
        except NotFound:
            return None
        st = c.get("State") or {}
        ports = []
        for key, binds in ((c.get("NetworkSettings") or {}).get("Ports") or {}).items():
            cport, _, proto = key.partition("/")
            for b in binds or []:
                if b.get("HostPort"):
                    ports.append({"container_port": int(cport), "host_port": int(b["HostPort"]),
                                  "protocol": proto or "tcp"})
        status = st.get("Status") or ""
        return _observed(
            c["Id"], (c.get("Config") or {}).get("Labels"), status,
            # Docker reports ExitCode 0 for never-run containers; only exited ones have one.
            exit_code=st.get("ExitCode") if status in ("exited", "dead") else None,
            host_ports=_dedupe(ports),
            started_at=_time(st.get("StartedAt")),
            finished_at=_time(st.get("FinishedAt")),
            health=(st.get("Health") or {}).get("Status"),
            oom_killed=bool(st.get("OOMKilled")),
            error=st.get("Error") or None,
        )

    # --- act ---------------------------------------------------------------------------

    def _ensure_image(self, image: str, policy: str) -> None:
        def present() -> bool:
            if time.monotonic() - self._present.get(image, -IMAGE_PRESENT_SECONDS) < IMAGE_PRESENT_SECONDS:
                return True
            try:
                self.api.inspect_image(image)
            except ImageNotFound:
                return False
            self._present[image] = time.monotonic()
            return True

        if policy == "never":
            if not present():
                raise DriverError(f"image {image!r} is not present on this node and pull policy is 'never'")
            return
        if policy == "if-not-present" and present():
            return
        try:
            self._pull(image)
        except DriverError as e:
            # "always" means "refresh if you can": a registry outage must not stop a node
            # from (re)starting what it already has.
            if policy == "always" and present():
                log.warning("pull of %s failed, using the local image: %s", image, e)
                return
            raise DriverError(f"image {image!r} not found: pull failed: {e}") from None

    def _pull(self, image: str) -> None:
        repo, tag = docker.utils.parse_repository_tag(image)
        try:
            # Errors can arrive inside a 200 stream, so read it to the end and look.
            for msg in self.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if isinstance(msg, dict) and msg.get("error"):
                    raise DriverError(msg["error"])
        except (APIError, requests.RequestException) as e:
            raise DriverError(_docker_text(e)) from None

    def _start_error(self, e: Exception, spec: dict[str, Any] | None) -> DriverError:
        text = _docker_text(e)
        if _PORT_IN_USE.search(text):
            m = _PORT_IN_TEXT.search(text)
            port = m.group(1) if m else "?"
            proto = next((p.get("protocol", "tcp") for p in (spec or {}).get("ports") or []
                          if str(p.get("host_port")) == port), "tcp")
            return DriverError(f"host port {port}/{proto} is already in use on this node: {text}")
        return DriverError(f"cannot start container: {text}")

    def run(self, a: Assignment, observe: bool = True) -> Observed:
        """Create and start the container, and say what runs: with observe, as the engine's
        inspect shows it; without, as created (running, no host ports, an exec health check
        starting): one inspect per start adds up when starting hundreds, and only a container
        that publishes ports (`publishes_ports`) has something in it the agent cannot know."""
        spec = a.spec
        image = spec["image"]
        self._ensure_image(image, spec.get("pull") or "if-not-present")

        labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
        namespace, service = service_parts(a.service)
        labels.update({LABEL_INSTANCE: a.instance_id, LABEL_SERVICE: service, LABEL_NAMESPACE: namespace,
                       LABEL_NODE: self.node, LABEL_REVISION: str(a.revision), LABEL_SLOT: str(a.slot)})
        ports = list(spec.get("ports") or [])
        # an exposed port is published too (on a random host port): the gateways reach it there
        listed = {(p["container_port"], p.get("protocol") or "tcp") for p in ports}
        ports += [{"container_port": e["port"], "protocol": "tcp"} for e in spec.get("expose") or []
                  if (e["port"], "tcp") not in listed]
        # 0.0.0.0 only: with "" 20.10 also binds ::, and may pick different dynamic ports
        # for the two families, which would make "the" host port ambiguous.
        bindings = {f"{p['container_port']}/{p.get('protocol') or 'tcp'}": ("0.0.0.0", p.get("host_port"))
                    for p in ports}
        res = spec.get("resources") or {}
        mem = res.get("memory")
        # Host privileges (the server's policy admitted them): privileged, host namespaces,
        # capabilities, bind mounts. With the host's network, ports need no publishing.
        host_net = spec.get("network_mode") == "host"
        binds = {v["source"]: {"bind": v["target"], "mode": "ro" if v.get("read_only") else "rw"}
                 for v in spec.get("volumes") or []}
        host_config = self.api.create_host_config(
            port_bindings=None if host_net else (bindings or None),
            privileged=bool(spec.get("privileged")),
            network_mode=spec.get("network_mode") or None,
            pid_mode=spec.get("pid_mode") or None,
            cap_add=list(spec.get("cap_add") or []) or None,
            binds=binds or None,
            nano_cpus=int(res["cpus"] * 1e9) if res.get("cpus") else None,
            mem_limit=mem,
            memswap_limit=mem,  # the limit is the limit: no extra swap on top (as Kubernetes)
            init=bool(spec.get("init")),
            # json-file so logs() works whatever the daemon default; rotated so a chatty
            # service cannot fill the node's disk.
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
            extra_hosts={GATEWAY_HOST: "host-gateway"} if self.gateway_port and not host_net else None,
            # No restart policy on purpose: the agent restarts with its own back-off and
            # counts restarts; Docker restarting behind its back would hide crashes.
        )
        health = spec.get("health") or {}
        healthcheck = None
        if health.get("type") == "exec":
            ns = lambda s: int(float(s) * 1e9)  # noqa: E731
            healthcheck = {"test": ["CMD", *health["command"]], "interval": ns(health.get("interval", 2)),
                           "timeout": ns(health.get("timeout", 1)), "retries": int(health.get("retries", 3)),
                           "start_period": ns(health.get("start_period", 0))}
        # dy-web-0-<id> in default, dy-alice.web-0-<id> elsewhere (a name cannot hold '/')
        name = f"dy-{service if namespace == 'default' else namespace + '.' + service}-{a.slot}-{a.instance_id}"
        try:
            c = self.api.create_container(
                image, command=spec.get("command"), entrypoint=spec.get("entrypoint"),
                environment=self._environment(spec, host_net), labels=labels, name=name,
                ports=None if host_net else [(p["container_port"], p.get("protocol") or "tcp") for p in ports] or None,
                host_config=host_config, healthcheck=healthcheck,
                stop_timeout=spec.get("stop_timeout"),
            )
        except ImageNotFound as e:
            self._present.pop(image, None)
            raise DriverError(f"image {image!r} is not present on this node: {_docker_text(e)}") from None
        except APIError as e:
            if e.status_code == 409:
                raise DriverError(f"a container named {name!r} already exists: {_docker_text(e)}") from None
            raise DriverError(f"cannot create container {name!r}: {_docker_text(e)}") from None
        cid = c["Id"]
        try:
            self.api.start(cid)
        except APIError as e:
            err = self._start_error(e, spec)
            # A created-but-never-started container would hold the name and confuse the
            # next pass; nothing of it is worth keeping.
            try:
                self.api.remove_container(cid, force=True, v=True)
            except APIError:
                log.warning("could not remove failed container %s", cid, exc_info=True)
            raise err from None
        if not observe:
            return _observed(cid, labels, "running", health="starting" if healthcheck else None)
        obs = self.inspect(cid)
        if obs is None:
            raise DriverError(f"container {name!r} vanished right after it started")
        return obs

    def start(self, container_id: str) -> None:
        try:
            self.api.start(container_id)
        except NotFound:
            raise DriverError(f"container {container_id[:12]} no longer exists") from None
        except APIError as e:
            raise self._start_error(e, None) from None

    def restart(self, container_id: str, stop_timeout: int | None) -> None:
        """Stop (SIGTERM, grace period) and start again in place: for an unhealthy container."""
        try:
            self.api.restart(container_id, timeout=stop_timeout if stop_timeout is not None else 10)
        except NotFound:
            raise DriverError(f"container {container_id[:12]} no longer exists") from None
        except APIError as e:
            raise self._start_error(e, None) from None

    def _environment(self, spec: dict[str, Any], host_net: bool) -> dict[str, str]:
        env = dict(spec.get("env") or {})
        if self.gateway_port:  # the spec's own value wins
            env.setdefault("DOCKYARD_GATEWAY", f"http://{'127.0.0.1' if host_net else GATEWAY_HOST}:{self.gateway_port}")
        return env

    def probe_address(self, container_id: str, port: int) -> tuple[str, int] | None:
        """Where the agent reaches a container's port: its IP on a Docker network, else the
        host port it is published on, else None (not running, or no network)."""
        try:
            c = self.api.inspect_container(container_id)
        except NotFound:
            return None
        ns = c.get("NetworkSettings") or {}
        for net in sorted((ns.get("Networks") or {}).items()):
            ip = (net[1] or {}).get("IPAddress")
            if ip:
                return ip, port
        if ns.get("IPAddress"):
            return ns["IPAddress"], port
        for b in (ns.get("Ports") or {}).get(f"{port}/tcp") or []:
            if b.get("HostPort"):
                host = b.get("HostIp") or "127.0.0.1"
                return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), int(b["HostPort"])
        if (c.get("HostConfig") or {}).get("NetworkMode") == "host":
            return "127.0.0.1", port
        return None

    def remove(self, container_id: str, stop_timeout: int) -> None:
        # Stop first, so the process gets SIGTERM and its grace period; a bare force-remove
        # would SIGKILL straight away.
        try:
            self.api.stop(container_id, timeout=stop_timeout)
        except NotFound:
            return
        except APIError as e:
            log.info("stop of %s failed (%s), removing by force", container_id[:12], _docker_text(e))
        try:
            self.api.remove_container(container_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code == 409 and "already in progress" in _docker_text(e):
                return  # someone else is removing it: gone soon, which is what we want
            raise DriverError(f"cannot remove container {container_id[:12]}: {_docker_text(e)}") from None

    def logs(self, container_id: str, tail: int | str = "all", follow: bool = False,
             raw: bool = False) -> Iterator[bytes]:
        """The container's output: stdout and stderr merged, or with `raw` Docker's multiplexed
        frames (each with its 8-byte header naming the stream), as the Engine API sends them."""
        try:
            tty = bool(self.api.inspect_container(container_id)["Config"].get("Tty"))
            params = {"stdout": 1, "stderr": 1, "timestamps": 0, "follow": int(bool(follow)),
                      "tail": str(tail)}
            # Called on the SDK's request helpers rather than api.logs() because that one
            # applies the client timeout to every read: a quiet followed container would
            # end the stream with a ReadTimeout after CLIENT_TIMEOUT seconds.
            res = self.api._get(self.api._url("/containers/{0}/logs", container_id), params=params,
                                stream=True, timeout=None if follow else CLIENT_TIMEOUT)
            if raw and not tty:
                self.api._disable_socket_timeout(self.api._get_raw_response_socket(res))
                return _framed(res)
            return self.api._get_result_tty(True, res, tty)
        except NotFound:
            raise DriverError(f"container {container_id[:12]} no longer exists") from None
        except APIError as e:
            raise DriverError(f"cannot read logs of {container_id[:12]}: {_docker_text(e)}") from None

    # --- watch -------------------------------------------------------------------------

    def events(self, stop: threading.Event) -> Iterator[tuple[str, str, str]]:
        """Yield (action, container_id, instance_id) for this node's containers until `stop`.

        Each request asks for a short window (`until` a second ahead), and the next one
        starts where the last ended (`since`), so nothing is missed between windows and a
        set `stop` is noticed within about a second, without closing sockets across
        threads. Connection errors (dockerd restarting) are retried every second.
        `health_status: healthy` is yielded as plain `health_status`.
        Windows use this machine's clock: with a remote DOCKER_HOST, keep clocks in sync.
        """
        filters = {"type": "container", "label": f"{LABEL_NODE}={self.node}", "event": EVENT_ACTIONS}
        since = time.time()
        while not stop.is_set():
            until = time.time() + EVENT_WINDOW
            last = None
            try:
                stream = self.api.events(since=f"{since:.9f}", until=f"{until:.9f}",
                                         filters=filters, decode=True)
                try:
                    for ev in stream:
                        last = ev.get("timeNano", 0) / 1e9 or last
                        action = (ev.get("Action") or ev.get("status") or "").split(":", 1)[0]
                        actor = ev.get("Actor") or {}
                        attrs = actor.get("Attributes") or {}
                        yield action, actor.get("ID") or ev.get("id", ""), attrs.get(LABEL_INSTANCE, "")
                        if stop.is_set():
                            return
                finally:
                    stream.close()
            except (DockerException, requests.RequestException, OSError) as e:
                log.warning("docker events stream broken (%s); reconnecting", e)
                stop.wait(1.0)
            # Continue from the window's end when it ran to completion; after a break,
            # from the last event seen (a duplicate beats a gap: events only wake a pass).
            since = until if time.time() >= until else (last or since)


def _framed(response: requests.Response) -> Iterator[bytes]:
    """Docker's multiplexed stream as it came: frames of an 8-byte header (>BxxxL: stream,
    length) and data, read whole. (`response` stays a local so agent/api.py's canceller can
    shut a quiet followed stream.)"""
    while True:
        header = response.raw.read(8)
        if len(header) < 8:
            return
        data = response.raw.read(struct.unpack(">BxxxL", header)[1])
        if data:
            yield header + data
