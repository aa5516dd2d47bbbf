"""API tokens (admin only): create (the secret is shown once), list, revoke; join-token rotation.

Only SHA-256 hashes of secrets are stored. Every change is an event naming the admin token
that made it.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from orchestrator.api.deps import State, YamlRoute, role, state
from orchestrator.auth import Principal, hash_secret, new_secret, set_join_token
from orchestrator import namespaces
from orchestrator.errors import Conflict, Forbidden, NotFound, ValidationFailed
from orchestrator.events import record
from orchestrator.models import Token
from orchestrator.service_ops import iso

# error responses are documented per operation by api/openapi.py, derived from the dependencies
router = APIRouter(prefix="/v1", tags=["tokens"], route_class=YamlRoute)
NS_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$")
BOOTSTRAP_ID = "bootstrap-admin"
MAX_LIFETIME = 10 * 365 * 86400.0
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()  # the last one ISO 8601 prints


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, description="unique; events name the token by it",
                      examples=["ci-deployer"])
    role: Literal["viewer", "operator", "admin"]
    expires_in: float | None = Field(default=None, gt=0, le=MAX_LIFETIME, description="seconds from now")
    expires_at: datetime | None = Field(default=None, description="absolute expiry (ISO 8601), before the year 10000")
    namespaces: list[str] | None = Field(default=None, max_length=100, description=(
        "limit the token to these namespaces (existing ones): it sees and changes nothing else, and a name "
        "outside them is a 404; omitted: every namespace"), examples=[["alice"]])

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        for ns in v:
            if not NS_NAME.fullmatch(ns):
                raise ValueError(f"{ns[:70]!r} is not a namespace name (a DNS label)")
        return sorted(set(v))

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TOKEN_NAME.fullmatch(v):
            raise ValueError("1-63 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _one_expiry(self) -> "TokenIn":
        if self.expires_in is not None and self.expires_at is not None:
            raise ValueError("give expires_in or expires_at, not both")
        return self

    def expiry(self, now: float) -> float | None:
        if self.expires_in is not None:
            return now + self.expires_in
        if self.expires_at is not None:
            at = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=timezone.utc)
            return at.timestamp()
        return None


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: str | None
    last_used_at: str | None
    expires_at: str | None
    expired: bool
    namespaces: list[str] | None = Field(description="the only namespaces it may use; null: all")


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown this once, only its hash is kept")


class JoinTokenOut(BaseModel):
    join_token: str = Field(description="the new join token: shown this once")
    message: str


def _unscoped(p: Principal) -> None:
    if p.namespaces is not None:
        raise Forbidden("a token limited to namespaces cannot manage tokens: use an admin token for every namespace")


def token_dict(t: Token, now: float) -> dict:
    return {"id": t.id, "name": t.name, "role": t.role, "created_at": iso(t.created_at),
            "last_used_at": iso(t.last_used_at), "expires_at": iso(t.expires_at),
            "expired": t.expires_at is not None and t.expires_at <= now, "namespaces": t.namespaces}


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenIn, response: Response, st: State = Depends(state),
                 p: Principal = Depends(role("admin"))) -> dict:
    response.headers["Cache-Control"] = "no-store"
    _unscoped(p)
    now = time.time()
    expires = body.expiry(now)
    if expires is not None and expires <= now:
        raise ValidationFailed("expires_at is in the past", [{"field": "expires_at", "problem": "in the past"}])
    if expires is not None and expires > LAST_INSTANT:  # 9999-12-31T23:00-05:00 is in the year 10000 UTC
        raise ValidationFailed("expires_at is after 9999-12-31T23:59:59Z",
                               [{"field": "expires_at", "problem": "must be before the year 10000 (UTC)"}])
    secret = new_secret("dyt")

    def write(s):  # type: ignore[no-untyped-def]
        if s.scalars(select(Token).where(Token.name == body.name)).first() is not None:
            raise Conflict(f"a token named {body.name!r} exists: names identify tokens in the audit trail")
        if body.namespaces is not None:
            known = namespaces.parents(s)
            if missing := [ns for ns in body.namespaces if ns not in known]:
                raise ValidationFailed(f"no namespace {missing[0]!r}",
                                       [{"field": "namespaces", "problem": f"no namespace {ns!r}"} for ns in missing])
        t = Token(id="tok_" + secrets.token_hex(8), name=body.name, role=body.role, hash=hash_secret(secret),
                  created_at=now, expires_at=expires, namespaces=body.namespaces)
        s.add(t)
        record(s, "token_created", f"token {body.name!r} ({body.role}) created"
               + (f", expires {iso(expires)}" if expires else ""), actor=p.label, now=now)
        return token_dict(t, now) | {"token": secret}

    return st.db.run(write)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(st: State = Depends(state), p: Principal = Depends(role("admin"))) -> list[dict]:
    _unscoped(p)
    now = time.time()
    return st.db.run(lambda s: [token_dict(t, now) for t in s.scalars(select(Token).order_by(Token.created_at))])


@router.delete("/tokens/{token_id}")
def delete_token(token_id: str, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    _unscoped(p)
    def write(s):  # type: ignore[no-untyped-def]
        t = s.get(Token, token_id)
        if t is None:
            raise NotFound(f"token {token_id!r} not found")
        if t.id == BOOTSTRAP_ID:
            raise Conflict("the bootstrap admin token comes from the server's configuration "
                           "(--admin-token or DATA_DIR/admin.token): change it there and restart the server")
        s.delete(t)
        record(s, "token_deleted", f"token {t.name!r} ({t.role}) revoked", actor=p.label)
        return {"id": token_id, "name": t.name, "deleted": True}

    out = st.db.run(write)
    st.hub.forget_token(token_id)  # its next request is checked again: 401
    return out


@router.post("/cluster/join-token/rotate", response_model=JoinTokenOut, tags=["cluster"])
def rotate_join_token(response: Response, st: State = Depends(state), p: Principal = Depends(role("admin"))) -> dict:
    _unscoped(p)
    secret = new_secret("dyj")

    def write(s):  # type: ignore[no-untyped-def]
        set_join_token(s, secret)
        record(s, "join_token_rotated", "join token rotated: the old one no longer joins nodes; "
               "joined nodes keep their credentials", actor=p.label)

    st.db.run(write)
    if not st.settings.join_token:
        # the token came from DATA_DIR/join.token: keep that file current (`dockyard up` reads it)
        path = st.settings.data_dir / "join.token"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.replace(tmp, path)
    response.headers["Cache-Control"] = "no-store"
    return {"join_token": secret,
            "message": "new join token: agents joining from now on need it; joined nodes keep working"}
