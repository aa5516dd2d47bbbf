"""Exec into an instance: `POST /v1/instances/{id}/exec` and its WebSocket `.../exec/ws`.

A server -> agent call like logs (orchestrator/api/logs.py): the server finds the instance's
node, calls that node's agent API with the per-node key (TLS as orchestrator/agent_tls.py
says), and the agent runs the command through Docker (agent/exec.py). Exec is an operator
action: it is recorded as an `instance_exec` event (who, where, what) before it runs, and
refused to viewers. Instance ids are global; a token that may not see the instance's
namespace gets a 404, as for logs.

The WebSocket form carries an interactive session: the client's first message is JSON
`{"command": [...], "tty": bool, "cols", "rows"}` (plus `"token"` when it cannot send an
Authorization header, as a browser cannot); then binary messages are stdin, text messages
`{"resize": {"cols", "rows"}}` or `{"eof": true}`; the server sends binary messages whose
first byte is the stream (1 stdout, 2 stderr), then `{"type": "exit", "exit_code": n}` (or
`{"type": "error", "error": {...}}`) and closes. Nothing is kept in memory past a session.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import ssl
import time
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from agent import exec as wire
from orchestrator import agent_keys, agent_tls
from orchestrator.api.deps import State, YamlRoute, role, state
from orchestrator.api.logs import BadGateway
from orchestrator.auth import Principal, authenticate, hash_secret
from orchestrator.errors import Conflict, DockyardError, NotFound, Unauthorized, Unavailable, ValidationFailed
from orchestrator.events import record
from orchestrator.models import Instance, Node
from orchestrator.namespaces import split

router = APIRouter(prefix="/v1", tags=["cluster"], route_class=YamlRoute)  # curl -d bodies read as JSON
CONNECT_TIMEOUT = 5.0


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: list[str] = Field(min_length=1, max_length=256, description="the program and its arguments")
    stdin: str | None = Field(default=None, max_length=wire.MAX_STDIN, description="fed to the command, then closed")
    timeout: float = Field(default=wire.DEFAULT_TIMEOUT, gt=0, le=wire.MAX_TIMEOUT,
                           description="seconds to wait for the command; then `timed_out` and no exit code")


class ExecResult(BaseModel):
    instance: str
    node: str
    exit_code: int | None = Field(description="the command's exit code; null when it timed out")
    stdout: str
    stderr: str
    truncated: bool = Field(description=f"output past {wire.MAX_OUTPUT} bytes per stream was dropped")
    timed_out: bool


def _target(st: State, instance_id: str, p: Principal, command: list[str], tty: bool) -> tuple[str, str, str, str | None]:
    """Where to run it: (agent URL, key, node, pinned cert); records the audit event."""
    def write(s):  # type: ignore[no-untyped-def]
        i = s.get(Instance, instance_id)
        if i is None or not p.sees(split(i.service_name)[0]):
            raise NotFound(f"instance {instance_id!r} not found")
        if i.node_name is None or i.desired_state != "running":
            raise Conflict(f"instance {instance_id!r} is not running on a node, so there is nothing to exec into")
        n = s.get(Node, i.node_name)
        if n is None:
            raise Conflict(f"instance {instance_id!r} was on node {i.node_name!r}, which is gone")
        if n.status == "down":
            raise Unavailable(f"node {n.name!r} is down: exec needs its agent")
        key = agent_keys.get(s, n.name)
        if not n.agent_url or not key:
            raise Unavailable(f"the agent of node {n.name!r} has no API (it must re-join with --listen)")
        what = shlex.join(command)
        record(s, "instance_exec", f"exec{' (tty)' if tty else ''} in {split(i.service_name)[1]}.{i.slot} "
               f"({i.id}): {what[:300]}{'...' if len(what) > 300 else ''}",
               service=i.service_name, node=n.name, instance=i.id, actor=p.label, now=time.time())
        return n.agent_url, key, n.name, agent_keys.get_cert(s, n.name)

    return st.db.run(write)


def _verify(st: State, node: str, url: str, pin: str | None) -> ssl.SSLContext | bool:
    try:
        return agent_tls.verify_for(st.settings, node, url, pin)
    except agent_tls.AgentTLSError as exc:
        raise Unavailable(str(exc)) from None


def _agent_error(status: int, text: str, node: str) -> DockyardError:
    try:
        message = json.loads(text)["error"]["message"]
    except Exception:
        message = text[:200] or f"status {status}"
    if status == 404:
        return NotFound(f"node {node}: {message}")
    if status == 409:
        return Conflict(f"node {node}: {message}")
    return BadGateway(f"the agent of node {node} refused the exec ({status}): {message}")


@router.post("/instances/{instance_id}/exec", response_model=ExecResult, responses={
    404: {"description": "no such instance, or it has no running container"}, 409: {"description": "not running"},
    502: {"description": "the agent failed or is unreachable, or Docker refused the command"},
    503: {"description": "the node is down, or its agent cannot be called securely"}})
async def exec_instance(instance_id: str, body: ExecBody, st: State = Depends(state),
                        p: Principal = Depends(role("operator"))) -> dict:
    url, key, node, pin = await run_in_threadpool(_target, st, instance_id, p, body.command, False)
    verify = _verify(st, node, url, pin)
    async with httpx.AsyncClient(timeout=httpx.Timeout(CONNECT_TIMEOUT, read=body.timeout + 30),
                                 verify=verify if verify is not False else True, trust_env=False) as client:
        try:
            r = await client.post(f"{url}/v1/instances/{instance_id}/exec", headers={"Authorization": f"Bearer {key}"},
                                  json=body.model_dump(exclude_none=True))
        except httpx.HTTPError as exc:
            raise BadGateway(agent_tls.explain(exc, node, url, st.settings)) from None
    if r.status_code != 200:
        raise _agent_error(r.status_code, r.text, node)
    return {"instance": instance_id, "node": node, **r.json()}


# ------------------------------------------------------------------ interactive (WebSocket)

async def _principal(st: State, ws: WebSocket, token: str | None) -> Principal:
    scheme, _, given = (ws.headers.get("authorization") or "").partition(" ")
    secret = given.strip() if scheme.lower() == "bearer" and given.strip() else token
    if not secret or not isinstance(secret, str):
        raise Unauthorized("send `Authorization: Bearer <token>` or a `token` in the first message")
    now = time.time()
    p = await run_in_threadpool(st.db.run, lambda s: authenticate(s, secret, now))
    p.require("operator")
    return p  # type: ignore[return-value]


async def _open_agent(st: State, url: str, key: str, node: str, pin: str | None, instance_id: str,
                      start: dict) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An upgraded connection to the agent's exec endpoint (agent/exec.py's frames from then on)."""
    verify = _verify(st, node, url, pin)
    u = urlsplit(url)
    ctx = None
    if u.scheme == "https":
        ctx = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
    body = json.dumps(start).encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            u.hostname, u.port or (443 if ctx else 80), ssl=ctx), CONNECT_TIMEOUT)
        writer.write((f"POST /v1/instances/{instance_id}/exec HTTP/1.1\r\nHost: {u.netloc}\r\n"
                      f"Authorization: Bearer {key}\r\nConnection: Upgrade\r\nUpgrade: {wire.UPGRADE}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT + 30)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise BadGateway(agent_tls.explain(exc, node, url, st.settings)) from None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 and lines[0].split()[1].isdigit() else 0
    if status != 101:
        length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                       if k.lower() == "content-length" and v.strip().isdigit()), 0)
        try:
            text = (await asyncio.wait_for(reader.readexactly(min(length, 65536)), 5)).decode("utf-8", "replace")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            text = ""
        writer.close()
        raise _agent_error(status, text, node)
    return reader, writer


def _error_message(exc: DockyardError) -> str:
    return json.dumps({"type": "error", "error": {"code": exc.code, "message": exc.message, "details": exc.details}})


@router.websocket("/instances/{instance_id}/exec/ws")
async def exec_ws(ws: WebSocket, instance_id: str) -> None:
    st: State = ws.app.state.dy
    await ws.accept()
    try:
        try:
            start = json.loads(await asyncio.wait_for(ws.receive_text(), 30))
            if not isinstance(start, dict):
                raise ValueError
        except (ValueError, KeyError, asyncio.TimeoutError):
            raise Unauthorized("the first message must be JSON: {\"command\": [...], \"tty\": true, \"token\": ...}")
        p = await _principal(st, ws, start.pop("token", None))
        try:
            req = wire.parse_request(start)
        except wire.ExecError as exc:
            raise ValidationFailed(str(exc)) from None
        url, key, node, pin = await run_in_threadpool(_target, st, instance_id, p, req.command, req.tty)
        reader, writer = await _open_agent(st, url, key, node, pin, instance_id, start)
    except DockyardError as exc:
        await ws.send_text(_error_message(exc))
        await ws.close(4000 + exc.status)
        return
    except WebSocketDisconnect:
        return
    await ws.send_text(json.dumps({"type": "started", "instance": instance_id, "node": node}))
    await _relay(ws, reader, writer, node)


async def _relay(ws: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node: str) -> None:
    async def from_client() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                writer.write(wire.frame(wire.STDIN, msg["bytes"]))
            elif msg.get("text") is not None:
                try:
                    ctl = json.loads(msg["text"])
                except ValueError:
                    continue
                if isinstance(ctl, dict) and isinstance(ctl.get("resize"), dict):
                    writer.write(wire.frame(wire.RESIZE, json.dumps(ctl["resize"]).encode()))
                elif isinstance(ctl, dict) and ctl.get("eof"):
                    writer.write(wire.frame(wire.CLOSE_STDIN))
            await writer.drain()

    async def from_agent() -> None:
        frames = wire.FrameReader()
        while True:
            data = await reader.read(65536)
            if not data:
                await ws.send_text(_error_message(BadGateway(f"the agent of node {node} ended the session")))
                return
            for kind, payload in frames.feed(data):
                if kind in (wire.STDOUT, wire.STDERR):
                    await ws.send_bytes(bytes([kind]) + payload)
                elif kind == wire.EXIT:
                    await ws.send_text(json.dumps({"type": "exit", **json.loads(payload)}))
                    return
                elif kind == wire.ERROR:
                    message = json.loads(payload).get("message", "")
                    await ws.send_text(_error_message(BadGateway(f"node {node}: {message}")))
                    return

    tasks = [asyncio.create_task(from_client()), asyncio.create_task(from_agent())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except Exception:  # noqa: BLE001 - either side went away
        pass
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        try:
            await ws.close()
        except Exception:  # noqa: BLE001 - already closed by the client
            pass
