"""Routes for server-side stacks: apply a whole application in one transaction, its releases,
their diffs, rollback, uninstall (orchestrator/stacks/).

Mounted at /v1 (namespace default) and at /v1/namespaces/{ns} (api/app.py), as services are.
"""
from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from orchestrator import policy
from orchestrator.api import apply as apply_api
from orchestrator.api.deps import State, YamlRoute, namespace, role, state
from orchestrator.auth import Principal
from orchestrator.bounds import INT32_MAX
from orchestrator.errors import DockyardError, ValidationFailed
from orchestrator.models import Stack, StackRelease
from orchestrator.namespaces import key
from orchestrator.stacks import core, store

router = APIRouter(prefix="/stacks", tags=["stacks"], route_class=YamlRoute)
StackName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length=63,
                                description="the stack's name (a DNS label)")]
ReleaseNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="a release number (1, 2, ...)")]


class StackPackage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=128)
    version: str = Field(default="", max_length=64)


class StackApply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[Any] = Field(min_length=1, max_length=apply_api.MAX_SERVICES, description=(
        "each: a `name` plus the body of PUT /v1/services/{name}; `stack` may be left out (it is this stack)"),
        examples=[[{"name": "web", "image": "nginx:1.27", "replicas": 2}]])
    values: dict[str, Any] = Field(default_factory=dict, description="the values the services were rendered "
                                   "with: recorded in the release, shown and diffed")
    prune: bool = Field(default=True, description="delete the stack's services this version no longer lists")
    atomic: bool = Field(default=True, description="a release whose rollout fails anywhere returns the whole "
                         "stack to the release it came from")
    description: str | None = Field(default=None, max_length=1024, description="why: recorded on the release")
    package: StackPackage | None = Field(default=None, description="the package it was rendered from")
    dry_run: bool = Field(default=False, description="answer what would change; write nothing")


class StackRollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    release: int | None = Field(default=None, ge=1, le=INT32_MAX,
                                description="omitted: the release before the current one")


class StackOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str
    release: int
    state: str = Field(description="deployed | rolling | failed | rolled_back")
    reason: str
    atomic: bool
    services: list[dict[str, Any]]


class StackApplyOut(BaseModel):
    action: str = Field(description="created | updated | unchanged (with dry_run: what would be done)")
    release: int | None
    changes: list[dict[str, Any]]
    values_changes: list[dict[str, Any]]
    dry_run: bool = False
    stack: StackOut | None


def _view(st: State, ns: str, name: str) -> dict:
    return st.db.run(lambda s: store.stack_dict(s, store.load(s, ns, name), time.time()))


def _apply(st: State, ns: str, name: str, body: StackApply, p: Principal) -> tuple[dict, bool]:
    items, refused = apply_api.parse(body.services, body.description)
    ok = []
    for i, n, b in items:
        if b.stack not in (None, name):
            why = f"a service of stack {name!r} cannot name stack {b.stack!r}; leave `stack` out"
            refused.append(apply_api.Refusal(i, n, ValidationFailed, why, [(["stack"], why)]))
        else:
            ok.append((i, n, b.model_copy(update={"stack": name})))
    check = policy.checker(st.settings, p)
    values = body.values
    package = body.package.model_dump() if body.package else None
    now = time.time()

    def decide(s, lock: bool) -> store.Prepared:  # type: ignore[no-untyped-def]
        prep, outcomes = store.plan(s, ns, name, [(n, b) for _, n, b in ok], values, prune=body.prune,
                                    atomic=body.atomic, lock=lock, check=check)
        bad = refused + [apply_api.refusal_of(i, n, o) for (i, n, _), o in zip(ok, outcomes)
                         if isinstance(o, DockyardError)]
        if bad:
            raise apply_api.refuse(bad, len(body.services))
        assert prep is not None
        return prep

    def answer(s, prep: store.Prepared, action: str, number: int | None, dry: bool = False) -> dict:  # type: ignore[no-untyped-def]
        view = store.stack_dict(s, prep.stack, time.time()) if prep.stack is not None else None
        return {"action": action, "release": number, "changes": prep.entries, "values_changes": prep.values_diff,
                "dry_run": dry, "stack": view}

    def look(s):  # type: ignore[no-untyped-def]
        # refusals, dry runs and an unchanged stack are answered from a plain read
        prep = decide(s, lock=False)
        if body.dry_run:
            nxt = store.next_release(s, key(ns, name))
            action = "created" if prep.stack is None else "updated" if prep.changes else "unchanged"
            return answer(s, prep, action, nxt if prep.changes else prep.stack.release, dry=True)  # type: ignore[union-attr]
        if not prep.changes:
            return answer(s, prep, "unchanged", prep.stack.release)  # type: ignore[union-attr]
        if prep.stack is not None and prep.stack.state == "rolling":
            raise store.busy(prep.stack)
        return None

    out = st.db.run(look)
    if out is not None:
        return out, False

    def write(s):  # type: ignore[no-untyped-def]
        prep = decide(s, lock=True)  # again, under the rows' locks
        if not prep.changes:
            return answer(s, prep, "unchanged", prep.stack.release), set(), False  # type: ignore[union-attr]
        created = prep.stack is None
        stack, nodes = store.commit(s, ns, name, prep, values=values, atomic=body.atomic,
                                    description=body.description or "", package=package, actor=p.label, now=now,
                                    history_limit=st.settings.history_limit)
        prep.stack = stack
        return answer(s, prep, "created" if created else "updated", stack.release), nodes, created

    out, nodes, created = st.db.run(write)
    if nodes:
        st.hub.bump(nodes)
    st.loop.kick()
    return out, created


@router.get("", response_model=list[StackOut])
def list_stacks(st: State = Depends(state), _: Principal = Depends(role("viewer")),
                ns: str = Depends(namespace)) -> list[dict]:
    """Every stack of the namespace: release, state, and each service's status."""
    def read(s):  # type: ignore[no-untyped-def]
        now = time.time()
        return [store.stack_dict(s, x, now)
                for x in s.scalars(select(Stack).where(Stack.namespace == ns).order_by(Stack.name))]

    return st.db.run(read)


@router.get("/{name}", response_model=StackOut)
def get_stack(name: StackName, st: State = Depends(state), _: Principal = Depends(role("viewer")),
              ns: str = Depends(namespace)) -> dict:
    """One stack: its release, state (deployed, rolling, failed, rolled_back) and why, values,
    and per service its revision, the release's revision, replicas, ready and rollout phase."""
    return _view(st, ns, name)


@router.put("/{name}", response_model=StackApplyOut, status_code=200,
            responses={201: {"description": "created", "model": StackApplyOut}})
async def put_stack(name: StackName, body: StackApply, response: Response, st: State = Depends(state),
                    p: Principal = Depends(role("operator")), ns: str = Depends(namespace)) -> dict:
    """Apply the whole application in one transaction: every service valid and allowed, or nothing
    changes (a refusal names each refused service). A change makes a new release; services the
    body no longer lists are deleted (`prune`, default on). While a release rolls out, a change
    is refused with 409 (an unchanged body is answered 200)."""
    out, created = await run_in_threadpool(_apply, st, ns, name, body, p)
    response.status_code = 201 if created else 200
    return out


@router.delete("/{name}", status_code=202)
def delete_stack(name: StackName, st: State = Depends(state), p: Principal = Depends(role("operator")),
                 ns: str = Depends(namespace)) -> dict:
    """Uninstall: the stack, its releases and all its services (their containers stop in the background)."""
    nodes = st.db.run(lambda s: store.uninstall(s, ns, name, actor=p.label, now=time.time()))
    st.hub.bump(nodes)
    st.loop.kick()
    return {"name": name, "namespace": ns, "deleted": True}


@router.get("/{name}/releases")
def list_releases(name: StackName, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                  ns: str = Depends(namespace)) -> list[dict]:
    """Every release, newest first: number, status, description, values, each service's revision."""
    def read(s):  # type: ignore[no-untyped-def]
        stack = store.load(s, ns, name)
        rels = s.scalars(select(StackRelease).where(StackRelease.stack_key == stack.key)
                         .order_by(StackRelease.number.desc()))
        return [dict(store.release_dict(r), current=r.number == stack.release) for r in rels]

    return st.db.run(read)


@router.get("/{name}/releases/{number}")
def get_release(name: StackName, number: ReleaseNumber, st: State = Depends(state),
                _: Principal = Depends(role("viewer")), ns: str = Depends(namespace)) -> dict:
    """One release, with each service's spec."""
    def read(s):  # type: ignore[no-untyped-def]
        stack = store.load(s, ns, name)
        r = store.release(s, stack.key, number)
        return dict(store.release_dict(r, specs=True), current=r.number == stack.release)

    return st.db.run(read)


@router.get("/{name}/releases/{a}/diff/{b}")
def diff_releases(name: StackName, a: ReleaseNumber, b: ReleaseNumber, st: State = Depends(state),
                  _: Principal = Depends(role("viewer")), ns: str = Depends(namespace)) -> dict:
    """What changes from release a to release b: per service created / updated / scaled /
    deleted / unchanged with the spec's field changes and revisions, and the values' changes."""
    def read(s):  # type: ignore[no-untyped-def]
        stack = store.load(s, ns, name)
        ra, rb = store.release(s, stack.key, a), store.release(s, stack.key, b)
        return {"from": a, "to": b, "services": core.service_changes(ra.services, rb.services),
                "values": core.values_changes(ra.values, rb.values)}

    return st.db.run(read)


@router.post("/{name}/rollback", response_model=StackOut)
def rollback_stack(name: StackName, body: StackRollbackIn | None = None, st: State = Depends(state),
                   p: Principal = Depends(role("operator")), ns: str = Depends(namespace)) -> dict:
    """Every service back to its revision in release N (default: the previous release), as one
    rollout the leader watches; 409 while a release rolls out, or when it already runs N."""
    check = policy.checker(st.settings, p)
    to = body.release if body else None
    _, nodes = st.db.run(lambda s: store.rollback(s, ns, name, to, actor=p.label, now=time.time(),
                                                  history_limit=st.settings.history_limit, check=check))
    st.hub.bump(nodes)
    st.loop.kick()
    return _view(st, ns, name)
