"""Service operations behind the API: apply, patch, scale, delete, rollback, and their views.

Each function runs inside one transaction given by the caller; a 2xx answer means it committed.
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import revisions
from orchestrator.core import planner
from orchestrator.core import status as status_core
from orchestrator.errors import Conflict, NotFound, ValidationFailed, validation_details
from orchestrator.events import record
from orchestrator.models import Instance, Service
from orchestrator.reconcile import view
from orchestrator.spec import ServiceApply, dns_label


def iso(t: float | None) -> str | None:
    return None if not t else datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def check_name(name: str) -> str:
    try:
        return dns_label(name)
    except ValueError as exc:
        raise ValidationFailed(f"invalid service name {name!r}: {exc}", [{"field": "name", "problem": str(exc)}])


def load(s: Session, name: str, *, lock: bool = False) -> Service:
    q = select(Service).where(Service.name == name)
    if lock:
        q = q.with_for_update()
    svc = s.scalars(q).first()
    if svc is None:
        raise NotFound(f"service {name!r} not found")
    return svc


def read(s: Session, name: str) -> Service:
    """The service's row for reading only (GET, a no-op apply): a Core row has the same
    attributes as the ORM object at a fraction of the cost (no identity map, no state)."""
    row = s.connection().execute(select(Service.__table__).where(Service.name == name)).first()
    if row is None:
        raise NotFound(f"service {name!r} not found")
    return row  # type: ignore[return-value]


def check_version(svc: Service, expected: int | None) -> None:
    _check_version(svc.name, svc.version, expected)


def _check_version(name: str, version: int, expected: int | None) -> None:
    if expected is not None and expected != version:
        raise Conflict(f"service {name!r} is at version {version}, not {expected}: re-read it and retry",
                       current_version=version)


def apply(s: Session, name: str, body: ServiceApply, *, if_match: int | None, actor: str, now: float,
          history_limit: int, check: Callable[[dict], None] | None = None) -> tuple[Service, bool]:
    """Create or update. Returns (service, created). Identical specs change nothing.
    `check(spec)` (the host-privilege policy) runs on every spec about to be written."""
    check_name(name)
    spec = body.spec().model_dump(mode="json")
    svc = s.scalars(select(Service).where(Service.name == name).with_for_update()).first()
    expected = body.version if body.version is not None else if_match
    if svc is None:
        if expected not in (None, 0):
            raise Conflict(f"service {name!r} does not exist, so it cannot be at version {expected}", current_version=0)
        if check is not None:
            check(spec)
        svc = Service(name=name, stack=body.stack, spec=spec, replicas=body.replicas, revision=0, generation=1,
                      version=1, created_at=now, updated_at=now, rollout_phase="complete", rollout_reason="")
        s.add(svc)
        s.flush()
        rev = revisions.add(s, svc, spec, body.change_cause or "created", now, history_limit)
        svc.revision = rev.number
        record(s, "service_created", f"service {name} created with {body.replicas} replica(s), revision 1",
               service=name, actor=actor, now=now)
        return svc, True
    check_version(svc, expected)
    changed = False
    if spec != svc.spec:
        if check is not None:
            check(spec)
        cause = body.change_cause or revisions.summary(svc.spec, spec)
        rev = revisions.add(s, svc, spec, cause, now, history_limit)
        if svc.rollout_phase in ("complete", "rolled_back") or svc.rollout_from is None:
            svc.rollout_from = svc.revision
        # else a rollout was under way or paused: a failure of this one still returns to the
        # last revision that was fully rolled out, not to the half-done one
        svc.spec, svc.revision = spec, rev.number
        svc.rollout_phase, svc.rollout_reason, svc.rollout_started_at = "progressing", "", now
        record(s, "service_updated", f"revision {rev.number}: {cause}", service=name, actor=actor, now=now)
        changed = True
    if body.replicas != svc.replicas:
        record(s, "service_scaled", f"replicas {svc.replicas} -> {body.replicas}", service=name, actor=actor, now=now)
        svc.replicas = body.replicas
        changed = True
    if body.stack != svc.stack and body.stack is not None:
        svc.stack = body.stack
        changed = True
    if changed:
        svc.generation += 1
        svc.version += 1
        svc.updated_at = now
    return svc, False


def unchanged(s: Session, name: str, body: ServiceApply, *, if_match: int | None) -> Service | None:
    """The service, if applying `body` would change nothing (else None), read without locking.

    Re-applying an unchanged manifest is the most common write (CI pipelines, `dockyard apply`
    of a whole stack): answering it from a plain read keeps it out of the database's single
    write lock. A stale version still gets its 409, as from `apply`."""
    check_name(name)
    try:
        svc = read(s, name)
    except NotFound:
        return None
    return svc if is_noop(name, svc.version, svc.replicas, svc.stack, svc.spec, body, if_match) else None


NOT_SPEC = {"replicas", "version", "change_cause", "stack"}  # ServiceApply's fields beyond ServiceSpec


def is_noop(name: str, version: int, replicas: int, stack: str | None, spec: dict, body: ServiceApply,
            if_match: int | None) -> bool:
    """Would applying `body` to a service in this state change nothing? (409 on a stale version)"""
    _check_version(name, version, body.version if body.version is not None else if_match)
    if body.replicas != replicas or (body.stack is not None and body.stack != stack):
        return False
    # the body's own fields first: the same as its spec() (validation is idempotent) without
    # validating it all again, the bulk of an unchanged apply's cost
    if body.model_dump(mode="json", exclude=NOT_SPEC) == spec:
        return True
    return body.spec().model_dump(mode="json") == spec


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def patch(s: Session, name: str, body: dict, *, if_match: int | None, actor: str, now: float,
          history_limit: int, check: Callable[[dict], None] | None = None) -> Service:
    svc = load(s, name, lock=True)
    if not isinstance(body, dict):
        raise ValidationFailed("a merge patch must be a JSON object", [{"field": "body", "problem": "not an object"}])
    current = dict(svc.spec, replicas=svc.replicas)
    if svc.stack:
        current["stack"] = svc.stack
    merged = merge_patch(current, body)
    try:
        apply_body = ServiceApply.model_validate(merged)
    except ValidationError as exc:
        details = validation_details(list(exc.errors()))
        raise ValidationFailed("invalid patch: " + "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5]), details)
    svc, _ = apply(s, name, apply_body, if_match=if_match, actor=actor, now=now, history_limit=history_limit,
                   check=check)
    return svc


def scale(s: Session, name: str, replicas: int, *, if_match: int | None, actor: str, now: float) -> Service:
    svc = load(s, name, lock=True)
    check_version(svc, if_match)
    if replicas != svc.replicas:
        record(s, "service_scaled", f"replicas {svc.replicas} -> {replicas}", service=name, actor=actor, now=now)
        svc.replicas = replicas
        svc.generation += 1
        svc.version += 1
        svc.updated_at = now
    return svc


def delete(s: Session, name: str, *, if_match: int | None, actor: str, now: float) -> set[str]:
    """Forget the service; its instances are told to stop and vanish once their containers are gone."""
    svc = load(s, name, lock=True)
    check_version(svc, if_match)
    nodes = set()
    for i in s.scalars(select(Instance).where(Instance.service_name == name, Instance.desired_state == "running")):
        i.desired_state, i.updated_at = "stopped", now
        if i.node_name:
            nodes.add(i.node_name)
    s.delete(svc)
    record(s, "service_deleted", f"service {name} deleted; stopping its containers", service=name, actor=actor, now=now)
    return nodes


def rollback(s: Session, name: str, to: int | None, *, actor: str, now: float,
             check: Callable[[dict], None] | None = None) -> Service:
    svc = load(s, name, lock=True)
    if to is None:
        if svc.rollout_from is None:
            older = [r for r in s.scalars(select(revisions.Revision.number).where(
                revisions.Revision.service_name == name)) if r < svc.revision]
            if not older:
                raise Conflict(f"service {name!r} has no earlier revision to roll back to")
            to = max(older)
        else:
            to = svc.rollout_from
    if to == svc.revision:
        raise Conflict(f"service {name!r} already runs revision {to}")
    frm = svc.revision
    if check is not None:
        check(revisions.get(s, name, to).spec)
    revisions.activate(s, svc, to, now)
    svc.rollout_phase, svc.rollout_reason = "progressing", f"rollback from revision {frm} to {to}"
    record(s, "rollback", f"rolling back from revision {frm} to revision {to}", service=name, actor=actor, now=now)
    return svc


def pause_rollout(s: Session, name: str, *, actor: str, now: float) -> Service:
    svc = load(s, name, lock=True)
    if svc.rollout_phase == "paused":
        return svc
    if svc.rollout_phase != "progressing":
        raise Conflict(f"service {name!r} has no rollout in progress (phase {svc.rollout_phase}): nothing to pause")
    svc.rollout_phase, svc.rollout_reason = "paused", f"paused by {actor}"
    svc.version += 1
    svc.updated_at = now
    record(s, "rollout_paused", f"rollout of revision {svc.revision} paused by {actor}", service=name, actor=actor,
           now=now)
    return svc


def resume_rollout(s: Session, name: str, *, actor: str, now: float) -> Service:
    """Carry on rolling. New-revision instances that failed are replaced by fresh ones (their
    crash counts would otherwise fail the resumed rollout at once), and the progress deadline
    starts again."""
    svc = load(s, name, lock=True)
    if svc.rollout_phase != "paused":
        raise Conflict(f"service {name!r} is not paused (phase {svc.rollout_phase}): nothing to resume")
    retried = 0
    for i in s.scalars(select(Instance).where(Instance.service_name == name, Instance.desired_state == "running",
                                              Instance.revision == svc.revision)):
        if planner.is_failed(view(i)):
            i.desired_state, i.updated_at = "stopped", now
            retried += 1
    svc.rollout_phase, svc.rollout_reason, svc.rollout_started_at = "progressing", "", now
    svc.version += 1
    svc.updated_at = now
    more = f"; {retried} failed instance(s) replaced" if retried else ""
    record(s, "rollout_resumed", f"rollout of revision {svc.revision} resumed by {actor}{more}", service=name,
           actor=actor, now=now)
    return svc


def rollout_dict(svc: Service, views: list[planner.InstanceView], now: float) -> dict:
    """A rollout's progress: phase, why it stopped, and how far it got."""
    min_ready = (svc.spec.get("update") or {}).get("min_ready_seconds", 0.0)
    new = [v for v in views if v.revision == svc.revision]
    old = [v for v in views if v.revision != svc.revision]
    surge, unavailable = planner.budgets(planner.ServiceView(
        name=svc.name, replicas=svc.replicas, revision=svc.revision,
        max_surge=(svc.spec.get("update") or {}).get("max_surge", "25%"),
        max_unavailable=(svc.spec.get("update") or {}).get("max_unavailable", "25%")))
    return {
        "service": svc.name, "revision": svc.revision, "from_revision": svc.rollout_from,
        "phase": svc.rollout_phase, "reason": svc.rollout_reason, "started_at": iso(svc.rollout_started_at),
        "replicas": svc.replicas, "max_surge": surge, "max_unavailable": unavailable,
        "new": len(new), "old": len(old),
        "ready": sum(planner.is_ready(v, now, min_ready) for v in views),
        "new_ready": sum(planner.is_ready(v, now, min_ready) for v in new),
        "old_revisions": sorted({v.revision for v in old}),
        # kept for earlier clients: "updated" = new, "running" = in a running state
        "updated": len(new), "running": sum(v.state in planner.RUNNING_STATES for v in views),
    }


def instance_dict(i: Instance) -> dict:
    return {
        "id": i.id, "service": i.service_name, "slot": i.slot, "revision": i.revision, "node": i.node_name,
        "desired_state": i.desired_state, "state": i.state, "healthy": i.healthy, "container_id": i.container_id,
        "host_ports": i.host_ports or [], "exit_code": i.exit_code, "restart_count": i.restart_count,
        "last_error": i.last_error, "created_at": iso(i.created_at), "updated_at": iso(i.updated_at),
    }


# in the order of planner.InstanceView's fields, after the service name
LIVE_COLUMNS = (Instance.service_name, Instance.id, Instance.slot, Instance.revision, Instance.state,
                Instance.healthy, Instance.ready_since, Instance.restart_count, Instance.last_error)


def live_instances(s: Session, names: list[str]) -> dict[str, list[planner.InstanceView]]:
    """Each service's live instances as the planner's views, built from plain rows: ORM objects
    (and even attribute access on result rows) for every GET of a 100-replica service cost most
    of the request."""
    out: dict[str, list[planner.InstanceView]] = defaultdict(list)
    if not names:
        return out
    where = (Instance.service_name.in_(names), Instance.desired_state == "running")
    make = planner.InstanceView
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        # One row per service, its instances as one JSON array: SQLite releases the GIL for
        # every row it steps, and on a busy server each release costs a wait to get it back
        # (README, Performance: the GIL). Booleans come back as 0/1.
        agg = func.json_group_array(func.json_array(*LIVE_COLUMNS[1:]))
        for name, blob in conn.execute(select(Instance.service_name, agg).where(*where)
                                       .group_by(Instance.service_name)):
            out[name] = [make(i, slot, rev, state, None if healthy is None else bool(healthy), since, restarts, err)
                         for i, slot, rev, state, healthy, since, restarts, err in json.loads(blob)]
        return out
    for row in conn.execute(select(*LIVE_COLUMNS).where(*where)):
        out[row[0]].append(make(*row[1:]))
    return out


def service_dict(svc: Service, live: list[planner.InstanceView], now: float) -> dict:
    st = status_core.summarise(svc.replicas, svc.revision, live, now, svc.status_message)
    return {
        "name": svc.name, "stack": svc.stack, "replicas": svc.replicas, "revision": svc.revision,
        "generation": svc.generation, "version": svc.version, "spec": svc.spec,
        "status": {"replicas": st.replicas, "running": st.running, "ready": st.ready, "updated": st.updated,
                   "pending": st.pending, "message": st.message},
        "rollout": {"phase": svc.rollout_phase, "reason": svc.rollout_reason},
        "created_at": iso(svc.created_at), "updated_at": iso(svc.updated_at),
    }
