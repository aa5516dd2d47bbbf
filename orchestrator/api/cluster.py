"""Routes for nodes, instances and events (including the SSE watch stream)."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from orchestrator import agent_keys
from orchestrator import namespaces as nsops
from orchestrator import events as ev_mod
from orchestrator.api.deps import State, YamlRoute, role, state
from orchestrator.auth import Principal
from orchestrator.bounds import INT32_MAX
from orchestrator.errors import Conflict, NotFound
from orchestrator.events import record
from orchestrator.models import Event, Instance, Node
from orchestrator.service_ops import instance_dict, iso

# error responses are documented per operation by api/openapi.py, derived from the dependencies
router = APIRouter(prefix="/v1", tags=["cluster"], route_class=YamlRoute)


class EventOut(BaseModel):
    id: int
    time: str | None
    kind: str
    service: str | None
    namespace: str | None = None
    node: str | None
    instance: str | None
    message: str
    actor: str | None


SSE = ("`watch=true`: a text/event-stream of `id: <id>`, `event: <kind>`, `data: <the event as JSON>` "
       "messages (and `: keep-alive` comments), which never ends")


def node_dict(n: Node, hub, instances: int = 0) -> dict:  # type: ignore[no-untyped-def]
    return {
        "name": n.name, "address": n.address, "labels": n.labels or {}, "status": n.status,
        "availability": n.availability, "cpus": n.cpus, "memory": n.memory, "instances": instances,
        "last_heartbeat": iso(hub.heartbeats.get(n.name, n.last_heartbeat)), "agent_version": n.agent_version,
        "engine_version": n.engine_version, "gateway": n.gateway or None, "created_at": iso(n.created_at),
    }


def _counts(s) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out: dict[str, int] = {}
    for (name,) in s.execute(select(Instance.node_name).where(Instance.desired_state == "running")):
        if name:
            out[name] = out.get(name, 0) + 1
    return out


@router.get("/nodes")
def list_nodes(st: State = Depends(state), _: Principal = Depends(role("viewer"))) -> list[dict]:
    def read(s):  # type: ignore[no-untyped-def]
        counts = _counts(s)
        return [node_dict(n, st.hub, counts.get(n.name, 0)) for n in s.scalars(select(Node).order_by(Node.name))]

    return st.db.run(read)


def _node(s, name: str) -> Node:  # type: ignore[no-untyped-def]
    n = s.get(Node, name)
    if n is None:
        raise NotFound(f"node {name!r} not found")
    return n


@router.get("/nodes/{name}")
def get_node(name: str, st: State = Depends(state), _: Principal = Depends(role("viewer"))) -> dict:
    return st.db.run(lambda s: node_dict(_node(s, name), st.hub, _counts(s).get(name, 0)))


def _availability(st: State, name: str, value: str, p: Principal) -> dict:
    def write(s):  # type: ignore[no-untyped-def]
        n = _node(s, name)
        if n.availability != value:
            record(s, f"node_{ {'active': 'activated', 'paused': 'paused', 'drained': 'drained'}[value] }",
                   f"node {name} is now {value}", node=name, actor=p.label)
            n.availability = value
        return node_dict(n, st.hub, _counts(s).get(name, 0))

    out = st.db.run(write)
    st.loop.kick()
    return out


@router.post("/nodes/{name}/pause")
def pause_node(name: str, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    return _availability(st, name, "paused", p)


@router.post("/nodes/{name}/drain")
def drain_node(name: str, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    return _availability(st, name, "drained", p)


@router.post("/nodes/{name}/activate")
def activate_node(name: str, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    return _availability(st, name, "active", p)


@router.delete("/nodes/{name}")
def delete_node(name: str, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    def write(s):  # type: ignore[no-untyped-def]
        n = _node(s, name)
        if n.status != "down" and not (n.availability == "drained" and _counts(s).get(name, 0) == 0):
            raise Conflict(f"node {name!r} is {n.status} and {n.availability}: drain it (and wait until it is empty) "
                           "or wait until it is down before removing it")
        for i in s.scalars(select(Instance).where(Instance.node_name == name)):
            if i.desired_state == "running":
                i.state, i.desired_state = "lost", "stopped"
        s.delete(n)
        agent_keys.forget(s, name)  # the key the server presented to its agent, the certificate it pinned
        st.hub.heartbeats.pop(name, None)
        st.hub.forget_node(name)  # its credential stops working at once
        record(s, "node_removed", f"node {name} removed", node=name, actor=p.label)
        return {"name": name, "deleted": True}

    out = st.db.run(write)
    st.loop.kick()
    return out


@router.get("/instances")
def list_instances(service: str | None = None, node: str | None = None, all: bool = False,
                   namespace: str | None = Query(default=None, max_length=63, description=(
                       "only this namespace's (and `service` is a name in it; default: default)")),
                   st: State = Depends(state), p: Principal = Depends(role("viewer"))) -> list[dict]:
    def read(s):  # type: ignore[no-untyped-def]
        q = select(Instance).order_by(Instance.service_name, Instance.slot)
        q = _scoped(q, Instance.service_name, namespace, p)
        if service:
            q = q.where(Instance.service_name == nsops.key(namespace or nsops.DEFAULT, service))
        if node:
            q = q.where(Instance.node_name == node)
        if not all:
            q = q.where(Instance.desired_state == "running")
        return [instance_dict(i) for i in s.scalars(q)]

    return st.db.run(read)


def _scoped(q, column, namespace: str | None, p: Principal):  # type: ignore[no-untyped-def]
    """Narrow a query on service keys to one namespace and to what the token may see."""
    if namespace is not None:
        if not p.sees(namespace):
            raise NotFound(f"namespace {namespace!r} not found")
        q = q.where(nsops.key_in(column, namespace))
    elif p.namespaces is not None:
        q = q.where(nsops.keys_in(column, p.namespaces))
    return q


@router.get("/instances/{instance_id}")
def get_instance(instance_id: str, st: State = Depends(state), p: Principal = Depends(role("viewer"))) -> dict:
    def read(s):  # type: ignore[no-untyped-def]
        i = s.get(Instance, instance_id)
        if i is None or not p.sees(nsops.split(i.service_name)[0]):
            raise NotFound(f"instance {instance_id!r} not found")
        return instance_dict(i)

    return st.db.run(read)


def _query_events(st: State, service: str | None, node: str | None, since: int | None, limit: int, oldest_first: bool,
                  namespace: str | None = None, p: Principal | None = None):
    def read(s):  # type: ignore[no-untyped-def]
        q = select(Event)
        if namespace is not None:
            q = q.where(Event.namespace == namespace)
        if p is not None and p.namespaces is not None:  # a scoped token: its namespaces' events only
            q = q.where(Event.namespace.in_(p.namespaces))
        if service:
            q = q.where(Event.service == nsops.key(namespace or nsops.DEFAULT, service))
        if node:
            q = q.where(Event.node == node)
        if since is not None:
            q = q.where(Event.id > since)
        q = q.order_by(Event.id.asc() if oldest_first else Event.id.desc()).limit(limit)
        return [ev_mod.as_dict(e) | {"time": iso(e.time)} for e in s.scalars(q)]

    return st.db.run(read)


@router.get("/events", response_model=list[EventOut], responses={200: {
    "description": "the events, newest first; with " + SSE,
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def list_events(request: Request, service: str | None = None, node: str | None = None,
                      namespace: str | None = Query(default=None, max_length=63, description=(
                          "only this namespace's events (and `service` is a name in it; default: default)")),
                      since: int | None = Query(default=None, ge=0, le=INT32_MAX, description="only events after this id"),
                      limit: int = Query(default=100, ge=1, le=1000), watch: bool = False,
                      last_event_id: int | None = Header(
                          default=None, alias="Last-Event-ID", ge=0, le=INT32_MAX,
                          description="with watch=true and no since: resume after this event id (what an "
                                      "EventSource sends when it reconnects)"),
                      st: State = Depends(state), p: Principal = Depends(role("viewer"))):
    if namespace is not None and not p.sees(namespace):
        raise NotFound(f"namespace {namespace!r} not found")
    if not watch:
        return JSONResponse(await run_in_threadpool(_query_events, st, service, node, since, limit, False, namespace, p))

    if since is None and last_event_id is not None:  # an EventSource reconnecting: resume after what it saw
        since = last_event_id

    async def stream():  # type: ignore[no-untyped-def]
        cursor = since
        if cursor is None:  # start from now: a watch without since shows only what happens next
            latest = await run_in_threadpool(_query_events, st, None, None, None, 1, False)
            cursor = latest[0]["id"] if latest else 0
        while not await request.is_disconnected():
            batch = await run_in_threadpool(_query_events, st, service, node, cursor, 500, True, namespace, p)
            for e in batch:
                cursor = e["id"]
                yield f"id: {e['id']}\nevent: {e['kind']}\ndata: {json.dumps(e)}\n\n"
            if not batch:
                yield ": keep-alive\n\n"
                await st.hub.wait_events(5.0)
            await asyncio.sleep(0)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
