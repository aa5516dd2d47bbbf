"""GET /v1/instances/{id}/logs: a container's output, streamed from its node's agent.

A server -> agent call: the server looks up where the instance runs and streams the
agent's answer through (httpx), authenticated with the per-node key issued at join, over
TLS when the agent serves it (orchestrator/agent_tls.py says which certificate is trusted).

A followed stream ends with its reader: when the client disconnects, Starlette cancels the
body, and the clean-up (closing the agent connection, which ends the agent's side) runs
shielded from that cancellation, so it cannot be skipped. LOG_STREAMS counts open streams.
"""
from __future__ import annotations

from typing import AsyncIterator

import anyio
import httpx
from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from prometheus_client import Gauge

from orchestrator import agent_keys, agent_tls, metrics
from orchestrator.api.deps import State, role, state
from orchestrator.auth import Principal
from orchestrator.errors import Conflict, DockyardError, NotFound, Unavailable
from orchestrator.models import Instance, Node
from orchestrator.namespaces import split

router = APIRouter(prefix="/v1", tags=["cluster"])
CONNECT_TIMEOUT = 5.0
MAX_TAIL = 2**31 - 1  # lines: more than any log holds, and what Docker parses
LOG_STREAMS = Gauge("dockyard_log_streams_open", "Log streams this server is relaying from agents",
                    registry=metrics.REGISTRY)


class BadGateway(DockyardError):
    status, code = 502, "bad_gateway"


def _target(st: State, instance_id: str, p: Principal | None = None) -> tuple[str, str, str, str | None]:
    """(agent URL, agent key, node name, pinned agent certificate) for the node an instance runs on."""
    def read(s):  # type: ignore[no-untyped-def]
        i = s.get(Instance, instance_id)
        if i is None or (p is not None and not p.sees(split(i.service_name)[0])):
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
        return n.agent_url, key, n.name, agent_keys.get_cert(s, n.name)

    return st.db.run(read)


def _agent_error(r: httpx.Response, node: str) -> DockyardError:
    try:
        message = r.json()["error"]["message"]
    except Exception:
        message = r.text[:200] or f"status {r.status_code}"
    if r.status_code == 404:
        return NotFound(f"node {node}: {message}")
    return BadGateway(f"the agent of node {node} refused the logs request ({r.status_code}): {message}")


async def _close(r: httpx.Response | None, client: httpx.AsyncClient) -> None:
    with anyio.CancelScope(shield=True):  # runs even while the request is being cancelled
        if r is not None:
            await r.aclose()
        await client.aclose()


async def agent_stream(st: State, p: Principal, instance_id: str, params: dict[str, str],
                       follow: bool) -> tuple[AsyncIterator[bytes], str]:
    """(the agent's logs answer as a stream, the node) for an instance. The request is sent first,
    so a refusal is an error answer rather than a cut stream. Also the Docker API's `docker logs`
    (orchestrator/dockerapi/agents.py, with raw=1)."""
    url, key, node, pin = await run_in_threadpool(_target, st, instance_id, p)
    try:
        verify = agent_tls.verify_for(st.settings, node, url, pin)
    except agent_tls.AgentTLSError as exc:
        raise Unavailable(str(exc)) from None
    client = agent_tls.client(verify, follow, CONNECT_TIMEOUT)
    req = client.build_request("GET", f"{url}/v1/instances/{instance_id}/logs", params=params,
                               headers={"Authorization": f"Bearer {key}"})
    try:
        r = await client.send(req, stream=True)
    except httpx.HTTPError as exc:
        await _close(None, client)
        raise BadGateway(agent_tls.explain(exc, node, url, st.settings)) from None
    if r.status_code != 200:
        await r.aread()
        await _close(r, client)
        raise _agent_error(r, node)

    async def body() -> AsyncIterator[bytes]:
        LOG_STREAMS.inc()
        try:
            async for chunk in r.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            pass  # the agent went away mid-stream: end the stream
        finally:
            LOG_STREAMS.dec()
            await _close(r, client)

    return body(), node


@router.get("/instances/{instance_id}/logs", responses={
    200: {"content": {"text/plain": {}}, "description": "the container's stdout and stderr"},
    404: {"description": "no such instance, or it has no container"}, 409: {"description": "not placed"},
    502: {"description": "the agent failed, or its certificate is not trusted"},
    503: {"description": "the node is down, or its agent cannot be called securely"}})
async def instance_logs(instance_id: str, tail: int | None = Query(default=None, ge=0, le=MAX_TAIL,
                                                                         description="last N lines (default all)"),
                        follow: bool = Query(default=False, description="keep streaming new output"),
                        st: State = Depends(state), p: Principal = Depends(role("viewer"))):
    body, node = await agent_stream(st, p, instance_id, {"tail": "all" if tail is None else str(tail),
                                                         "follow": str(follow).lower()}, follow)
    return StreamingResponse(body, media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Dockyard-Node": node})
