"""Request dependencies shared by the routers: the app's state, auth, If-Match, YAML bodies."""
from __future__ import annotations

import json
import time
from typing import Callable

import yaml
from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from orchestrator.auth import Principal, authenticate, bearer, hash_secret
from orchestrator.errors import BadRequest, Forbidden
from orchestrator.read_cache import ReadCache


class State:
    """What the handlers need: database, hub, loop, settings (set on app.state.dy)."""

    def __init__(self, db, hub, loop, settings):  # type: ignore[no-untyped-def]
        self.db, self.hub, self.loop, self.settings = db, hub, loop, settings
        self.reads = ReadCache(db)


# Dependencies are `async def` unless they do blocking work: FastAPI runs a plain `def`
# dependency in its thread pool, and a thread hop per dependency per request is most of the
# cost of a small request on a busy server (and of its latency when threads queue for the GIL).

async def state(request: Request) -> State:
    return request.app.state.dy


# How long a credential checked against the database is trusted from memory. Revoking a token
# (DELETE /v1/tokens/{id}), removing a node and a node joining again forget theirs at once; an
# expiring token is checked again when it expires.
CREDENTIAL_CACHE_SECONDS = 30.0


async def principal(request: Request, authorization: str | None = Header(default=None)) -> Principal:
    secret = bearer(authorization)
    st: State = request.app.state.dy
    digest = hash_secret(secret)
    now = time.time()
    p = st.hub.credential(digest, now, CREDENTIAL_CACHE_SECONDS)
    if p is None:
        epoch = st.hub.credential_epoch()
        p = await run_in_threadpool(st.db.run, lambda s: authenticate(s, secret, now))
        st.hub.remember_credential(digest, p, p.expires_at, now, epoch)
    request.state.principal = p
    return p  # type: ignore[return-value]


def role(required: str) -> Callable[..., Principal]:
    async def dep(p: Principal = Depends(principal)) -> Principal:
        p.require(required)
        return p

    dep.required_role = required  # type: ignore[attr-defined]  # read by api/security.py for OpenAPI
    return dep


async def node_principal(p: Principal = Depends(principal)) -> Principal:
    if p.kind != "node":
        raise Forbidden("this endpoint is for agents: use the node credential issued at join")
    return p


node_principal.required_role = "node"  # type: ignore[attr-defined]


async def if_match(if_match: str | None = Header(default=None, alias="If-Match")) -> int | None:
    if if_match is None:
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"If-Match must be a service version (e.g. \"3\"), got {if_match!r}")


class YamlRoute(APIRoute):
    """Accepts YAML bodies (application/yaml, text/yaml) by turning them into JSON first, and reads
    bodies sent without a JSON content type (curl -d sends form encoding) as JSON."""

    def get_route_handler(self):  # type: ignore[no-untyped-def]
        handler = super().get_route_handler()

        async def route(request: Request):  # type: ignore[no-untyped-def]
            ctype = request.headers.get("content-type", "")
            if "yaml" in ctype:
                raw = await request.body()
                try:
                    doc = yaml.safe_load(raw) if raw.strip() else None
                except yaml.YAMLError as exc:
                    raise BadRequest(f"body is not valid YAML: {exc}".splitlines()[0])
                request._body = json.dumps(doc).encode()
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                request.scope["headers"] = headers + [(b"content-type", b"application/json")]
                if hasattr(request, "_headers"):
                    del request._headers
            elif "json" not in ctype and request.method in ("PUT", "POST", "PATCH"):
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                request.scope["headers"] = headers + [(b"content-type", b"application/json")]
                if hasattr(request, "_headers"):
                    del request._headers
            return await handler(request)

        return route
