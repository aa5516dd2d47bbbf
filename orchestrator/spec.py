"""The service spec as users write it: the one validated shape at the API edge.

Everything a user can say about a service is here, with its defaults and limits.
Validation errors from these models become the 422 error shape (see errors.py).
"""
from __future__ import annotations

import posixpath
import re
from fractions import Fraction
import shlex
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$")
# Docker accepts any name without '=' or NUL ('discovery.type', 'my-var'); a shell may not see it, the process does.
ENV_KEY = re.compile(r"^[^=\x00]{1,1024}$")
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses memory limits below 6 MiB
MAX_MEMORY = 2**63 - 1  # Docker (and the database) keep it in a signed 64-bit integer

MAX_ITEMS = 256
MAX_STR = 4096

# Kubernetes resource quantities (k8s.io/apimachinery resource.Quantity), as bytes.
_BINARY_SI = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SI = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)([eE][+-]?\d+|[A-Za-z]*)")
# what people write after Docker or other tools, and the Kubernetes spelling of the same number
_NOT_KUBERNETES = {
    "b": "plain bytes (no unit)", "kb": "'k' (1000) or 'Ki' (1024)", "ki": "'Ki'", "kib": "'Ki'", "K": "'k' (1000) or 'Ki' (1024)",
    "mb": "'M' (10^6) or 'Mi' (2^20)", "mi": "'Mi'", "mib": "'Mi'",
    "gb": "'G' or 'Gi'", "g": "'G' or 'Gi'", "gi": "'Gi'", "gib": "'Gi'",
    "tb": "'T' or 'Ti'", "t": "'T' or 'Ti'", "ti": "'Ti'", "tib": "'Ti'",
    "pb": "'P' or 'Pi'", "p": "'P' or 'Pi'", "pi": "'Pi'", "pib": "'Pi'",
}
_MEMORY_FORMS = "use bytes or a Kubernetes quantity such as '64Mi', '1.5Gi', '100Ti', '512M' or '1e9'"


def parse_memory(value: Any) -> int | None:
    """Bytes from an int or a Kubernetes quantity ('64Mi', '1G', '100Ti', '1e9'), rounded up to a whole byte.

    A lowercase 'm' is refused: Kubernetes reads it as milli (1/1000), Docker and Compose as
    MiB, so '128m' means two numbers a million times apart depending on who reads it."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"must be a byte count or a string; {_MEMORY_FORMS}")
    if isinstance(value, int):
        n = Fraction(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"must be a finite number of bytes; {_MEMORY_FORMS}")
        n = Fraction(value)
    elif isinstance(value, str):
        text = value.strip()
        m = _QUANTITY.fullmatch(text) if len(text) <= 64 else None
        if not m:
            raise ValueError(f"{value!r} is not a quantity: {_MEMORY_FORMS}")
        sign, number, suffix = m.groups()
        if suffix == "m":
            raise ValueError(f"{value!r}: a lowercase 'm' means milli (1/1000) in Kubernetes and MiB in Docker; "
                             f"write '{number}Mi' for mebibytes (or '{number}M' for 10^6 bytes)")
        if suffix in ("n", "u"):
            raise ValueError(f"{value!r}: '{suffix}' is a fraction of a byte; {_MEMORY_FORMS}")
        if suffix[:1] in "eE" and suffix[1:].lstrip("+-").isdigit():
            exp = int(suffix[1:])  # the whole text is at most 64 characters
            if exp > 30:
                raise ValueError(f"{value!r} is too large: at most {MAX_MEMORY} bytes (8Ei - 1)")
            mult = Fraction(10) ** max(exp, -30)  # below 10^-30 every number is under a byte anyway
        elif suffix in _BINARY_SI:
            mult = Fraction(_BINARY_SI[suffix])
        elif suffix in _DECIMAL_SI:
            mult = Fraction(_DECIMAL_SI[suffix])
        elif suffix in _NOT_KUBERNETES or suffix.lower() in _NOT_KUBERNETES:
            hint = _NOT_KUBERNETES.get(suffix) or _NOT_KUBERNETES[suffix.lower()]
            raise ValueError(f"{value!r}: unit '{suffix}' is not a Kubernetes quantity suffix; use {hint}")
        else:
            raise ValueError(f"{value!r}: unknown unit '{suffix}'; {_MEMORY_FORMS}")
        n = Fraction(number) * mult * (-1 if sign == "-" else 1)
    else:
        raise ValueError(f"must be a byte count or a string; {_MEMORY_FORMS}")
    if n < 0:
        raise ValueError("must not be negative")
    whole = -(-n.numerator // n.denominator)  # round up: a fraction of a byte is still a byte
    if whole > MAX_MEMORY:
        raise ValueError(f"{value!r} is too large: at most {MAX_MEMORY} bytes (8Ei - 1)")
    if whole < MIN_MEMORY:
        raise ValueError("must be at least 6Mi (Docker's minimum)")
    return whole


def dns_label(value: str) -> str:
    if not isinstance(value, str) or not DNS_LABEL.fullmatch(value):
        raise ValueError(
            "must be a DNS label: 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Port(_Strict):
    container_port: int = Field(ge=1, le=65535)
    host_port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"


class Resources(_Strict):
    """Both the placement request and the container's limit."""

    cpus: float | None = Field(default=None, gt=0, le=1024)
    memory: int | None = Field(default=None, description="bytes; strings like '64Mi' accepted")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> int | None:
        return parse_memory(v)


class Restart(_Strict):
    policy: Literal["always", "on-failure", "never"] = "always"
    backoff_cap: float = Field(default=30.0, ge=0, le=3600, description="seconds; the exponential back-off never waits longer")


class Placement(_Strict):
    constraints: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=64)
    strategy: Literal["spread", "binpack"] = "spread"
    max_per_node: int | None = Field(default=None, ge=1)
    rebalance: Literal["auto", "manual", "never"] = Field(
        default="manual", description="move instances towards an even spread: 'auto' when a node joins or comes "
        "back, 'manual' only on POST .../rebalance, 'never' not even then (docs/autoscaling.md)")
    rebalance_max_moves: int = Field(default=1, ge=1, le=100, description="instances moved at a time (surge-first)")

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v: list[str]) -> list[str]:
        from orchestrator.core.constraints import parse_constraint

        for c in v:
            parse_constraint(c)  # raises ValueError with a clear message
        return v


class Health(_Strict):
    type: Literal["http", "tcp", "exec"]
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = Field(default="/", max_length=1024)
    expected_status: int = Field(default=200, ge=100, le=599)
    command: list[Annotated[str, Field(max_length=MAX_STR)]] | None = Field(default=None, max_length=MAX_ITEMS)
    interval: float = Field(default=2.0, gt=0, le=3600)
    timeout: float = Field(default=1.0, gt=0, le=3600)
    retries: int = Field(default=3, ge=1, le=10000)
    start_period: float = Field(default=0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _needs(self) -> "Health":
        if self.type in ("http", "tcp") and self.port is None:
            raise ValueError(f"a {self.type} health check needs a port")
        if self.type == "exec" and not self.command:
            raise ValueError("an exec health check needs a command")
        return self


class Autoscale(_Strict):
    """The replica count follows a metric (docs/autoscaling.md), by the Kubernetes HPA rule:
    desired = ceil(current x value / target), nothing within `tolerance`, a scale-down only when
    every recommendation of the last `scale_down_stabilization` seconds allows it."""

    min: int = Field(ge=1, le=10000)
    max: int = Field(ge=1, le=10000)
    metric: Literal["cpu", "memory", "rps", "latency_p95"] = "cpu"
    target: float = Field(gt=0, le=1e9, description="cpu, memory: percent of the instance's request (cpu: of "
                          "one core without one); rps: requests/s per ready instance; latency_p95: milliseconds")
    scale_up_stabilization: float = Field(default=0.0, ge=0, le=3600, description="seconds")
    scale_down_stabilization: float = Field(default=300.0, ge=0, le=3600, description="seconds")
    tolerance: float = Field(default=0.1, ge=0, le=1, description="no change while value/target is within 1 +- this")

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscale":
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self


# Spec fields that steer the server's controllers, not the containers: changing only these
# makes no new revision and restarts nothing (service_ops.write).
CONTROL_FIELDS = (("autoscale",), ("placement", "rebalance"), ("placement", "rebalance_max_moves"))


def runtime_view(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without its control fields: what the containers see."""
    out = dict(spec)
    out.pop("autoscale", None)
    if isinstance(out.get("placement"), dict):
        out["placement"] = {k: v for k, v in out["placement"].items() if k not in ("rebalance", "rebalance_max_moves")}
    return out


Percent = Annotated[str, Field(pattern=r"^\d{1,3}%$")]


class Update(_Strict):
    max_surge: int | Percent = "25%"
    max_unavailable: int | Percent = "25%"
    min_ready_seconds: float = Field(default=0.0, ge=0, le=3600)
    progress_deadline: float = Field(default=600.0, gt=0, le=86400)
    failure_action: Literal["pause", "rollback"] = "rollback"

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _non_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("must be >= 0")
        if isinstance(v, str) and int(v[:-1]) > 100:
            raise ValueError("a percentage must be at most 100%")
        return v

    @model_validator(mode="after")
    def _not_both_zero(self) -> "Update":
        def zero(v: int | str) -> bool:
            return v == 0 or v == "0%"

        if zero(self.max_surge) and zero(self.max_unavailable):
            raise ValueError("max_surge and max_unavailable cannot both be 0")
        return self


class Volume(_Strict):
    """A bind mount of a host path (needs `--allow bind:<prefix>` on the server and an admin token)."""

    source: str = Field(min_length=1, max_length=MAX_STR, description="absolute path on the node")
    target: str = Field(min_length=1, max_length=MAX_STR, description="absolute path in the container")
    read_only: bool = False

    @field_validator("source", "target")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or ".." in v.split("/") or ":" in v or any(c in v for c in "\0\n"):
            raise ValueError("must be an absolute path without '..' or ':'")
        return posixpath.normpath(v)


HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
PATH_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,1023}$")


class Expose(_Strict):
    """A route into the service through every node's gateway (docs/gateway.md): requests for
    `host` (default `<service>.localhost`) under `path_prefix` go to `port` of a ready instance."""

    port: int = Field(ge=1, le=65535, description="the container port requests go to (published on a random host port)")
    host: str | None = Field(default=None, max_length=253,
                             description="the Host header to route on; default <service>.localhost")
    path_prefix: str = Field(default="/", max_length=1024, description="routes requests whose path is under it")

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, str) or not HOSTNAME.fullmatch(v.strip().lower().rstrip(".")):
            raise ValueError("must be a DNS name such as 'web.localhost' or 'shop.example.com' "
                             "(lowercase letters, digits, '-' and dots; no port, no scheme)")
        return v.strip().lower().rstrip(".")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not PATH_PREFIX.fullmatch(v) or "//" in v or any(seg in (".", "..") for seg in v.split("/")):
            raise ValueError("must be an absolute URL path such as '/' or '/api' (no '..', '//', query or spaces)")
        return v.rstrip("/") or "/"


def _split_command(v: Any) -> Any:
    if isinstance(v, str):
        return shlex.split(v)
    return v


class ServiceSpec(_Strict):
    """Everything that, when changed, makes a new revision (replicas excepted)."""

    image: str = Field(min_length=1, max_length=512)
    command: list[Annotated[str, Field(max_length=MAX_STR)]] | None = Field(
        default=None, max_length=MAX_ITEMS, description="overrides the image's CMD; a string is split like a shell would")
    entrypoint: list[Annotated[str, Field(max_length=MAX_STR)]] | None = Field(
        default=None, max_length=MAX_ITEMS, description="overrides the image's ENTRYPOINT")
    env: dict[str, Annotated[str, Field(max_length=MAX_STR * 8)]] = Field(default_factory=dict, max_length=MAX_ITEMS)
    ports: list[Port] = Field(default_factory=list, max_length=64)
    resources: Resources = Field(default_factory=Resources)
    labels: dict[str, Annotated[str, Field(max_length=1024)]] = Field(default_factory=dict, max_length=MAX_ITEMS)
    stop_timeout: int = Field(default=10, ge=0, le=3600, description="seconds between SIGTERM and SIGKILL")
    init: bool = Field(default=False, description="run an init process as PID 1 (reaps zombies, forwards signals)")
    restart: Restart = Field(default_factory=Restart)
    pull: Literal["if-not-present", "always", "never"] = "if-not-present"
    placement: Placement = Field(default_factory=Placement)
    health: Health | None = None
    update: Update = Field(default_factory=Update)
    # host privileges: refused unless the server's --allow list permits them (see policy.py)
    privileged: bool = Field(default=False, description="privileged mode (needs --allow privileged)")
    network_mode: Literal["bridge", "host", "none"] | None = Field(
        default=None, description="'host' shares the node's network namespace (needs --allow host-network)")
    pid_mode: Literal["host"] | None = Field(default=None, description="'host' needs --allow host-pid")
    cap_add: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,35}$")]] = Field(
        default_factory=list, max_length=64, description="Linux capabilities to add (each needs --allow cap:NAME)")
    volumes: list[Volume] = Field(default_factory=list, max_length=64,
                                  description="bind mounts of host paths (need --allow bind:/prefix)")
    expose: list[Expose] = Field(default_factory=list, max_length=64,
                                 description="routes through the nodes' gateways (docs/gateway.md)")
    autoscale: Autoscale | None = Field(default=None, description="replicas follow a metric (docs/autoscaling.md)")

    _cmd = field_validator("command", "entrypoint", mode="before")(classmethod(lambda cls, v: _split_command(v)))

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not v.strip() or any(c.isspace() for c in v):
            raise ValueError("must be a non-empty image reference without spaces")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not ENV_KEY.fullmatch(k):
                raise ValueError(f"invalid environment variable name {k!r}: "
                                 "it must be 1-1024 characters without '=' or NUL")
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[Volume]) -> list[Volume]:
        targets = [x.target for x in v]
        for t in targets:
            if targets.count(t) > 1:
                raise ValueError(f"two volumes mount on {t}")
        return v

    @model_validator(mode="after")
    def _network(self) -> "ServiceSpec":
        if self.network_mode == "none" and self.ports:
            raise ValueError("a service with network_mode 'none' cannot publish ports")
        if self.network_mode == "none" and self.expose:
            raise ValueError("a service with network_mode 'none' cannot expose a port: nothing could reach it")
        seen: set[tuple[str | None, str]] = set()
        for e in self.expose:
            if (e.host, e.path_prefix) in seen:
                raise ValueError(f"expose lists host {e.host or '(default)'} with path_prefix {e.path_prefix} twice")
            seen.add((e.host, e.path_prefix))
        return self

    @model_validator(mode="after")
    def _autoscale_needs(self) -> "ServiceSpec":
        a = self.autoscale
        if a is not None and a.metric == "memory" and self.resources.memory is None:
            raise ValueError("autoscale on memory needs resources.memory: the target is a percent of it")
        if a is not None and a.metric in ("rps", "latency_p95") and not self.expose:
            raise ValueError(f"autoscale on {a.metric} needs an expose route: the gateways measure the traffic")
        return self

    @field_validator("cap_add")
    @classmethod
    def _caps(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for c in v:
            c = c.upper().removeprefix("CAP_")
            if c not in out:
                out.append(c)
        return out

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not LABEL_KEY.fullmatch(k):
                raise ValueError(f"invalid label key {k!r}")
            if k.startswith("dockyard."):
                raise ValueError(f"label key {k!r} uses the reserved prefix 'dockyard.'")
        return v

    @model_validator(mode="after")
    def _ports_unique(self) -> "ServiceSpec":
        seen: set[tuple[int, str]] = set()
        for p in self.ports:
            if p.host_port is not None:
                key = (p.host_port, p.protocol)
                if key in seen:
                    raise ValueError(f"host port {p.host_port}/{p.protocol} is listed twice")
                seen.add(key)
        return self


class ServiceApply(ServiceSpec):
    """Body of PUT /v1/services/{name}: the spec plus how many and bookkeeping."""

    replicas: int = Field(default=1, ge=0, le=10000)
    version: int | None = Field(default=None, description="optimistic concurrency: refuse with 409 unless it matches")
    change_cause: str | None = Field(default=None, max_length=1024)
    stack: str | None = Field(default=None, description="the stack this service belongs to")

    @field_validator("stack")
    @classmethod
    def _stack(cls, v: str | None) -> str | None:
        return None if v is None else dns_label(v)

    def spec(self) -> ServiceSpec:
        return ServiceSpec.model_validate(self.model_dump(exclude={"replicas", "version", "change_cause", "stack"}))


class Scale(_Strict):
    replicas: int = Field(ge=0, le=10000)
