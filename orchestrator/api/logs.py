"""GET /v1/instances/{id}/logs: a container's output, streamed from its node's agent.

The one server -> agent call: the server looks up where the instance runs and streams the
agent's answer through (httpx), authenticated with the per-node key issued at join.
"""
from __future__ import annotations

import httpx
from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from orchestrator import agent_keys
from orchestrator.api.deps import State, role, state
from orchestrator.auth import Principal
from orchestrator.errors import Conflict, DockyardError, NotFound, Unavailable
from orchestrator.models import Instance, Node

router = APIRouter(prefix="/v1", tags=["cluster"])
CONNECT_TIMEOUT = 5.0


class BadGateway(DockyardError):
    status, code = 502, "bad_gateway"


def _target(st: State, instance_id: str) -> tuple[str, str, str]:
    """(agent URL, agent key, node name) for the node an instance runs on."""
    def read(s):  # type: ignore[no-untyped-def]
        i = s.get(Instance, instance_id)
        if i is None:
            raise NotFound(f"instance {instance_id!r} not found")
        if i.node_name is None:
            raise Conflict(f"instance {instance_id!r} is not placed on a node yet, so it has no logs")
        n = s.get(Node, i.node_name)
        if n is None:
            raise Conflict(f"instance {instance_id!r} was on node {i.node_name!r}, which is gone")
        if n.status == "down":
            raise Unavailable(f"node {n.name!r} is down: its logs cannot be read until it is back")
        key = agent_keys.get(s, n.name)
        if not n.agent_url or not key:
            raise Unavailable(f"the agent of node {n.name!r} has no logs API (it must re-join with --listen)")
        return n.agent_url, key, n.name

    return st.db.run(read)


def _agent_error(r: httpx.Response, node: str) -> DockyardError:
    try:
        message = r.json()["error"]["message"]
    except Exception:
        message = r.text[:200] or f"status {r.status_code}"
    if r.status_code == 404:
        return NotFound(f"node {node}: {message}")
    return BadGateway(f"the agent of node {node} refused the logs request ({r.status_code}): {message}")


@router.get("/instances/{instance_id}/logs", responses={
    200: {"content": {"text/plain": {}}, "description": "the container's stdout and stderr"},
    404: {"description": "no such instance, or it has no container"}, 409: {"description": "not placed"},
    502: {"description": "the agent failed"}, 503: {"description": "the node is down"}})
async def instance_logs(instance_id: str, tail: int | None = Query(default=None, ge=0, description="last N lines (default all)"),
                        follow: bool = Query(default=False, description="keep streaming new output"),
                        st: State = Depends(state), _: Principal = Depends(role("viewer"))):
    url, key, node = await run_in_threadpool(_target, st, instance_id)
    client = httpx.AsyncClient(timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None if follow else 60.0), trust_env=False)
    req = client.build_request("GET", f"{url}/v1/instances/{instance_id}/logs",
                               params={"tail": "all" if tail is None else str(tail), "follow": str(follow).lower()},
                               headers={"Authorization": f"Bearer {key}"})
    try:
        r = await client.send(req, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise BadGateway(f"cannot reach the agent of node {node} at {url}: {exc or type(exc).__name__}")
    if r.status_code != 200:
        await r.aread()
        await r.aclose()
        await client.aclose()
        raise _agent_error(r, node)

    async def body():  # type: ignore[no-untyped-def]
        try:
            async for chunk in r.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            pass  # the agent went away mid-stream: end the stream
        finally:
            await r.aclose()
            await client.aclose()

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Dockyard-Node": node})
