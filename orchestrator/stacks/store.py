"""Stacks in the database: apply one in a transaction, point its services at a release (rollback,
the leader's automatic rollback), uninstall, and the views the API answers.

Each function runs inside one transaction given by the caller. Services are written through
service_ops (same revisions, events, policy, quotas and stack ownership as PUT /v1/services).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import delete as sa_delete, func, select
from sqlalchemy.orm import Session

from orchestrator import namespaces, revisions, service_ops as ops
from orchestrator.errors import Conflict, DockyardError, NotFound
from orchestrator.events import record
from orchestrator.models import Instance, Revision, Service, Stack, StackRelease
from orchestrator.namespaces import key, split
from orchestrator.spec import ServiceApply
from orchestrator.stacks import core


def iso(t: float | None) -> str | None:
    return None if not t else datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def event(s: Session, kind: str, stack: Stack | str, ns: str, message: str, *, actor: str | None, now: float) -> None:
    ev = record(s, kind, message, actor=actor, now=now)
    ev.namespace = ns  # a stack's events belong to its namespace


def load(s: Session, ns: str, name: str, *, lock: bool = False) -> Stack:
    q = select(Stack).where(Stack.key == key(ns, name))
    st = s.scalars(q.with_for_update() if lock else q).first()
    if st is None:
        raise NotFound(f"stack {name!r} not found")
    return st


def find(s: Session, ns: str, name: str, *, lock: bool) -> Stack | None:
    try:
        return load(s, ns, name, lock=lock)
    except NotFound:
        return None


def members(s: Session, ns: str, name: str, *, lock: bool = False) -> dict[str, Service]:
    """key -> the stack's services (its label), in key order."""
    q = select(Service).where(Service.namespace == ns, Service.stack == name).order_by(Service.name)
    return {svc.name: svc for svc in s.scalars(q.with_for_update() if lock else q)}


def release(s: Session, stack_key: str, number: int) -> StackRelease:
    rel = s.scalars(select(StackRelease).where(StackRelease.stack_key == stack_key,
                                               StackRelease.number == number)).first()
    if rel is None:
        raise NotFound(f"stack {split(stack_key)[1]!r} has no release {number}")
    return rel


def busy(st: Stack) -> Conflict:
    msg = (f"stack {st.name!r} is rolling out release {st.release}: another operation is in progress; "
           f"wait until it is deployed or has failed (GET the stack for its state), then retry")
    return Conflict(msg, [{"field": "stack", "problem": msg}], release=st.release, state=st.state)


def record_of(svc: Any) -> dict:
    return {"revision": svc.revision, "replicas": svc.replicas, "spec": svc.spec}


# ------------------------------------------------------------------------------------ apply

@dataclass
class Prepared:
    """An apply decided before anything is written: the service plans, what prune deletes,
    what the new release would record, and whether anything changes at all."""

    stack: Stack | None
    plans: list[ops.Plan]
    prune: list[str]  # service keys
    kept: dict[str, dict]  # short name -> record of services kept with prune false
    entries: list[dict]  # core.service_changes from the current services to the new ones
    values_diff: list[dict]
    changes: bool


def plan(s: Session, ns: str, name: str, items: list[tuple[str, ServiceApply]], values: dict, *, prune: bool,
         atomic: bool, lock: bool, check: Callable[[dict], None] | None) -> tuple[Prepared | None, list]:
    """(the prepared apply, []) or (None, the service plans and errors, index by index)."""
    st = find(s, ns, name, lock=lock)
    outcomes = ops.plan_many(s, [(key(ns, n), b) for n, b in items], lock=lock, check=check)
    if any(isinstance(o, DockyardError) for o in outcomes):
        return None, outcomes
    plans: list[ops.Plan] = outcomes  # type: ignore[assignment]
    now_members = members(s, ns, name, lock=lock)
    listed = {p.name for p in plans}
    extra = [k for k in now_members if k not in listed]
    old = {split(k)[1]: record_of(svc) for k, svc in now_members.items()}
    new = {split(p.name)[1]: {"spec": p.spec, "replicas": p.body.replicas} for p in plans}
    kept = {} if prune else {split(k)[1]: record_of(now_members[k]) for k in extra}
    new.update(kept)
    entries = core.service_changes(old, new)
    current = release(s, st.key, st.release).values if st is not None else {}
    values_diff = core.values_changes(current, values)
    changes = (st is None or core.changed(entries) or bool(values_diff) or st.atomic != atomic)
    return Prepared(st, plans, extra if prune else [], kept, entries, values_diff, changes), []


def commit(s: Session, ns: str, name: str, p: Prepared, *, values: dict, atomic: bool, description: str,
           package: dict | None, actor: str, now: float, history_limit: int) -> tuple[Stack, set[str]]:
    """Write a prepared apply: the services, the pruned ones deleted, a new release, the stack."""
    st = p.stack
    if st is not None and st.state == "rolling":
        raise busy(st)
    written = ops.write_many(s, p.plans, actor=actor, now=now, history_limit=history_limit)
    nodes: set[str] = set()
    for k in p.prune:
        nodes |= ops.delete(s, k, if_match=None, actor=actor, now=now)
    services = {split(svc.name)[1]: record_of(svc) for _, svc in written}
    services.update(p.kept)
    expect = {split(pl.name)[1]: {"revision": svc.revision, "changed": pl.spec_changes}
              for pl, (_, svc) in zip(p.plans, written)}
    expect.update({n: {"revision": r["revision"], "changed": False} for n, r in p.kept.items()})
    rolling = any(w["changed"] for w in expect.values())
    if st is None:
        st = Stack(key=key(ns, name), name=name, namespace=ns, release=0, state="deployed", reason="", atomic=atomic,
                   rollout_from=None, expect={}, started_at=now, version=0, created_at=now, updated_at=now)
        s.add(st)
        s.flush()
        back = None
    else:
        back = core.rollback_source(st.state, st.release, st.rollout_from)
        _supersede(s, st)
    number = next_release(s, st.key)
    summary = ", ".join(f"{e['service']} {e['action']}" for e in p.entries if e["action"] != "unchanged") or \
        ("values changed" if p.values_diff else "no service changed")
    s.add(StackRelease(stack_key=st.key, number=number, status="pending" if rolling else "deployed",
                       services=services, values=values, package=package, description=description or summary,
                       reason="", created_at=now))
    st.release, st.atomic, st.rollout_from, st.expect, st.started_at = number, atomic, back, expect, now
    st.state, st.reason = ("rolling", f"rolling out release {number}") if rolling else ("deployed", "")
    st.version += 1
    st.updated_at = now
    event(s, "stack_released", st, ns, f"stack {name}: release {number}: {summary}", actor=actor, now=now)
    trim(s, st.key, history_limit, protect={number, back})
    return st, nodes


def trim(s: Session, stack_key: str, keep: int, protect: set[int | None]) -> None:
    """Keep the newest `keep` releases (the server's --history-limit, as for revisions), plus the
    ones a rollout may return to."""
    numbers = list(s.scalars(select(StackRelease.number).where(StackRelease.stack_key == stack_key)
                             .order_by(StackRelease.number.desc())))
    drop = [n for n in numbers[keep:] if n not in protect]
    if drop:
        s.execute(sa_delete(StackRelease).where(StackRelease.stack_key == stack_key, StackRelease.number.in_(drop)))


def next_release(s: Session, stack_key: str) -> int:
    return (s.scalar(select(func.max(StackRelease.number)).where(StackRelease.stack_key == stack_key)) or 0) + 1


def _supersede(s: Session, st: Stack) -> None:
    if st.release:
        cur = release(s, st.key, st.release)
        if cur.status in ("pending", "deployed"):
            cur.status = "superseded"


# --------------------------------------------------------------------- point at a release

@dataclass
class Retarget:
    expect: dict[str, dict] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return any(w["changed"] for w in self.expect.values())


def retarget(s: Session, st: Stack, services: dict[str, dict], *, auto: bool, reason: str, actor: str | None,
             now: float, history_limit: int, check: Callable[[dict], None] | None = None) -> Retarget:
    """Make the stack's services what a release recorded: an existing revision with the same
    spec is made current again (its running instances count at once), else a new revision
    with that spec; services the release lacks are deleted, missing ones created; replicas
    as recorded. A service whose revision moves rolls out under its update policy.

    `auto` is the leader's rollback of a failed release (inside its reconcile pass): nothing
    is checked again (it returns to what ran before), the services' phase becomes
    `rolled_back` (not watched again), and a service it cannot restore is reported, not
    raised. Otherwise (POST .../rollback) every check of an apply runs and raises."""
    out = Retarget()
    ns, name = st.namespace, st.name
    now_members = members(s, ns, name, lock=not auto)
    for short, rec in sorted(services.items()):
        k = key(ns, short)
        svc = now_members.pop(k, None)
        try:
            changed = _restore(s, k, svc, name, rec, auto=auto, reason=reason, actor=actor, now=now,
                               history_limit=history_limit, check=check)
        except DockyardError as exc:
            if not auto:
                raise
            out.problems.append(f"service {short}: {exc.message}")
            continue
        svc = s.scalars(select(Service).where(Service.name == k)).first() if svc is None else svc
        out.expect[short] = {"revision": svc.revision if svc is not None else rec["revision"], "changed": changed}
    for k, svc in now_members.items():
        out.nodes |= delete_service(s, svc, actor=actor, now=now, why=f"not in the release of stack {name}")
    return out


def _restore(s: Session, k: str, svc: Service | None, stack: str, rec: dict, *, auto: bool, reason: str,
             actor: str | None, now: float, history_limit: int, check: Callable[[dict], None] | None) -> bool:
    """One service back to a release's record; True when its revision moved (or it was made)."""
    spec, replicas = rec["spec"], rec["replicas"]
    body = ServiceApply.model_validate({**spec, "replicas": replicas, "stack": stack, "change_cause": reason})
    if svc is None:
        other = s.scalars(select(Service).where(Service.name == k)).first()
        if other is not None:
            why = ops.owner_conflict(k, other.stack, stack) or f"service {split(k)[1]!r} exists"
            raise Conflict(why, [{"field": "stack", "problem": why}], owner_stack=other.stack)
        ops.write(s, ops.plan(k, None, body, check=None if auto else check), actor=actor or "dockyard", now=now,
                  history_limit=history_limit)
        return True
    moved = False
    if svc.spec != spec:  # the same spec under another number (a trimmed history) needs no move
        old = s.scalars(select(Revision).where(Revision.service_name == k, Revision.number == rec["revision"])).first()
        if old is not None and old.spec == spec:
            if not auto:
                if check is not None:
                    check(spec)
                ops.check_routes(s, k, spec)
                namespaces.check_quota(s, k, replicas, spec)
            frm = svc.revision
            revisions.activate(s, svc, old.number, now)
            record(s, "rollback", f"{reason}: revision {frm} -> {old.number}", service=k, actor=actor, now=now)
        else:  # the revision was trimmed from the history (or never matched): a new one, same spec
            p = ops.plan(k, svc, body.model_copy(update={"replicas": svc.replicas}), check=None if auto else check,
                         take_over=True)
            ops.write(s, p, actor=actor or "dockyard", now=now, history_limit=history_limit)
        moved = True
        svc.rollout_phase, svc.rollout_reason, svc.rollout_started_at = (
            ("rolled_back", reason, now) if auto else ("progressing", reason, now))
    if svc.replicas != replicas:
        if not auto and replicas > svc.replicas:
            namespaces.check_quota(s, k, replicas, svc.spec)
        record(s, "service_scaled", f"replicas {svc.replicas} -> {replicas} ({reason})", service=k, actor=actor,
               now=now)
        svc.replicas = replicas
        svc.generation += 1
        svc.version += 1
        svc.updated_at = now
    return moved


def delete_service(s: Session, svc: Service, *, actor: str | None, now: float, why: str) -> set[str]:
    """Delete one service (as DELETE /v1/services/{name}): its instances are told to stop, including
    ones made but not yet written in this transaction (the leader's pass)."""
    nodes: set[str] = set()
    for o in [o for o in s.new if isinstance(o, Instance) and o.service_name == svc.name]:
        s.expunge(o)  # made by this very pass: never written, never placed on an agent
    for i in s.scalars(select(Instance).where(Instance.service_name == svc.name, Instance.desired_state == "running")):
        if i.desired_state == "running":
            i.desired_state, i.updated_at = "stopped", now
            if i.node_name:
                nodes.add(i.node_name)
    s.delete(svc)
    record(s, "service_deleted", f"service {svc.name} deleted ({why}); stopping its containers", service=svc.name,
           actor=actor, now=now)
    return nodes


def rollback(s: Session, ns: str, name: str, to: int | None, *, actor: str, now: float, history_limit: int,
             check: Callable[[dict], None] | None) -> tuple[Stack, set[str]]:
    """POST .../rollback: every service back to its revision in release `to` (None: the previous
    one), as one rollout the leader watches (with atomic, a failure returns to where it was)."""
    st = load(s, ns, name, lock=True)
    if st.state == "rolling":
        raise busy(st)
    numbers = list(s.scalars(select(StackRelease.number).where(StackRelease.stack_key == st.key)))
    target = to if to is not None else core.previous_release(numbers, st.release, st.state, st.rollout_from)
    if target is None:
        raise Conflict(f"stack {name!r} has no earlier release to roll back to")
    rel = release(s, st.key, target)
    reason = f"stack {name}: rollback from release {st.release} to release {target}"
    r = retarget(s, st, rel.services, auto=False, reason=reason, actor=actor, now=now, history_limit=history_limit,
                 check=check)
    if not r.changes and target == st.release and st.state == "deployed":
        raise Conflict(f"stack {name!r} already runs release {target}")
    back = core.rollback_source(st.state, st.release, st.rollout_from)
    _supersede(s, st)
    rel.status, rel.reason = ("pending" if r.changes else "deployed"), ""
    st.release, st.rollout_from, st.expect, st.started_at = target, back, r.expect, now
    st.state, st.reason = ("rolling", reason) if r.changes else ("deployed", reason)
    st.version += 1
    st.updated_at = now
    event(s, "stack_rollback", st, ns, reason, actor=actor, now=now)
    return st, r.nodes


def uninstall(s: Session, ns: str, name: str, *, actor: str, now: float) -> set[str]:
    """Delete the stack, its releases and every service it owns."""
    st = load(s, ns, name, lock=True)
    nodes: set[str] = set()
    for svc in members(s, ns, name, lock=True).values():
        nodes |= delete_service(s, svc, actor=actor, now=now, why=f"stack {name} uninstalled")
    for rel in s.scalars(select(StackRelease).where(StackRelease.stack_key == st.key)):
        s.delete(rel)
    s.flush()
    s.delete(st)
    event(s, "stack_deleted", st, ns, f"stack {name} uninstalled", actor=actor, now=now)
    return nodes


def forget_namespaces(s: Session, names: list[str]) -> None:
    """The stacks of namespaces being deleted go with them (the caller deletes their services)."""
    keys = list(s.scalars(select(Stack.key).where(Stack.namespace.in_(names))))
    if keys:
        s.execute(sa_delete(StackRelease).where(StackRelease.stack_key.in_(keys)))
        s.execute(sa_delete(Stack).where(Stack.key.in_(keys)).execution_options(synchronize_session=False))


# ------------------------------------------------------------------------------------ views

def release_dict(rel: StackRelease, *, specs: bool = False) -> dict:
    services = {n: ({"revision": r["revision"], "replicas": r["replicas"], "spec": r["spec"]} if specs
                    else {"revision": r["revision"], "replicas": r["replicas"]})
                for n, r in sorted(rel.services.items())}
    return {"number": rel.number, "status": rel.status, "description": rel.description, "reason": rel.reason,
            "created_at": iso(rel.created_at), "values": rel.values or {}, "package": rel.package,
            "services": services}


def stack_dict(s: Session, st: Stack, now: float) -> dict:
    rel = release(s, st.key, st.release)
    svcs = members(s, st.namespace, st.name)
    live = ops.live_instances(s, list(svcs))
    rows = []
    names = sorted(set(rel.services) | {split(k)[1] for k in svcs})
    for short in names:
        svc = svcs.get(key(st.namespace, short))
        want = (st.expect.get(short) or {}).get("revision") if st.state == "rolling" else None
        want = want or (rel.services.get(short) or {}).get("revision")
        if svc is None:
            rows.append({"name": short, "revision": None, "release_revision": want, "replicas": 0, "ready": 0,
                         "phase": "missing", "reason": "the service is gone"})
            continue
        view = ops.service_dict(svc, live[svc.name], now)
        rows.append({"name": short, "revision": svc.revision, "release_revision": want, "replicas": svc.replicas,
                     "ready": view["status"]["ready"], "phase": svc.rollout_phase, "reason": svc.rollout_reason})
    return {"name": st.name, "namespace": st.namespace, "release": st.release, "state": st.state,
            "reason": st.reason, "atomic": st.atomic, "rollout_from": st.rollout_from, "version": st.version,
            "values": rel.values or {}, "package": rel.package, "description": rel.description,
            "services": rows, "created_at": iso(st.created_at), "updated_at": iso(st.updated_at)}
