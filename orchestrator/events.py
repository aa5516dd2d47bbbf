"""Recording events: what happened and why, newest first when read."""
from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from orchestrator.models import Event
from orchestrator.namespaces import namespace_of, split

# called after a commit that recorded events, so SSE watchers wake at once (not on their timeout)
_listeners: list[Callable[[], None]] = []


def on_commit(fn: Callable[[], None]) -> None:
    _listeners.append(fn)


def off_commit(fn: Callable[[], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def _fire(session: Session) -> None:
    session.info.pop("dy_events", None)
    for fn in list(_listeners):
        fn()


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
        time=now or time.time(), kind=kind, message=message, service=service, node=node, instance=instance, actor=actor,
        namespace=namespace_of(service),
    )
    s.add(ev)
    if _listeners and not s.info.get("dy_events"):
        s.info["dy_events"] = True
        sa_event.listen(s, "after_commit", _fire, once=True)
    return ev


def as_dict(e: Event) -> dict:
    return {
        "id": e.id,
        "time": e.time,
        "kind": e.kind,
        "service": split(e.service)[1] if e.service else None,
        "namespace": e.namespace,
        "node": e.node,
        "instance": e.instance,
        "message": e.message,
        "actor": e.actor,
    }
