"""Service operations behind the API: apply (one service or a batch), patch, scale, delete,
rollback, and their views.

Each function runs inside one transaction given by the caller; a 2xx answer means it committed.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from orchestrator import namespaces, revisions
from orchestrator.core import planner
from orchestrator.core import routes as routes_core
from orchestrator.core import status as status_core
from orchestrator.errors import Conflict, DockyardError, NotFound, ValidationFailed, validation_details
from orchestrator.events import record
from orchestrator.models import Instance, Service
from orchestrator.namespaces import split
from orchestrator.reconcile import view
from orchestrator.spec import ServiceApply, dns_label, runtime_view


def iso(t: float | None) -> str | None:
    return None if not t else datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def check_name(name: str) -> str:
    """Validate a service key's name part (the namespace part was checked on the way in)."""
    short = split(name)[1]
    try:
        dns_label(short)
        return name
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
                       [{"field": "version", "problem": f"the service is at version {version}, not {expected}"}],
                       current_version=version)


# ------------------------------------------------------------------- apply (PUT and POST /v1/apply)
#
# One path for both: `plan` decides what applying a body does (and refuses it) before anything
# is written, `write` makes the plan true. PUT plans one service; /v1/apply plans every service
# of a batch first and writes them all in the same transaction.

NOT_SPEC = {"replicas", "version", "change_cause", "stack"}  # ServiceApply's fields beyond ServiceSpec


def owner_conflict(name: str, current: str | None, wanted: str | None, take_over: bool = False) -> str | None:
    """Why a body naming stack `wanted` may not change a service of stack `current` (None: it may).

    A stack owns its services: `delete stack` and `apply --prune` delete them with it. So another
    stack, an apply without a stack, and a stack reaching for a service outside any stack would
    each change (and later delete) a service that someone else manages. `take_over` says the
    move is meant."""
    if take_over or current == wanted:
        return None
    if current is None:
        return (f"service {name!r} exists outside any stack; delete it first, or apply with take_over "
                f"to move it into stack {wanted!r}")
    return f"service {name!r} belongs to stack {current!r}; delete it there or apply with stack {current!r}"


def _check_owner(name: str, current: str | None, wanted: str | None, take_over: bool) -> None:
    why = owner_conflict(name, current, wanted, take_over)
    if why is not None:
        raise Conflict(why, [{"field": "stack", "problem": why}], owner_stack=current)


def same_spec(body: ServiceApply, spec: dict) -> bool:
    # the body's own fields first: the same as its spec() (validation is idempotent) without
    # validating it all again, the bulk of an unchanged apply's cost
    if body.model_dump(mode="json", exclude=NOT_SPEC) == spec:
        return True
    return body.spec().model_dump(mode="json") == spec


def decide(name: str, version: int, replicas: int, stack: str | None, spec: dict, body: ServiceApply,
           expected: int | None, take_over: bool = False) -> tuple[bool, bool]:
    """(the spec changes, anything changes) when `body` is applied to a service in this state.
    Raises Conflict (409) on a stale version or a service of another stack (owner_conflict)."""
    _check_version(name, version, expected)
    _check_owner(name, stack, body.stack, take_over)
    spec_changes = not same_spec(body, spec)
    return spec_changes, spec_changes or body.replicas != replicas or body.stack != stack


def is_noop(name: str, version: int, replicas: int, stack: str | None, spec: dict, body: ServiceApply,
            if_match: int | None, take_over: bool = False) -> bool:
    """Would applying `body` to a service in this state change nothing? (409 as `decide`)"""
    expected = body.version if body.version is not None else if_match
    return not decide(name, version, replicas, stack, spec, body, expected, take_over)[1]


@dataclass
class Plan:
    """What applying one body does, decided (or refused) before anything is written."""

    name: str
    body: ServiceApply
    svc: Any  # the service now: an ORM object when read locked, else a read-only row; None: absent
    spec: dict  # the spec to store
    action: str  # created | updated | unchanged
    spec_changes: bool


def current(s: Session, names: list[str], *, lock: bool) -> dict[str, Any]:
    """name -> the service's row, locked for the write to come (in name order, so that two
    batches lock their rows in the same order) or read without locking (a Core row)."""
    if not names:
        return {}
    wanted = sorted(set(names))
    if lock:
        q = select(Service).where(Service.name.in_(wanted)).order_by(Service.name).with_for_update()
        return {svc.name: svc for svc in s.scalars(q)}
    rows = s.connection().execute(select(Service.__table__).where(Service.name.in_(wanted)))
    return {row.name: row for row in rows}


def plan(name: str, svc: Any, body: ServiceApply, *, if_match: int | None = None,
         check: Callable[[dict], None] | None = None, take_over: bool = False) -> Plan:
    """Decide one apply against the service as it is (`svc`, None: absent). Raises the error the
    apply would answer: 422 name, 409 version or stack owner, 403 policy (`check`, run on every
    spec about to be written)."""
    check_name(name)
    expected = body.version if body.version is not None else if_match
    if svc is None:
        if expected not in (None, 0):
            raise Conflict(f"service {name!r} does not exist, so it cannot be at version {expected}",
                           [{"field": "version", "problem": f"the service does not exist, so not at version {expected}"}],
                           current_version=0)
        body = autoscaled_replicas(body, None)
        spec = body.spec().model_dump(mode="json")
        if check is not None:
            check(spec)
        return Plan(name, body, None, spec, "created", True)
    body = autoscaled_replicas(body, svc.replicas)
    spec_changes, changes = decide(name, svc.version, svc.replicas, svc.stack, svc.spec, body, expected, take_over)
    spec = body.spec().model_dump(mode="json") if spec_changes else svc.spec
    if spec_changes and check is not None:
        check(spec)
    return Plan(name, body, svc, spec, "updated" if changes else "unchanged", spec_changes)


def autoscaled_replicas(body: ServiceApply, current: int | None) -> ServiceApply:
    """With `autoscale`, the autoscaler owns the count: a new service starts at its `replicas`
    clamped to [min, max]; an apply to an existing one keeps the current count (clamped to the
    new bounds), so re-applying a manifest does not undo the autoscaler's work."""
    a = body.autoscale
    if a is None:
        return body
    n = body.replicas if current is None else current
    wanted = min(max(n, a.min), a.max)
    return body if wanted == body.replicas else body.model_copy(update={"replicas": wanted})


ROUTES_LOCK = 0x44594B52  # "DYKR": the PostgreSQL advisory lock that orders route-taking writes


def check_routes(s: Session, name: str, spec: dict) -> None:
    """409 when another service already exposes one of this spec's (host, path prefix) pairs.
    Reads the other services in the caller's transaction, so a batch (POST /v1/apply) sees the
    services it wrote before this one."""
    if not spec.get("expose"):
        return
    if s.get_bind().dialect.name == "postgresql":
        # two transactions taking one route at once would each read the other's service as not
        # yet there (read committed): writes that take routes queue on one lock, held to commit.
        # SQLite needs none: its writers already queue on the database's write lock.
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROUTES_LOCK})
    others = {r.name: r.spec for r in s.execute(select(Service.name, Service.spec).where(Service.name != name))
              if (r.spec or {}).get("expose")}
    why = routes_core.conflict(name, spec, others, namespaces.parents(s))
    if why:
        raise Conflict(f"service {name!r} cannot take its route: {why}",
                       [{"field": "expose", "problem": why}])


def write(s: Session, p: Plan, *, actor: str, now: float, history_limit: int) -> Service:
    """Make a plan true (its service read locked): the row, a revision for a new spec, events."""
    name, body = p.name, p.body
    if p.spec_changes:
        check_routes(s, name, p.spec)
    if p.svc is None or p.spec_changes or body.replicas > p.svc.replicas:
        namespaces.check_quota(s, name, body.replicas, p.spec)
    if p.svc is None:
        if split(name)[0] != namespaces.DEFAULT:  # default cannot be deleted
            namespaces.get(s, split(name)[0])  # 404 if it is gone (deleted since the request began)
        svc = Service(name=name, namespace=split(name)[0], stack=body.stack, spec=p.spec, replicas=body.replicas, revision=0, generation=1,
                      version=1, created_at=now, updated_at=now, rollout_phase="complete", rollout_reason="")
        s.add(svc)
        s.flush()
        rev = revisions.add(s, svc, p.spec, body.change_cause or "created", now, history_limit)
        svc.revision = rev.number
        stack = f" in stack {body.stack}" if body.stack else ""
        record(s, "service_created", f"service {name} created{stack} with {body.replicas} replica(s), revision 1",
               service=name, actor=actor, now=now)
        return svc
    svc = p.svc
    if p.action == "unchanged":
        return svc
    if p.spec_changes and runtime_view(svc.spec) == runtime_view(p.spec):
        # only autoscale or rebalance settings changed: they steer the server, not the
        # containers, so the running revision takes them in place and nothing restarts
        cause = body.change_cause or revisions.summary(svc.spec, p.spec)
        svc.spec = p.spec
        revisions.replace_spec(s, svc.name, svc.revision, p.spec)
        record(s, "service_updated", f"revision {svc.revision} (no restart): {cause}", service=name, actor=actor, now=now)
    elif p.spec_changes:
        cause = body.change_cause or revisions.summary(svc.spec, p.spec)
        rev = revisions.add(s, svc, p.spec, cause, now, history_limit)
        if svc.rollout_phase in ("complete", "rolled_back") or svc.rollout_from is None:
            svc.rollout_from = svc.revision
        # else a rollout was under way or paused: a failure of this one still returns to the
        # last revision that was fully rolled out, not to the half-done one
        svc.spec, svc.revision = p.spec, rev.number
        svc.rollout_phase, svc.rollout_reason, svc.rollout_started_at = "progressing", "", now
        record(s, "service_updated", f"revision {rev.number}: {cause}", service=name, actor=actor, now=now)
    if body.replicas != svc.replicas:
        record(s, "service_scaled", f"replicas {svc.replicas} -> {body.replicas}", service=name, actor=actor, now=now)
        svc.replicas = body.replicas
    if body.stack != svc.stack:  # only with take_over (owner_conflict)
        record(s, "service_moved", f"stack {svc.stack or '(none)'} -> {body.stack or '(none)'}", service=name,
               actor=actor, now=now)
        svc.stack = body.stack
    svc.generation += 1
    svc.version += 1
    svc.updated_at = now
    return svc


def apply(s: Session, name: str, body: ServiceApply, *, if_match: int | None, actor: str, now: float,
          history_limit: int, check: Callable[[dict], None] | None = None,
          take_over: bool = False) -> tuple[Service, bool]:
    """Create or update. Returns (service, created). Identical specs change nothing."""
    check_name(name)
    p = plan(name, current(s, [name], lock=True).get(name), body, if_match=if_match, check=check,
             take_over=take_over)
    return write(s, p, actor=actor, now=now, history_limit=history_limit), p.svc is None


def plan_many(s: Session, items: list[tuple[str, ServiceApply]], *, lock: bool,
              check: Callable[[dict], None] | None = None, take_over: bool = False) -> list[Plan | DockyardError]:
    """A plan, or the error that refuses it, for every (name, body) of a batch; nothing written."""
    rows = current(s, [n for n, _ in items], lock=lock)
    out: list[Plan | DockyardError] = []
    for name, body in items:
        try:
            out.append(plan(name, rows.get(name), body, check=check, take_over=take_over))
        except DockyardError as exc:
            out.append(exc)
    return out


def write_many(s: Session, plans: list[Plan], *, actor: str, now: float, history_limit: int) -> list[tuple[str, Service]]:
    """Write every plan of a batch in the caller's transaction: (action, service) each."""
    return [(p.action, write(s, p, actor=actor, now=now, history_limit=history_limit)) for p in plans]


def results(s: Session, done: list[tuple[str, Any]], now: float) -> list[dict]:
    """/v1/apply's answer: name, action and the service as GET shows it, per service."""
    live = live_instances(s, [svc.name for _, svc in done])
    return [{"name": split(svc.name)[1], "action": action, "service": service_dict(svc, live[svc.name], now)}
            for action, svc in done]


def unchanged(s: Session, name: str, body: ServiceApply, *, if_match: int | None) -> Service | None:
    """The service, if applying `body` would change nothing (else None), read without locking.

    Re-applying an unchanged manifest is the most common write (CI pipelines, `dockyard apply`
    of a whole stack): answering it from a plain read keeps it out of the database's single
    write lock. A stale version or another stack's service still gets its 409, as from `apply`."""
    check_name(name)
    try:
        svc = read(s, name)
    except NotFound:
        return None
    return svc if is_noop(name, svc.version, svc.replicas, svc.stack, svc.spec, body, if_match) else None


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


def scale(s: Session, name: str, replicas: int, *, if_match: int | None, actor: str, now: float,
          by_autoscaler: bool = False) -> Service:
    svc = load(s, name, lock=True)
    check_version(svc, if_match)
    a = (svc.spec or {}).get("autoscale")
    if a and not by_autoscaler:
        raise Conflict(f"service {split(name)[1]!r} is autoscaled between {a['min']} and {a['max']} replicas: change "
                       "autoscale.min and autoscale.max (or remove autoscale) instead of scaling it by hand",
                       [{"field": "replicas", "problem": "set by the autoscaler"}])
    if replicas > svc.replicas:
        namespaces.check_quota(s, name, replicas, svc.spec)
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
        "id": i.id, "service": split(i.service_name)[1], "namespace": split(i.service_name)[0], "slot": i.slot, "revision": i.revision, "node": i.node_name,
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
        "name": split(svc.name)[1], "namespace": svc.namespace, "stack": svc.stack, "source": svc.source or "api", "replicas": svc.replicas, "revision": svc.revision,
        "generation": svc.generation, "version": svc.version, "spec": svc.spec,
        "status": {"replicas": st.replicas, "running": st.running, "ready": st.ready, "updated": st.updated,
                   "pending": st.pending, "message": st.message},
        "rollout": {"phase": svc.rollout_phase, "reason": svc.rollout_reason},
        "created_at": iso(svc.created_at), "updated_at": iso(svc.updated_at),
    }
