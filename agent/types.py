"""Plain data the agent works with: what the server assigned and what Docker shows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LABEL_INSTANCE = "dockyard.instance"
LABEL_SERVICE = "dockyard.service"
LABEL_NODE = "dockyard.node"
LABEL_REVISION = "dockyard.revision"
LABEL_SLOT = "dockyard.slot"
LABEL_NAMESPACE = "dockyard.namespace"


def service_parts(service_key: str) -> tuple[str, str]:
    """(namespace, name) of the service key an assignment carries (`web`, `alice/web`)."""
    ns, sep, name = service_key.partition("/")
    return (ns, name) if sep else ("default", service_key)


@dataclass(frozen=True)
class Assignment:
    """One instance the server wants running on this node."""

    instance_id: str
    service: str
    slot: int
    revision: int
    spec: dict[str, Any]  # ServiceSpec.model_dump(): image, command, env, ports, resources, ...
    restart_count: int = 0  # the server's record, so a restarted agent keeps counting


@dataclass
class Observed:
    """One labelled container as Docker reports it."""

    instance_id: str
    service: str
    revision: int
    slot: int
    container_id: str
    state: str  # docker's: created | running | restarting | paused | exited | dead | removing
    exit_code: int | None = None
    host_ports: list[dict[str, Any]] = field(default_factory=list)  # {container_port, host_port, protocol}
    started_at: str | None = None
    finished_at: str | None = None
    health: str | None = None  # docker's own health status, for exec checks
    oom_killed: bool = False
    error: str | None = None
