"""Per-node secrets for the agents' small API (logs): the key the server presents, the certificate it pins.

Unlike API tokens and node credentials (stored hashed: the server only checks them), the
key is a secret the server presents, so it is stored as is, in the settings table, one row
per node (the key of the row is a hash of the node name, to fit the column). The agent's
certificate (public, PEM, sent at join when the agent serves HTTPS) lives beside it the same
way, so no migration is needed; an empty certificate removes the row.
"""
from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from orchestrator.auth import new_secret
from orchestrator.models import Setting


def _row_key(node: str, kind: str = "agent_key") -> str:
    return f"{kind}:" + hashlib.sha256(node.encode()).hexdigest()[:40]


def _put(s: Session, key: str, value: str) -> None:
    row = s.get(Setting, key)
    if row is None:
        s.add(Setting(key=key, value=value))
    else:
        row.value = value


def issue(s: Session, node: str) -> str:
    key = new_secret("dyk")
    _put(s, _row_key(node), key)
    return key


def get(s: Session, node: str) -> str | None:
    row = s.get(Setting, _row_key(node))
    return row.value if row is not None else None


def set_cert(s: Session, node: str, pem: str) -> None:
    """Pin the certificate the node's agent serves its API with ("" when it serves plain HTTP)."""
    key = _row_key(node, "agent_cert")
    if pem:
        _put(s, key, pem)
    else:
        row = s.get(Setting, key)
        if row is not None:
            s.delete(row)


def get_cert(s: Session, node: str) -> str | None:
    row = s.get(Setting, _row_key(node, "agent_cert"))
    return row.value if row is not None else None


def forget(s: Session, node: str) -> None:
    """Drop a removed node's key and certificate (call where the node is deleted)."""
    for kind in ("agent_key", "agent_cert"):
        row = s.get(Setting, _row_key(node, kind))
        if row is not None:
            s.delete(row)
