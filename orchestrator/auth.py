"""API tokens and node credentials: generation, hashing, bootstrap and request checks."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.errors import Forbidden, Unauthorized
from orchestrator.models import Node, Setting, Token

ROLES = ("viewer", "operator", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    # secrets are 256-bit random, so a fast hash is enough (no dictionary to attack)
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    kind: str  # "token" | "node"
    name: str  # token name or node name
    role: str  # viewer | operator | admin | node
    token_id: str | None = None
    expires_at: float | None = None  # an API token's expiry (cached principals are re-checked then)
    namespaces: tuple[str, ...] | None = None  # the only namespaces it may see (None: all)

    def sees(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def require(self, role: str) -> None:
        if self.kind == "node":
            raise Forbidden("an agent credential cannot call the user API")
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(f"this needs the {role!r} role; token {self.name!r} has {self.role!r}")

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return value.strip()


def authenticate(s: Session, secret: str, now: float) -> Principal:
    h = hash_secret(secret)
    tok = s.scalars(select(Token).where(Token.hash == h)).first()
    if tok is not None and hmac.compare_digest(tok.hash, h):
        if tok.expires_at is not None and tok.expires_at <= now:
            raise Unauthorized("token expired")
        # last-used is informative: only write it when stale, so reads stay read-only
        if tok.last_used_at is None or now - tok.last_used_at > 60:
            tok.last_used_at = now
        scope = tuple(tok.namespaces) if tok.namespaces is not None else None
        return Principal("token", tok.name, tok.role, tok.id, tok.expires_at, scope)
    node = s.scalars(select(Node).where(Node.credential_hash == h)).first()
    if node is not None and hmac.compare_digest(node.credential_hash, h):
        return Principal("node", node.name, "node")
    raise Unauthorized("invalid token")


def _secret_from(env_value: str | None, path: Path, prefix: str) -> str:
    """The configured secret, else the one in the data dir's file, else a new one written there."""
    if env_value:
        return env_value
    if path.exists():
        return path.read_text().strip()
    secret = new_secret(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def bootstrap(s: Session, data_dir: Path, admin_token: str | None, join_token: str | None) -> None:
    """Make sure the bootstrap admin token and the join token exist (hashes only in the DB)."""
    admin = _secret_from(admin_token, data_dir / "admin.token", "dya")
    h = hash_secret(admin)
    existing = s.get(Token, "bootstrap-admin")
    if existing is None:
        s.add(Token(id="bootstrap-admin", name="admin", role="admin", hash=h, created_at=time.time()))
    elif existing.hash != h:
        existing.hash = h
    # The configured join token becomes the active one when it is new or changed; otherwise the
    # active one stays, so a join token rotated through the API survives a restart.
    configured = hash_secret(_secret_from(join_token, data_dir / "join.token", "dyj"))
    seen = s.get(Setting, "join_token_configured")
    if seen is None or seen.value != configured:
        _set(s, "join_token_hash", configured)
        _set(s, "join_token_configured", configured)


def _set(s: Session, key: str, value: str) -> None:
    row = s.get(Setting, key)
    if row is None:
        s.add(Setting(key=key, value=value))
    else:
        row.value = value


def set_join_token(s: Session, secret: str) -> None:
    row = s.get(Setting, "join_token_hash")
    if row is None:
        s.add(Setting(key="join_token_hash", value=hash_secret(secret)))
    else:
        row.value = hash_secret(secret)


def check_join_token(s: Session, secret: str) -> None:
    row = s.get(Setting, "join_token_hash")
    if row is None or not hmac.compare_digest(row.value, hash_secret(secret)):
        raise Unauthorized("invalid join token")
