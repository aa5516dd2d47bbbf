"""A service's observed status, summarised from its instances for humans and scripts."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.planner import RUNNING_STATES, InstanceView, is_ready


@dataclass(frozen=True)
class Status:
    replicas: int
    running: int
    ready: int
    updated: int  # instances on the current revision
    pending: int
    message: str


def summarise(replicas: int, revision: int, live: list[InstanceView], now: float, unschedulable: str = "") -> Status:
    running = [i for i in live if i.state in RUNNING_STATES]
    ready = [i for i in live if is_ready(i, now)]
    pending = [i for i in live if i.state == "pending"]
    updated = [i for i in live if i.revision == revision]
    problems: list[str] = []
    if pending and unschedulable:
        problems.append(f"{len(pending)} pending: {unschedulable}")
    errors = sorted({i.last_error for i in live if i.last_error and i.state not in RUNNING_STATES})
    if errors:
        problems.append("; ".join(errors[:3]))
    unhealthy = [i for i in running if i.healthy is False]
    if unhealthy:
        problems.append(f"{len(unhealthy)} unhealthy")
    if not problems and len(ready) < replicas:
        problems.append(f"waiting for {replicas - len(ready)} of {replicas} to be ready")
    return Status(replicas, len(running), len(ready), len(updated), len(pending), "; ".join(problems))
