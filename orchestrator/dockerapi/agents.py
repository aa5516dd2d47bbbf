"""The Docker Engine API's calls to the nodes' agents: a container's logs (Docker's own
multiplexed frames), its engine-side inspection, and each node's images.

The same path as GET /v1/instances/{id}/logs (orchestrator/api/logs.py): the per-node key
issued at join, over TLS when the agent serves it. Nothing is cached: each answer is the
engine's at the time of the call.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from orchestrator import agent_keys, agent_tls
from orchestrator.api.deps import State
from orchestrator.api.logs import _target, agent_stream
from orchestrator.auth import Principal
from orchestrator.errors import Unavailable
from orchestrator.models import Node

CONNECT_TIMEOUT = 5.0
FAN_OUT_TIMEOUT = 5.0  # seconds a node may take to list its images before it is left out


def _verify(st: State, node: str, url: str, pin: str | None):  # type: ignore[no-untyped-def]
    try:
        return agent_tls.verify_for(st.settings, node, url, pin)
    except agent_tls.AgentTLSError as exc:
        raise Unavailable(str(exc)) from None


async def logs(st: State, p: Principal, instance_id: str, tail: str, follow: bool) -> AsyncIterator[bytes]:
    """Docker's own multiplexed frames (stdout and stderr apart), through the /v1 logs relay."""
    body, _ = await agent_stream(st, p, instance_id, {"tail": tail, "follow": str(follow).lower(), "raw": "1"}, follow)
    return body


async def inspect(st: State, p: Principal, instance_id: str) -> dict[str, Any] | None:
    """The engine's inspection of an instance's container; None if its node cannot answer now."""
    try:
        url, key, node, pin = await run_in_threadpool(_target, st, instance_id, p)
        async with agent_tls.client(_verify(st, node, url, pin), False, CONNECT_TIMEOUT) as client:
            r = await client.get(f"{url}/v1/instances/{instance_id}/inspect",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=FAN_OUT_TIMEOUT)
    except Exception:  # noqa: BLE001 - a node that is down or slow: the database's view is shown
        return None
    return r.json() if r.status_code == 200 else None


def _ready_agents(st: State) -> list[tuple[str, str, str, str | None]]:
    def read(s):  # type: ignore[no-untyped-def]
        out = []
        for n in s.scalars(select(Node).where(Node.status == "ready").order_by(Node.name)):
            key = agent_keys.get(s, n.name)
            if n.agent_url and key:
                out.append((n.name, n.agent_url, key, agent_keys.get_cert(s, n.name)))
        return out

    return st.db.run(read)


async def images(st: State) -> list[dict[str, Any]]:
    """Every ready node's images, merged by id (`docker images` of the whole cluster)."""
    agents = await run_in_threadpool(_ready_agents, st)

    async def one(node: str, url: str, key: str, pin: str | None) -> list[dict]:
        try:
            async with agent_tls.client(_verify(st, node, url, pin), False, CONNECT_TIMEOUT) as client:
                r = await client.get(f"{url}/v1/images", headers={"Authorization": f"Bearer {key}"},
                                     timeout=FAN_OUT_TIMEOUT)
            return r.json() if r.status_code == 200 else []
        except Exception:  # noqa: BLE001 - one silent node must not hide the others' images
            return []

    merged: dict[str, dict] = {}
    for node_images in await asyncio.gather(*(one(*a) for a in agents)):
        for img in node_images:
            merged.setdefault(img.get("Id", ""), img)
    return sorted(merged.values(), key=lambda i: -(i.get("Created") or 0))
