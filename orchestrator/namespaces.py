"""Namespaces and spaces: names, the service key, the parent chain, and their rows.

Every service lives in a namespace; `default` exists from the start and is what the
unprefixed API (`/v1/services/...`) means. A namespace may have a parent (then it is also
called a *space*): the gateway serves a request addressed to a space by that space's own
service when it has one and by the nearest ancestor's otherwise (agent/gateway/routing.py).

Inside the server a service is identified by its **key**: its name in `default`, and
`<namespace>/<name>` elsewhere. Instances, revisions and events refer to the key, so the
reconcile loop, the planner and the scheduler need not know about namespaces at all, and a
database made before namespaces existed already means `default` (migration 0004 adds only the
namespace table and columns). The API and the CLI never show a key: they split it again.
"""
from __future__ import annotations

import re
import time
from typing import Iterable, Mapping

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from orchestrator.errors import Conflict, Forbidden, NotFound, ValidationFailed

DEFAULT = "default"
SEP = "/"
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_DEPTH = 32  # a chain longer than this is refused (and never walked further)


def key(namespace: str, name: str) -> str:
    """The service key: `web` in default, `alice/web` in alice."""
    return name if namespace == DEFAULT else f"{namespace}{SEP}{name}"


def split(service_key: str) -> tuple[str, str]:
    """(namespace, name) of a service key."""
    ns, sep, name = service_key.partition(SEP)
    return (ns, name) if sep else (DEFAULT, service_key)


def namespace_of(service_key: str | None) -> str | None:
    return None if service_key is None else split(service_key)[0]


def like(namespace: str) -> str:
    """A LIKE pattern matching the keys of one namespace other than default."""
    return f"{namespace}{SEP}%"


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationFailed(f"invalid namespace name {name!r}",
                               [{"field": field, "problem": "a DNS label: lower case letters, digits and '-', "
                                 "1-63 characters, starting and ending with a letter or digit"}])
    return name


def chain(parents: Mapping[str, str | None], namespace: str) -> list[str]:
    """`namespace`, its parent, …, its root. Pure; stops on a repeat or past MAX_DEPTH, so a
    corrupt map cannot loop."""
    out: list[str] = []
    ns: str | None = namespace
    while ns is not None and ns not in out and len(out) < MAX_DEPTH:
        out.append(ns)
        ns = parents.get(ns)
    return out


def descendants(parents: Mapping[str, str | None], namespace: str) -> list[str]:
    """Every namespace below `namespace`, children before grandchildren."""
    children: dict[str, list[str]] = {}
    for ns, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(ns)
    out, todo = [], sorted(children.get(namespace, []))
    while todo:
        ns = todo.pop(0)
        if ns in out or ns == namespace:
            continue
        out.append(ns)
        todo.extend(sorted(children.get(ns, [])))
    return out


# ---- rows --------------------------------------------------------------------------------

def parents(s: Session) -> dict[str, str | None]:
    from orchestrator.models import Namespace

    return {r.name: r.parent for r in s.execute(select(Namespace.name, Namespace.parent))}


def get(s: Session, name: str):  # type: ignore[no-untyped-def]
    from orchestrator.models import Namespace

    row = s.get(Namespace, name)
    if row is None:
        raise NotFound(f"namespace {name!r} not found")
    return row


def create(s: Session, name: str, parent: str | None, quotas: dict | None, now: float | None = None):  # type: ignore[no-untyped-def]
    from orchestrator.models import Namespace

    check_name(name)
    if s.get(Namespace, name) is not None:
        raise Conflict(f"namespace {name!r} already exists", [{"field": "name", "problem": "exists"}])
    if parent is not None:
        check_name(parent, "parent")
        if s.get(Namespace, parent) is None:
            raise ValidationFailed(f"parent namespace {parent!r} does not exist",
                                   [{"field": "parent", "problem": f"no namespace {parent!r}"}])
        if len(chain(parents(s), parent)) >= MAX_DEPTH:
            raise ValidationFailed(f"namespace {parent!r} is already {MAX_DEPTH} levels deep",
                                   [{"field": "parent", "problem": f"at most {MAX_DEPTH} levels"}])
    row = Namespace(name=name, parent=parent, quotas=quotas or None, created_at=now or time.time())
    s.add(row)
    s.flush()
    return row


def service_counts(s: Session) -> dict[str, int]:
    from orchestrator.models import Service

    return dict(s.execute(select(Service.namespace, func.count()).group_by(Service.namespace)).all())


def removal(s: Session, name: str, force: bool) -> list[str]:
    """The namespaces a delete of `name` removes (it and, forced, every descendant), or why not."""
    if name == DEFAULT:
        raise Conflict("namespace 'default' cannot be deleted", [{"field": "name", "problem": "default"}])
    get(s, name)
    below = descendants(parents(s), name)
    if below and not force:
        raise Conflict(f"namespace {name!r} has child spaces ({', '.join(below)}); delete them first, or "
                       "delete with force=true to remove them and their services too",
                       [{"field": "name", "problem": "has children"}])
    return [name, *below]


def visible(allowed: Iterable[str] | None, namespace: str) -> bool:
    """Whether a token limited to `allowed` namespaces (None: all) may see `namespace`."""
    return allowed is None or namespace in allowed


def key_in(column, namespace: str):  # type: ignore[no-untyped-def]
    """SQL: the service key in `column` belongs to `namespace`."""
    if namespace == DEFAULT:
        return ~column.contains(SEP)
    return column.like(like(namespace))


def keys_in(column, allowed: Iterable[str]):  # type: ignore[no-untyped-def]
    """SQL: the service key in `column` belongs to one of `allowed` (none: nothing)."""
    from sqlalchemy import false, or_

    conds = [key_in(column, ns) for ns in allowed]
    return or_(*conds) if conds else false()


# ---- quotas ------------------------------------------------------------------------------

QUOTA_KEYS = ("instances", "cpus", "memory")
QUOTA_LOCK = 0x44595153  # "DYQS": with the namespace's hash, the advisory lock of its quota


def check_quota(s: Session, service_key: str, replicas: int, spec: Mapping) -> None:
    """Refuse (403, reason quota) a service of `replicas` x `spec` that would take its
    namespace past its quotas: instances, cpus and memory summed over every service's
    desired replicas (a service without cpus or memory counts 0 of them)."""
    from orchestrator.models import Namespace, Service

    ns = split(service_key)[0]
    row = s.get(Namespace, ns)
    quotas = (row.quotas or {}) if row is not None else {}
    if not quotas:
        return
    if s.get_bind().dialect.name == "postgresql":
        # writes in one namespace with quotas queue here, so two cannot each see room for itself
        # (read committed); SQLite's writers already queue on its write lock
        s.execute(text("SELECT pg_advisory_xact_lock(:a, hashtext(:ns))"), {"a": QUOTA_LOCK, "ns": ns})
    used = {"instances": 0, "cpus": 0.0, "memory": 0}

    def add(n: int, sp: Mapping) -> None:
        res = (sp or {}).get("resources") or {}
        used["instances"] += n
        used["cpus"] += n * float(res.get("cpus") or 0)
        used["memory"] += n * int(res.get("memory") or 0)

    add(replicas, spec)
    for other in s.execute(select(Service.replicas, Service.spec).where(Service.namespace == ns,
                                                                           Service.name != service_key)):
        add(other.replicas, other.spec)
    over = [f"{k}: {used[k]:g} > {quotas[k]:g}" for k in QUOTA_KEYS
            if quotas.get(k) is not None and used[k] > quotas[k]]
    if over:
        why = f"namespace {ns!r} would exceed its quota ({'; '.join(over)})"
        raise Forbidden(why, [{"field": "replicas" if "instances" in over[0] else "resources", "problem": why}],
                        reason="quota")
