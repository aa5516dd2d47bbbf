"""Request size limits: a body over MAX_BODY bytes is answered 413 in the usual error shape.

A pure ASGI middleware, so it works on any FastAPI/Starlette version: a declared
Content-Length over the limit is refused before the app runs; a body sent without one
(chunked) is counted as it is read and refused once it passes the limit.
"""
from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

from orchestrator.errors import error_body

MAX_BODY = 1024 * 1024  # 1 MiB: a service spec is a few KiB; an agent report of 1,000 containers ~300 KiB


def _message(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes ({limit // 1024} KiB)"


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int = MAX_BODY):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(error_body("payload_too_large", _message(self.max_bytes))).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body") or b"")
                if seen > self.max_bytes:
                    # an HTTPException reaches the app's handler, which answers in the error shape
                    raise HTTPException(413, _message(self.max_bytes))
            return msg

        async def tracked(msg: Any) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send)
