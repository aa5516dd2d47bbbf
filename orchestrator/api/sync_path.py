"""The agents' sync (`POST /v1/agent/sync`) served below FastAPI's routing and middleware.

Thousands of agents each keep a long poll open for up to a heartbeat interval (25 s at 5,000
nodes). Through the whole stack (Starlette's middleware and router, FastAPI's request handler,
dependency solving with its exit stacks) a waiting poll held ~90 objects the garbage collector
tracks, and every one of them is scanned by each collection while the poll waits: at 5,000
nodes that made the young-generation pauses of 1.0-1.4 s (docs/performance.md, "The garbage
collector at 5,000 nodes"), besides the CPU of routing ~700 requests a second.

So a well-formed sync (a JSON body that `SyncIn` accepts, a node's credential) is handed to the
same handler (api/agent.py `sync`) from here, with the same credential check (deps.principal).
Anything else, a missing or refused credential, a body that is not JSON or not a valid sync,
one over the size limit, a client gone before its body was read, goes the usual way through
FastAPI with what was read of the body handed on, so it gets the same answer as before from the
same code (errors.py, limits.py, node_loss.unread). An error the handler raises is answered
by the application's own exception handlers (errors.install). The route stays declared for
OpenAPI and for those fallbacks.
"""
from __future__ import annotations

import inspect
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from orchestrator.api import agent, deps
from orchestrator.limits import MAX_BODY
from orchestrator.protocol import SyncIn

PATH = "/v1/agent/sync"
JSON = b"application/json"


def _replay(messages: list[dict], receive: Any) -> Any:
    """A receive() that gives the messages already read again, in order, then the connection's
    own."""
    queue = list(messages)

    async def replayed() -> dict:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


def _handler(app: Any, exc: Exception) -> Any:
    """The application's handler for exc, as Starlette's ExceptionMiddleware finds it (an
    HTTPException's status code first, then the exception's classes). The catch-all handlers
    (`Exception`, 500) are not in that table: ServerErrorMiddleware, outside this one, answers
    with them, logs the traceback and re-raises, so an unexpected error is left to it."""
    handlers = {k: v for k, v in getattr(app, "exception_handlers", {}).items() if k not in (500, Exception)}
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


async def _answer(request: Request, exc: Exception) -> Any:
    handler = _handler(request.app, exc)
    if handler is None:
        raise exc
    try:
        response = handler(request, exc)
        return await response if inspect.isawaitable(response) else response
    finally:
        exc.__traceback__ = None  # as Starlette does: its frames (the request, its body) go now


class SyncFastPath:
    """Pure ASGI middleware: serves well-formed syncs itself, passes everything else on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        ctype = auth = None
        declared = 0
        for k, v in scope["headers"]:  # the first of a repeated header, as request.headers.get
            if k == b"content-type" and ctype is None:
                ctype = v
            elif k == b"authorization" and auth is None:
                auth = v
            elif k == b"content-length":
                declared = int(v) if v.isdigit() else 0
        if auth is None or ctype is None or declared > MAX_BODY or ctype.split(b";")[0].strip().lower() != JSON:
            await self.app(scope, receive, send)
            return
        read: list[dict] = []
        size = 0
        while True:
            msg = await receive()
            read.append(msg)
            if msg["type"] != "http.request":  # gone before the body was read
                await self.app(scope, _replay(read, receive), send)
                return
            size += len(msg.get("body", b""))
            if size > MAX_BODY:  # limits.py answers it, reading the rest
                await self.app(scope, _replay(read, receive), send)
                return
            if not msg.get("more_body", False):
                break
        request = Request(scope, receive)
        try:
            body = SyncIn.model_validate_json(b"".join(m.get("body", b"") for m in read))
        except ValueError:  # the usual path answers it (422), from the same code
            await self.app(scope, _replay(read, receive), send)
            return
        try:
            p = await deps.principal(request, auth.decode("latin-1"))
            if p.kind != "node":
                p = None
        except Exception as exc:  # refused (401), or the database failed: answered as the route would
            response = await _answer(request, exc)
        else:
            if p is None:  # another principal's token: the route's 403, from the same code
                await self.app(scope, _replay(read, receive), send)
                return
            del read, msg  # not held while the long poll waits
            try:
                response = await agent.sync(body, request, scope["app"].state.dy, p)
            except Exception as exc:
                response = await _answer(request, exc)
        await response(scope, receive, send)
