"""The one error hierarchy, and its mapping to HTTP answers in one place.

Every error answer has the shape
  {"error": {"code": str, "message": str, "details": [{"field": str, "problem": str}]}}
(ErrorBody below; /openapi.json documents it on every operation, see api/openapi.py).
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger("dockyard.errors")


class DockyardError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, str]] | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.extra = extra


class BadRequest(DockyardError):
    status, code = 400, "bad_request"


class Unauthorized(DockyardError):
    status, code = 401, "unauthorized"


class Forbidden(DockyardError):
    status, code = 403, "forbidden"


class NotFound(DockyardError):
    status, code = 404, "not_found"


class Conflict(DockyardError):
    status, code = 409, "conflict"


class PayloadTooLarge(DockyardError):
    status, code = 413, "payload_too_large"


class ValidationFailed(DockyardError):
    status, code = 422, "validation_error"


class Unavailable(DockyardError):
    status, code = 503, "unavailable"


class ErrorDetail(BaseModel):
    field: str = Field(description="the field, parameter or header at fault, as the request named it")
    problem: str


class ErrorInfo(BaseModel):
    # some errors add fields (a 409 on a stale version adds current_version)
    model_config = ConfigDict(extra="allow")
    code: str = Field(description="stable and machine-readable, e.g. not_found, validation_error",
                      examples=["validation_error"])
    message: str = Field(description="for people: what was wrong and what to do")
    details: list[ErrorDetail] = Field(description="one entry per bad field (validation errors); else empty")


class ErrorBody(BaseModel):
    """Every error answer (4xx, 5xx) has this shape."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorInfo


def error_body(code: str, message: str, details: list[dict[str, str]] | None = None, **extra: Any) -> dict:
    err: dict[str, Any] = {"code": code, "message": message, "details": details or []}
    err.update(extra)
    return {"error": err}


def _field_path(loc: tuple | list) -> str:
    # drop the FastAPI location prefix ("body", "query", ...) so users see their own field names
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_details(errors: list[dict]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        problem = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            problem = "unknown field"
        out.append({"field": _field_path(e.get("loc", ())), "problem": problem})
    return out


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_media_type"}
OUT_OF_RANGE = "a number in the request is out of range"
_METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}


def allowed_methods(app: Any, path: str) -> list[str]:
    """The methods the app serves at a concrete path, from its OpenAPI document: the router's own
    405 names only the first route whose path matched, and one path has one route per method."""
    table = getattr(app.state, "allow_table", None)
    if table is None:
        table = [(compile_path(p)[0], {m.upper() for m in ops if m in _METHODS})
                 for p, ops in app.openapi().get("paths", {}).items()]
        app.state.allow_table = table
    out: set[str] = set()
    for regex, methods in table:
        if regex.match(path):
            out |= methods
    return sorted(out)


def install(app: FastAPI) -> None:
    @app.exception_handler(DockyardError)
    async def _dockyard(_: Request, exc: DockyardError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message, exc.details, **exc.extra), exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        msg = "invalid request: " + "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        return JSONResponse(error_body("validation_error", msg, details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        message = str(exc.detail)
        if exc.status_code == 405:
            given = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
            allow = sorted(given | set(allowed_methods(request.app, request.url.path)))
            headers["Allow"] = ", ".join(allow)
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allow) or 'none'}"
        return JSONResponse(error_body(HTTP_CODES.get(exc.status_code, "http_error"), message), exc.status_code,
                            headers=headers or None)

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        # an integer past what the database takes (SQLite: 64 bits) that no bound caught
        log.warning("overflow: %s", exc)
        return JSONResponse(error_body("validation_error", OUT_OF_RANGE), 422)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # the database refused a value (PostgreSQL: a number out of its column's range)
        log.warning("data error: %s", str(exc).splitlines()[0])
        return JSONResponse(error_body("validation_error", OUT_OF_RANGE + " or of a kind the database refuses"),
                            422)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # two writers created the same thing at once (e.g. the same service on PostgreSQL): one lost
        log.warning("integrity error: %s", str(exc).splitlines()[0])
        return JSONResponse(error_body("conflict", "the change conflicts with a concurrent one: re-read and retry"), 409)

    @app.exception_handler(OperationalError)
    async def _database(_: Request, exc: OperationalError) -> JSONResponse:
        # db.run already retried; a database that stays busy (or away) is unavailable, not broken
        log.warning("database error: %s", str(exc).splitlines()[0])
        return JSONResponse(error_body("unavailable", "the database is busy or unreachable; retry shortly"), 503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal", "internal server error; see the server log"), 500)
