"""Namespaces and spaces: create (with an optional parent), list as a tree, read, delete.

A namespace with a parent is a space: the gateway serves a request addressed to it by its own
services and falls back to its ancestors' for the others (docs/namespaces.md). Creating and
deleting namespaces is an admin's; a token limited to namespaces sees only those.
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select

from orchestrator import namespaces as nsops
from orchestrator import service_ops as ops
from orchestrator.api.deps import NamespaceName, State, YamlRoute, role, state
from orchestrator.auth import Principal
from orchestrator.errors import Forbidden, NotFound
from orchestrator.events import record
from orchestrator.models import Namespace, Service
from orchestrator.spec import parse_memory as parse_quantity
from orchestrator.stacks import store as stacks

router = APIRouter(prefix="/v1", tags=["namespaces"], route_class=YamlRoute)


class Quotas(BaseModel):
    """What the services of a namespace may ask for in total (desired replicas x resources)."""

    model_config = ConfigDict(extra="forbid")
    instances: int | None = Field(default=None, ge=0, le=1_000_000, description="replicas summed")
    cpus: float | None = Field(default=None, ge=0, le=1_000_000, description="replicas x resources.cpus summed")
    memory: int | None = Field(default=None, ge=0, le=2**62, description="bytes (or '8Gi'): replicas x resources.memory summed")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> int | None:
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        try:
            return parse_quantity(v)
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    def stored(self) -> dict | None:
        out = self.model_dump(exclude_none=True)
        return out or None


class NamespaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, description="a DNS label", examples=["alice"])
    parent: str | None = Field(default=None, max_length=63, description=(
        "makes it a space of that namespace: the gateway falls back to the parent's services"),
        examples=["dev"])
    quotas: Quotas | None = None


class NamespacePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quotas: Quotas | None = Field(description="the new quotas (null: none); what already runs is kept, "
                                              "what would exceed them is refused from now on")


class NamespaceOut(BaseModel):
    name: str
    parent: str | None
    chain: list[str] = Field(description="itself, its parent, ..., its root: where the gateway looks, in order")
    children: list[str]
    services: int
    created_at: str | None
    quotas: dict[str, Any] | None = None
    inherited: list[dict[str, str]] | None = Field(default=None, description=(
        "GET of one namespace: the services it does not have that an ancestor has, and from which one "
        "(what a request to this space falls back to)"))


def _out(row: Any, parents: dict[str, str | None], counts: dict[str, int]) -> dict:
    children = sorted(n for n, p in parents.items() if p == row.name)
    return {"name": row.name, "parent": row.parent, "chain": nsops.chain(parents, row.name), "children": children,
            "services": counts.get(row.name, 0), "created_at": ops.iso(row.created_at) if row.created_at else None,
            "quotas": row.quotas}


def _seen(p: Principal, name: str) -> None:
    if not p.sees(name):
        raise NotFound(f"namespace {name!r} not found")


@router.post("/namespaces", status_code=201, response_model=NamespaceOut)
def create_namespace(body: NamespaceIn, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    """Create a namespace; with `parent`, a space whose requests fall back to the parent's services."""
    if p.namespaces is not None:
        raise Forbidden("a token limited to namespaces cannot create namespaces")

    def write(s):  # type: ignore[no-untyped-def]
        row = nsops.create(s, body.name, body.parent, body.quotas.stored() if body.quotas else None, time.time())
        record(s, "namespace_created", f"namespace {body.name} created"
               + (f" as a space of {body.parent}" if body.parent else ""), actor=p.label)
        return _out(row, nsops.parents(s), {})

    out = st.db.run(write)
    st.routes.changed()  # type: ignore[attr-defined]  # the gateways' spaces map
    return out


@router.get("/namespaces", response_model=list[NamespaceOut])
def list_namespaces(st: State = Depends(state), p: Principal = Depends(role("viewer"))) -> list[dict]:
    """Every namespace the token may see, parents before their children (a depth-first tree)."""
    def read(s):  # type: ignore[no-untyped-def]
        rows = {r.name: r for r in s.scalars(select(Namespace))}
        parents = {n: r.parent for n, r in rows.items()}
        counts = nsops.service_counts(s)
        roots = sorted(n for n, par in parents.items() if par is None or par not in parents)
        order = []
        for root in roots:
            order += [root, *nsops.descendants(parents, root)]
        return [_out(rows[n], parents, counts) for n in order if p.sees(n)]

    return st.db.run(read)


@router.get("/namespaces/{ns}", response_model=NamespaceOut)
def get_namespace(ns: str = NamespaceName, st: State = Depends(state), p: Principal = Depends(role("viewer"))) -> dict:
    _seen(p, ns)

    def read(s):  # type: ignore[no-untyped-def]
        parents = nsops.parents(s)
        out = _out(nsops.get(s, ns), parents, nsops.service_counts(s))
        chain = nsops.chain(parents, ns)
        by_ns: dict[str, set[str]] = {}
        for key in s.scalars(select(Service.name).where(Service.namespace.in_(chain))):
            owner, name = nsops.split(key)
            by_ns.setdefault(owner, set()).add(name)
        own, inherited = by_ns.get(ns, set()), {}
        for ancestor in chain[1:]:
            for name in sorted(by_ns.get(ancestor, set()) - own):
                inherited.setdefault(name, ancestor)
        out["inherited"] = [{"name": n, "from": a} for n, a in sorted(inherited.items())]
        return out

    return st.db.run(read)


@router.patch("/namespaces/{ns}", response_model=NamespaceOut)
def patch_namespace(body: NamespacePatch, ns: str = NamespaceName, st: State = Depends(state),
                    p: Principal = Depends(role("admin"))) -> dict:
    """Set (or clear, with null) a namespace's quotas."""
    _seen(p, ns)
    if p.namespaces is not None:
        raise Forbidden("a token limited to namespaces cannot change quotas")

    def write(s):  # type: ignore[no-untyped-def]
        row = nsops.get(s, ns)
        row.quotas = body.quotas.stored() if body.quotas else None
        record(s, "namespace_updated", f"namespace {ns} quotas: {row.quotas or 'none'}", actor=p.label)
        s.flush()
        return _out(row, nsops.parents(s), nsops.service_counts(s))

    return st.db.run(write)


@router.delete("/namespaces/{ns}", status_code=202)
def delete_namespace(ns: str = NamespaceName, force: bool = Query(False, description=(
        "also delete its child spaces, and every service in it and in them")),
        st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    """Delete a namespace and its services (their containers are stopped). A namespace with
    child spaces is refused (409) unless `force`."""
    _seen(p, ns)
    if p.namespaces is not None:
        raise Forbidden("a token limited to namespaces cannot delete namespaces")
    now = time.time()

    def write(s):  # type: ignore[no-untyped-def]
        gone = nsops.removal(s, ns, force)
        nodes: set[str] = set()
        services = s.scalars(select(Service.name).where(Service.namespace.in_(gone))).all()
        for key in services:
            nodes |= ops.delete(s, key, if_match=None, actor=p.label, now=now)
        stacks.forget_namespaces(s, gone)  # server-side stacks and their releases (docs/releases.md)
        for name in reversed(gone):  # children before their parents
            s.execute(delete(Namespace).where(Namespace.name == name))
        record(s, "namespace_deleted", f"namespace {ns} deleted" + (
            f" with {', '.join(gone[1:])}" if len(gone) > 1 else "") + f" ({len(services)} service(s))",
            actor=p.label, now=now)
        return gone, nodes, len(services)

    gone, nodes, count = st.db.run(write)
    st.hub.bump(nodes)
    st.loop.kick()
    st.routes.changed()  # type: ignore[attr-defined]
    return {"name": ns, "deleted": gone, "services_deleted": count,
            "message": "namespace deleted; its services' containers are being stopped"}
