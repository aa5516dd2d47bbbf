"""Revisions: immutable numbered snapshots of a service's spec, their history and diffs."""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from orchestrator.errors import NotFound
from orchestrator.models import Instance, Revision, Service


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or ({prefix: {}} if prefix else {})
    return {prefix: d}


def diff(a: dict, b: dict) -> list[dict[str, Any]]:
    """Field-by-field changes from spec a to spec b, dotted paths, sorted."""
    fa, fb = flatten(a), flatten(b)
    changes = []
    keys = fa.keys() | fb.keys()
    for key in sorted(keys):
        if fa.get(key) == {} or fb.get(key) == {}:
            # an empty mapping on one side: its entries on the other side already tell the change
            if any(k.startswith(key + ".") for k in keys):
                continue
        if fa.get(key, None) != fb.get(key, None) or (key in fa) != (key in fb):
            changes.append({"field": key, "from": fa.get(key), "to": fb.get(key)})
    return changes


def summary(a: dict | None, b: dict) -> str:
    if a is None:
        return "created"
    changes = diff(a, b)
    parts = []
    for c in changes[:4]:
        if c["field"] == "image":
            parts.append(f"image {c['from']} -> {c['to']}")
        else:
            parts.append(f"{c['field']} changed")
    more = f" (+{len(changes) - 4} more)" if len(changes) > 4 else ""
    return ", ".join(parts) + more


def add(s: Session, svc: Service, spec: dict, cause: str, now: float, keep: int) -> Revision:
    last = s.scalar(select(func.max(Revision.number)).where(Revision.service_name == svc.name)) or 0
    rev = Revision(service_name=svc.name, number=last + 1, spec=spec, change_cause=cause, created_at=now)
    s.add(rev)
    s.flush()
    trim(s, svc.name, keep, protect={svc.revision, rev.number})
    return rev


def replace_spec(s: Session, service: str, number: int, spec: dict) -> None:
    """A revision takes a spec that differs from its own in control fields only (spec.CONTROL_FIELDS)."""
    rev = s.scalars(select(Revision).where(Revision.service_name == service, Revision.number == number)).first()
    if rev is not None:
        rev.spec = spec


def trim(s: Session, service: str, keep: int, protect: set[int]) -> None:
    """Keep the newest `keep` revisions, plus any that instances still run or that is current."""
    numbers = list(s.scalars(select(Revision.number).where(Revision.service_name == service).order_by(Revision.number.desc())))
    in_use = set(s.scalars(select(Instance.revision).where(Instance.service_name == service).distinct()))
    drop = [n for n in numbers[keep:] if n not in protect and n not in in_use]
    if drop:
        s.execute(delete(Revision).where(Revision.service_name == service, Revision.number.in_(drop)))


def get(s: Session, service: str, number: int) -> Revision:
    rev = s.scalars(select(Revision).where(Revision.service_name == service, Revision.number == number)).first()
    if rev is None:
        raise NotFound(f"service {service!r} has no revision {number}")
    return rev


def activate(s: Session, svc: Service, number: int, now: float) -> None:
    """Make an existing revision the one instances should run (rollback, or undo of a rollout)."""
    rev = get(s, svc.name, number)
    svc.rollout_from = svc.revision
    svc.revision, svc.spec = rev.number, rev.spec
    svc.generation += 1
    svc.version += 1
    svc.rollout_started_at, svc.updated_at = now, now


def as_dict(r: Revision, current: int) -> dict:
    return {
        "number": r.number, "change_cause": r.change_cause, "created_at": r.created_at,
        "current": r.number == current, "spec": r.spec,
    }
