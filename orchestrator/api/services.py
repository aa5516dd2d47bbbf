"""Routes for services: apply, read, patch, scale, delete, instances, revisions, rollback."""
from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import policy, revisions, service_ops as ops
from orchestrator.bounds import INT32_MAX
from orchestrator.errors import NotFound
from orchestrator.api.deps import State, YamlRoute, if_match, namespace, role, state
from orchestrator.auth import Principal
from orchestrator.models import Instance, Revision, Service
from orchestrator.namespaces import key
from orchestrator.spec import Scale, ServiceApply
from sqlalchemy import select

# error responses are documented per operation by api/openapi.py, derived from the dependencies
# mounted twice (api/app.py): at /v1/services (namespace default) and at /v1/namespaces/{ns}/services
router = APIRouter(prefix="/services", tags=["services"], route_class=YamlRoute)
# revision numbers start at 1 and live in an Integer column
RevisionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="a revision number (1, 2, ...)")]


class ServiceOut(BaseModel):
    name: str
    namespace: str
    stack: str | None
    source: str = "api"  # 'docker-api': made through the Docker Engine API (docs/docker-api.md)
    replicas: int
    revision: int
    generation: int
    version: int
    spec: dict[str, Any]
    status: dict[str, Any]
    rollout: dict[str, Any]
    created_at: str | None
    updated_at: str | None


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    revision: int | None = Field(default=None, ge=1, le=INT32_MAX,
                                 description="omitted: the revision before the current one")


def _one(st: State, name: str) -> dict:
    def read(s):  # type: ignore[no-untyped-def]
        svc = ops.read(s, name)
        return ops.service_dict(svc, ops.live_instances(s, [name])[name], time.time())

    return st.db.run(read)


async def change_cause(x_change_cause: str | None = Header(default=None, alias="X-Change-Cause",
                                                     description="why: recorded on the new revision")) -> str | None:
    if x_change_cause is None or not x_change_cause.strip():
        return None
    cause = x_change_cause.strip()
    if len(cause) > 1024:
        from orchestrator.errors import ValidationFailed

        raise ValidationFailed("X-Change-Cause is longer than 1024 characters",
                               [{"field": "X-Change-Cause", "problem": "at most 1024 characters"}])
    return cause


def _etag(response: Response, out: dict) -> JSONResponse:
    """The service as JSON with its version as ETag. Built here, not by FastAPI from the
    response model: validating the dict we just built cost a quarter of a GET."""
    return JSONResponse(out, status_code=response.status_code or 200, headers={"ETag": f'"{out["version"]}"'})


@router.get("", response_model=list[ServiceOut])
def list_services(stack: str | None = None, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                  ns: str = Depends(namespace)):
    def read(s):  # type: ignore[no-untyped-def]
        q = select(Service).where(Service.namespace == ns).order_by(Service.name)
        if stack:
            q = q.where(Service.stack == stack)
        svcs = list(s.scalars(q))
        live = ops.live_instances(s, [x.name for x in svcs])
        now = time.time()
        return [ops.service_dict(x, live[x.name], now) for x in svcs]

    return st.db.run(read)


async def _cached_one(st: State, name: str) -> dict:
    """_one, answered from the read cache (orchestrator/read_cache.py) when nothing was written since."""
    now = time.time()
    out = st.reads.get(name, now)
    if out is None:
        stamp = st.reads.stamp(name)
        out = await run_in_threadpool(_one, st, name)
        st.reads.put(name, stamp, now, out)
    return out


@router.get("/{name}", response_model=ServiceOut)
async def get_service(name: str, response: Response, st: State = Depends(state),
                      _: Principal = Depends(role("viewer")), ns: str = Depends(namespace)):
    return _etag(response, await _cached_one(st, key(ns, name)))


@router.put("/{name}", response_model=ServiceOut, status_code=200, responses={201: {"description": "created", "model": ServiceOut}})
async def put_service(name: str, body: ServiceApply, response: Response, match: int | None = Depends(if_match),
                      cause: str | None = Depends(change_cause), st: State = Depends(state),
                      p: Principal = Depends(role("operator")), ns: str = Depends(namespace)):
    if cause and body.change_cause is None:  # the body's field wins over the header
        body = body.model_copy(update={"change_cause": cause})
    name = key(ns, name)
    now = time.time()
    cached = st.reads.get(name, now)
    if cached is None and st.reads.max_age > 0:
        # read (and cache) the service to compare: an unchanged apply is answered without the
        # write path (its lock, its transaction), even when no GET warmed the cache before it
        stamp = st.reads.stamp(name)
        try:
            cached = await run_in_threadpool(_one, st, name)
        except NotFound:
            cached = None  # a new service: the write path creates it
        else:
            st.reads.put(name, stamp, now, cached)
    if cached is not None and ops.is_noop(name, cached["version"], cached["replicas"], cached["stack"],
                                          cached["spec"], body, match):
        return _etag(response, cached)  # nothing to write, nothing for the loop to do
    # with the cache on, the service was just compared as it is now (read, or cached with nothing
    # written since): _put goes straight to the write
    return await run_in_threadpool(_put, st, name, body, response, match, p, st.reads.max_age > 0)


def _put(st: State, name: str, body: ServiceApply, response: Response, match: int | None, p: Principal,
         compared: bool = False) -> JSONResponse:
    now = time.time()

    def same(s):  # type: ignore[no-untyped-def]
        svc = ops.unchanged(s, name, body, if_match=match)
        return None if svc is None else ops.service_dict(svc, ops.live_instances(s, [name])[name], time.time())

    if not compared:
        out = st.db.run(same)
        if out is not None:
            return _etag(response, out)  # nothing to write, nothing for the loop to do
    check = policy.checker(st.settings, p)

    def write(s):  # type: ignore[no-untyped-def]
        # the answer is read in the write's transaction: what was written, with no second one
        svc, created = ops.apply(s, name, body, if_match=match, actor=p.label, now=now,
                                 history_limit=st.settings.history_limit, check=check)
        return ops.service_dict(svc, ops.live_instances(s, [name])[name], time.time()), created

    out, created = st.db.run(write)
    st.loop.kick()
    response.status_code = 201 if created else 200
    return _etag(response, out)


@router.patch("/{name}", response_model=ServiceOut)
def patch_service(name: str, response: Response, body: dict[str, Any] = Body(..., examples=[{"replicas": 5}]),
                  match: int | None = Depends(if_match), cause: str | None = Depends(change_cause),
                  st: State = Depends(state), p: Principal = Depends(role("operator")), ns: str = Depends(namespace)):
    now, name = time.time(), key(ns, name)
    if cause and isinstance(body, dict) and "change_cause" not in body:
        body = {**body, "change_cause": cause}
    check = policy.checker(st.settings, p)
    st.db.run(lambda s: ops.patch(s, name, body, if_match=match, actor=p.label, now=now,
                                  history_limit=st.settings.history_limit, check=check))
    st.loop.kick()
    return _etag(response, _one(st, name))


@router.post("/{name}/scale", response_model=ServiceOut)
def scale_service(name: str, body: Scale, response: Response, match: int | None = Depends(if_match),
                  st: State = Depends(state), p: Principal = Depends(role("operator")), ns: str = Depends(namespace)):
    name = key(ns, name)
    st.db.run(lambda s: ops.scale(s, name, body.replicas, if_match=match, actor=p.label, now=time.time()))
    st.loop.kick()
    return _etag(response, _one(st, name))


@router.delete("/{name}", status_code=202)
def delete_service(name: str, match: int | None = Depends(if_match), st: State = Depends(state),
                   p: Principal = Depends(role("operator")), ns: str = Depends(namespace)) -> dict:
    nodes = st.db.run(lambda s: ops.delete(s, key(ns, name), if_match=match, actor=p.label, now=time.time()))
    st.hub.bump(nodes)
    st.loop.kick()
    return {"name": name, "namespace": ns, "deleted": True, "message": "service deleted; its containers are being stopped"}


@router.get("/{name}/instances")
def service_instances(name: str, all: bool = False, st: State = Depends(state),
                      _: Principal = Depends(role("viewer")), ns: str = Depends(namespace)) -> list[dict]:
    name = key(ns, name)

    def read(s):  # type: ignore[no-untyped-def]
        ops.load(s, name)
        q = select(Instance).where(Instance.service_name == name).order_by(Instance.slot, Instance.created_at)
        if not all:
            q = q.where(Instance.desired_state == "running")
        return [ops.instance_dict(i) for i in s.scalars(q)]

    return st.db.run(read)


@router.get("/{name}/revisions")
def list_revisions(name: str, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                   ns: str = Depends(namespace)) -> list[dict]:
    name = key(ns, name)

    def read(s):  # type: ignore[no-untyped-def]
        svc = ops.load(s, name)
        revs = s.scalars(select(Revision).where(Revision.service_name == name).order_by(Revision.number.desc()))
        return [revisions.as_dict(r, svc.revision) for r in revs]

    return st.db.run(read)


@router.get("/{name}/revisions/{number}")
def get_revision(name: str, number: RevisionNumber, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                 ns: str = Depends(namespace)) -> dict:
    name = key(ns, name)

    def read(s):  # type: ignore[no-untyped-def]
        svc = ops.load(s, name)
        return revisions.as_dict(revisions.get(s, name, number), svc.revision)

    return st.db.run(read)


@router.get("/{name}/revisions/{a}/diff/{b}")
def diff_revisions(name: str, a: RevisionNumber, b: RevisionNumber, st: State = Depends(state),
                   _: Principal = Depends(role("viewer")), ns: str = Depends(namespace)) -> dict:
    name = key(ns, name)

    def read(s):  # type: ignore[no-untyped-def]
        ops.load(s, name)
        ra, rb = revisions.get(s, name, a), revisions.get(s, name, b)
        return {"from": a, "to": b, "changes": revisions.diff(ra.spec, rb.spec)}

    return st.db.run(read)


def _rollout(st: State, name: str) -> dict:
    def read(s):  # type: ignore[no-untyped-def]
        svc = ops.load(s, name)
        return ops.rollout_dict(svc, ops.live_instances(s, [name])[name], time.time())

    return st.db.run(read)


@router.get("/{name}/rollout")
def rollout_status(name: str, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                   ns: str = Depends(namespace)) -> dict:
    """Phase (progressing, complete, paused, rolled_back), why it stopped, old/new/ready counts."""
    return _rollout(st, key(ns, name))


@router.post("/{name}/rollout/pause")
def pause_rollout(name: str, st: State = Depends(state), p: Principal = Depends(role("operator")),
                  ns: str = Depends(namespace)) -> dict:
    """Roll no further (lost instances are still replaced). 409 unless a rollout is progressing."""
    name = key(ns, name)
    st.db.run(lambda s: ops.pause_rollout(s, name, actor=p.label, now=time.time()))
    st.loop.kick()
    return _rollout(st, name)


@router.post("/{name}/rollout/resume")
def resume_rollout(name: str, st: State = Depends(state), p: Principal = Depends(role("operator")),
                   ns: str = Depends(namespace)) -> dict:
    """Carry on a paused rollout; failed new instances are replaced and the deadline restarts."""
    name = key(ns, name)
    st.db.run(lambda s: ops.resume_rollout(s, name, actor=p.label, now=time.time()))
    st.loop.kick()
    return _rollout(st, name)


@router.post("/{name}/rollback", response_model=ServiceOut)
def rollback(name: str, response: Response, body: RollbackIn | None = None, st: State = Depends(state),
             p: Principal = Depends(role("operator")), ns: str = Depends(namespace)):
    name = key(ns, name)
    check = policy.checker(st.settings, p)
    st.db.run(lambda s: ops.rollback(s, name, body.revision if body else None, actor=p.label, now=time.time(),
                                     check=check))
    st.loop.kick()
    return _etag(response, _one(st, name))
