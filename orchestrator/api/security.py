"""Who may call what, written into the OpenAPI document.

Each operation gets `x-required-role`: the role its dependency demands (`viewer`,
`operator`, `admin`), or `node` for the agent protocol; operations without one are
public (health, join with the join token). The endpoint x role test is generated from it.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute


def required_role(dep: Dependant) -> str | None:
    """The role a route's dependency tree demands (the highest, if several)."""
    found: list[str] = []

    def walk(d: Dependant) -> None:
        r = getattr(d.call, "required_role", None)
        if r:
            found.append(r)
        for sub in d.dependencies:
            walk(sub)

    walk(dep)
    if not found:
        return None
    order = ["viewer", "operator", "admin", "node"]
    return max(found, key=lambda r: order.index(r) if r in order else -1)


def api_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(path, route) for every API route, looking into included routers however FastAPI keeps them."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix + r.path_format, r
        elif getattr(r, "original_router", None) is not None:  # newer FastAPI: included lazily
            ctx = getattr(r, "include_context", None)
            yield from api_routes(r.original_router.routes, prefix + (getattr(ctx, "prefix", "") or ""))


def install(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        for path, route in api_routes(app.routes):
            if not route.include_in_schema:
                continue
            r = required_role(route.dependant)
            for m in route.methods or ():
                op = schema.get("paths", {}).get(path, {}).get(m.lower())
                if op is None:
                    continue
                if r is None:
                    op["x-required-role"] = "public"
                    continue
                op["x-required-role"] = r
                op["security"] = [{"bearer": []}]
        comps = schema.setdefault("components", {})
        comps.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer",
            "description": "an API token (roles viewer < operator < admin) or, for /v1/agent/sync, a node credential"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
