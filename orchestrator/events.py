"""Recording events: what happened and why, newest first when read."""
from __future__ import annotations

import time

from sqlalchemy.orm import Session

from orchestrator.models import Event


def record(
    s: Session,
    kind: str,
    message: str,
    *,
    service: str | None = None,
    node: str | None = None,
    instance: str | None = None,
    actor: str | None = None,
    now: float | None = None,
) -> Event:
    ev = Event(
        time=now or time.time(), kind=kind, message=message, service=service, node=node, instance=instance, actor=actor
    )
    s.add(ev)
    return ev


def as_dict(e: Event) -> dict:
    return {
        "id": e.id,
        "time": e.time,
        "kind": e.kind,
        "service": e.service,
        "node": e.node,
        "instance": e.instance,
        "message": e.message,
        "actor": e.actor,
    }
