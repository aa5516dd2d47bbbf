"""What /openapi.json says about errors and content types, derived from each route in one place.

FastAPI documents the success answer and its own 422 shape (which this API never sends). Here
every operation gets the error answers it can give, each with the one error schema
(errors.ErrorBody), derived from what the route depends on:

  a credential (api/deps.role, node_principal)  -> 401, 403; the check reads the database -> 503
  the database (api/deps.state)                  -> 503 (busy or unreachable, Retry-After)
  a body                                         -> 400 (not JSON/YAML), 413 (over 1 MiB), 422
  path, query or header parameters              -> 422 (out of range, wrong type)
  a path parameter                               -> 404 (no such resource)
  a write (PUT, POST, PATCH, DELETE), If-Match   -> 409 (stale version, state, concurrent change)

A route's own `responses=` keeps its description and model (readyz's 503 body, logs' 502).
Streaming routes that declare only a non-JSON 200 (logs: text/plain) lose FastAPI's default
application/json. 405 answers carry `Allow` (errors.py); components.responses documents it.
"""
from __future__ import annotations

import re

import json
from typing import Any, Optional

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from orchestrator.api import deps
from orchestrator.api.security import api_routes, required_role
from orchestrator.errors import ErrorBody
from orchestrator.limits import MAX_BODY

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
WRITES = {"PUT", "POST", "PATCH", "DELETE"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying (database busy)",
                               "schema": {"type": "integer"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
# error answers of routes that no dependency tells apart (a route may declare them in `responses=` instead)
KNOWN: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/v1/agent/join"): {401: "the join token is wrong"},
}
ALLOW = {"Allow": {"description": "the methods the path serves, e.g. `GET, PATCH, PUT, DELETE`",
                   "schema": {"type": "string"}, "required": True}}


class _Needs:
    """What a route's dependency tree asks for."""

    def __init__(self, route: APIRoute, path: str = ""):
        self.calls: set[Any] = set()
        self.path: list[str] = []
        self.inputs: list[str] = []  # parameters that can fail validation
        self.body = route.body_field is not None
        self.walk(route.dependant)
        # a parameter of the path that a router mounted with its own dependencies reads (the
        # {ns} of /v1/namespaces/{ns}/...): newer FastAPI keeps those out of route.dependant
        for name in re.findall(r"{(\w+)}", path):
            if name not in self.path:
                self.path.append(name)
                self.inputs.append(name)

    def walk(self, d: Dependant) -> None:
        if d.call is not None:
            self.calls.add(d.call)
        self.path += [f.alias for f in d.path_params]
        fields = (*d.path_params, *d.query_params, *d.cookie_params, *d.header_params)
        self.inputs += [f.alias for f in fields if f in d.path_params or not _free(f)]
        for sub in d.dependencies:
            self.walk(sub)


def _free(f: Any) -> bool:
    """An optional parameter that takes any string cannot fail validation (Authorization's
    problems, for one, are 401s)."""
    info = f.field_info
    return not info.is_required() and not info.metadata and info.annotation in (str, str | None, Optional[str])


def derived(path: str, route: APIRoute, method: str) -> dict[int, tuple[str, dict[str, Any]]]:
    """{status: (description, headers)} of the error answers an operation can give."""
    needs = _Needs(route, path)
    role = required_role(route.dependant)
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    if needs.body or deps.if_match in needs.calls:
        why = ["the body is not valid JSON or YAML"] if needs.body else []
        if deps.if_match in needs.calls:
            why.append("If-Match is not a version number")
        out[400] = (" or ".join(why), {})
    if role is not None:
        out[401] = ("missing, malformed, expired or revoked credential", WWW_AUTHENTICATE)
        if role == "node":
            out[403] = ("not a node credential: this endpoint is for agents", {})
        else:
            extra = ", or a host privilege the server's --allow policy refuses" if method in WRITES else ""
            out[403] = (f"the token's role is below {role}{extra}", {})
    if needs.path:
        out[404] = (f"no such resource ({', '.join(needs.path)})", {})
    if method in WRITES or deps.if_match in needs.calls:
        out[409] = ("conflicts with the current state: a stale If-Match or version, a state that does not "
                    "allow it, or a concurrent change (re-read and retry)", {})
    if needs.body or method in WRITES:
        # limits.BodyLimit refuses any request body over the limit, one the route ignores too
        out[413] = (f"the body is over {MAX_BODY} bytes ({MAX_BODY // 1024} KiB)", {})
    if needs.body or needs.inputs:
        out[422] = ("invalid input (a wrong type, an unknown field, a number out of range): "
                    "`details` names each bad field", {})
    if role is not None or deps.state in needs.calls:
        out[503] = ("the database is busy or unreachable: retry after Retry-After seconds", RETRY_AFTER)
    for code, description in KNOWN.get((method, path), {}).items():
        out[code] = (description, WWW_AUTHENTICATE if code == 401 else {})
    return dict(sorted(out.items()))


def _declared(route: APIRoute, code: int) -> dict[str, Any] | None:
    for key in (code, str(code)):
        if key in (route.responses or {}):
            return route.responses[key]
    return None


def _json_schema_is_ours(resp: dict[str, Any]) -> bool:
    """The answer's JSON schema was set by the route (a model), not FastAPI's default."""
    schema = resp.get("content", {}).get("application/json", {}).get("schema") or {}
    ref = schema.get("$ref", "")
    return bool(schema) and not ref.endswith("/HTTPValidationError")


def _document(op: dict[str, Any], path: str, route: APIRoute, method: str) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    errors = derived(path, route, method)
    # FastAPI adds its 422 to any operation with parameters: keep it only where input can fail
    if 422 not in errors and _declared(route, 422) is None:
        responses.pop("422", None)
    for code, (description, headers) in errors.items():
        resp = responses.setdefault(str(code), {})
        declared = _declared(route, code)
        if declared is None or "description" not in declared:
            resp["description"] = description
        if headers:
            resp.setdefault("headers", {}).update(headers)
    for code, resp in responses.items():
        if code[:1] in ("4", "5") and not _json_schema_is_ours(resp):
            resp["content"] = {"application/json": {"schema": ERROR_REF}}
    # a route that declares its 200 as only a non-JSON type (a text stream) never answers JSON
    status = str(route.status_code or 200)
    declared_ok = _declared(route, int(status)) or {}
    if route.response_model is None and declared_ok.get("content") and \
            "application/json" not in declared_ok["content"]:
        responses.get(status, {}).get("content", {}).pop("application/json", None)
    op["responses"] = dict(sorted(responses.items()))


def _components(schema: dict[str, Any]) -> None:
    comps = schema.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body.pop("$defs", {}))
    schemas["ErrorBody"] = body
    comps.setdefault("responses", {})["MethodNotAllowed"] = {
        "description": "the path exists but not with this method (any path of this document, any method "
                       "it does not list): `Allow` names the methods it serves",
        "headers": ALLOW, "content": {"application/json": {"schema": ERROR_REF}}}
    # FastAPI's own validation-error shape is never sent: drop it once no operation refers to it
    if "/HTTPValidationError" not in json.dumps(schema.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)  # referred to by HTTPValidationError only


def install(app: FastAPI) -> None:
    """Wrap app.openapi (after security.install, which caches the document it builds)."""
    original = app.openapi
    built: list[dict[str, Any]] = []  # the document this function finished (FastAPI caches it)

    def openapi() -> dict[str, Any]:
        if built and app.openapi_schema is built[0]:
            return built[0]
        schema = original()
        for path, route in api_routes(app.routes):
            if not route.include_in_schema:
                continue
            for m in route.methods or ():
                op = schema.get("paths", {}).get(path, {}).get(m.lower())
                if op is not None:
                    _document(op, path, route, m)
        _components(schema)
        app.openapi_schema = schema
        built[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
