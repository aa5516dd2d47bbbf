"""Request dependencies shared by the routers: the app's state, auth, If-Match, YAML bodies."""
from __future__ import annotations

import datetime
import json
import re
import time
from typing import Callable

import yaml
from fastapi import Depends, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from orchestrator.auth import Principal, authenticate, bearer, hash_secret
from orchestrator.bounds import INT32_MAX
from orchestrator import namespaces
from orchestrator.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from orchestrator.namespaces import DEFAULT
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
# (DELETE /v1/tokens/{id}), removing a node and a node joining again forget theirs at once, on
# every server (hub.py's FORGET signals); an expiring token is checked again when it expires. So
# this is a safety net only: at 30 s, 5,000 agents made ~170 database checks a second.
CREDENTIAL_CACHE_SECONDS = 300.0


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


NamespaceName = Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length=63,
                     description="a namespace (or space); the routes without it mean `default`")


async def namespace_path(request: Request, ns: str = NamespaceName) -> None:
    """Set on the `/v1/namespaces/{ns}/...` mounts of the services and apply routers: which
    namespace the request is about (read by `namespace`)."""
    request.state.namespace = ns


async def namespace(request: Request, p: Principal = Depends(principal)) -> str:
    """The namespace a services request is about: `{ns}` of a namespaced path, else default.

    A namespace the token may not see, or that does not exist, is a 404 either way, so a
    scoped token learns nothing about names outside its scope."""
    ns = getattr(request.state, "namespace", None) or DEFAULT
    if not p.sees(ns):
        raise NotFound(f"namespace {ns!r} not found")
    if ns != DEFAULT:  # default always exists (it cannot be deleted)
        st: State = request.app.state.dy
        await run_in_threadpool(st.db.run, lambda s: namespaces.get(s, ns))
    return ns


async def if_match(if_match: str | None = Header(
        default=None, alias="If-Match", description='the service version (its ETag, e.g. "3") the change expects')
) -> int | None:
    if if_match is None:
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not re.fullmatch(r"[0-9]+", raw):  # int() would also take '+3', '1_0' and other scripts' digits
        raise BadRequest(f"If-Match must be a service version (e.g. \"3\"), got {if_match[:40]!r}")
    if len(raw) > 10 or int(raw) > INT32_MAX:  # versions live in an Integer column
        raise ValidationFailed(f"If-Match is out of range: a version is at most {INT32_MAX}",
                               [{"field": "If-Match", "problem": f"at most {INT32_MAX}"}])
    return int(raw)


def _yaml_scalar(v: object) -> str:
    """JSON for YAML's own scalars: a date (`2024-01-31` unquoted) becomes its ISO 8601 string."""
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    raise TypeError(f"YAML value of type {type(v).__name__} has no JSON form")


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
                    request._body = json.dumps(doc, default=_yaml_scalar).encode()
                except yaml.YAMLError as exc:
                    raise BadRequest(f"body is not valid YAML: {exc}".splitlines()[0])
                except RecursionError:  # PyYAML recurses once per level of nesting
                    raise BadRequest("body is not valid YAML: nested too deeply")
                except (TypeError, ValueError) as exc:  # YAML that JSON cannot say (a set, binary)
                    raise BadRequest(f"body cannot be read as JSON: {exc}".splitlines()[0])
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
