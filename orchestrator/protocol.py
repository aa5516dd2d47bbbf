"""The agent protocol's wire shapes, one module for both sides.

The server validates what agents send with these models (orchestrator/api/agent.py). The
agent builds the same bodies as plain dicts (agent/wire.py), so that it never imports pydantic
(about 10 MiB of its memory); tests/unit/test_protocol.py holds the two sides together: what
the agent builds is what these models accept and would build themselves. Answers are read by
the agent as plain JSON: validating every assignment's spec again would cost a busy agent more
than the rest of the sync (the server built them from validated revisions).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.spec import dns_label

ERROR_MAX = 4096  # characters of an instance's last error that travel (the rest is cut)


class JoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    join_token: str = Field(max_length=256)
    node_name: str
    address: str = Field(default="", max_length=255)
    agent_url: str = Field(default="", max_length=255)
    gateway: str = Field(default="", max_length=255, description="host:port where the node's gateway listens ('' = none)")
    labels: dict[str, str] = Field(default_factory=dict, max_length=256)
    cpus: float = Field(default=0.0, ge=0)
    memory: int = Field(default=0, ge=0)
    agent_version: str = Field(default="", max_length=64)
    engine_version: str = Field(default="", max_length=64)
    credential: str | None = Field(default=None, max_length=256, description="the node's current credential, "
                                   "if the agent has one: needed to re-join a node that is alive (orchestrator/join.py)")
    agent_cert: str = Field(default="", max_length=16384, description="PEM certificate of the agent's HTTPS API: "
                            "the server pins it when calling the agent (logs)")

    @field_validator("node_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return dns_label(v)


class ReportItem(BaseModel):
    instance_id: str = Field(max_length=32)
    container_id: str | None = Field(default=None, max_length=80)
    state: str = Field(max_length=16)  # starting | running | exited | failed
    healthy: bool | None = None
    exit_code: int | None = None
    host_ports: list[dict[str, Any]] = Field(default_factory=list)
    restart_count: int = Field(default=0, ge=0)
    error: str = Field(default="", max_length=ERROR_MAX)


class SyncIn(BaseModel):
    known: str | None = Field(default=None, description="the generation the agent already has")
    wait: float = Field(default=0.0, ge=0, le=60)
    report: list[ReportItem] | None = Field(default=None, description="every dockyard container on the node; null = no report")
    routes_known: str | None = Field(default=None, max_length=64, description="the routing-table version the "
                                     "agent's gateway has ('' for none yet); null: the agent runs no gateway")


class Assignment(BaseModel):
    instance_id: str
    service: str
    slot: int
    revision: int
    spec: dict[str, Any]
    restart_count: int


class SyncOut(BaseModel):
    node: str
    generation: str
    assignments: list[Assignment] | None = Field(
        description="every instance the node should run; null when unchanged since `known`")
    epoch: int | None = Field(default=None, description="the leader epoch the assignments were read under; "
                              "an agent ignores assignments older than the newest epoch it has seen")
    heartbeat_interval: float
    routes: list[dict[str, Any]] | None = Field(
        default=None, description="the gateways' routing table (docs/gateway.md); null when unchanged since "
        "`routes_known`, or when the agent sent no `routes_known`")
    routes_version: str | None = None
    spaces: dict[str, str | None] | None = Field(
        default=None, description="each namespace's parent (null: a root), sent with `routes`: the gateway "
        "serves a request for a space by the nearest namespace up this chain that has the route")


# --- metrics: agent -> server, every --metrics-interval seconds (orchestrator/api/agent.py) -------

class InstanceUsage(BaseModel):
    instance_id: str = Field(max_length=32)
    cpu: float | None = Field(default=None, ge=0, le=4096, description="CPU cores used, averaged over the window")
    memory: int | None = Field(default=None, ge=0, le=2**53, description="bytes in use at the end of the window")


class ServiceTraffic(BaseModel):
    service: str = Field(max_length=127, description="the service's key (`name`, or `namespace/name`)")
    requests: int = Field(ge=0, le=2**53, description="requests this node's gateway answered for it in the window")
    errors: int = Field(default=0, ge=0, le=2**53, description="of which answered 5xx")
    latency_p95_ms: float | None = Field(default=None, ge=0, description="95th percentile, from the gateway's buckets")


class MetricsIn(BaseModel):
    """POST /v1/agent/metrics: what the node's containers used and its gateway served over the
    last `window` seconds. Each post replaces the node's previous one."""

    window: float = Field(gt=0, le=3600, description="seconds the figures cover")
    instances: list[InstanceUsage] = Field(default_factory=list, max_length=100_000)
    traffic: list[ServiceTraffic] = Field(default_factory=list, max_length=100_000)
