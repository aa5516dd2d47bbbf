"""Per-node keys for the agents' small API (logs): issued at join, kept so the server can call it.

Unlike API tokens and node credentials (stored hashed: the server only checks them), this
key is a secret the server presents, so it is stored as is, in the settings table, one row
per node (the key of the row is a hash of the node name, to fit the column).
"""
from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from orchestrator.auth import new_secret
from orchestrator.models import Setting


def _row_key(node: str) -> str:
    return "agent_key:" + hashlib.sha256(node.encode()).hexdigest()[:40]


def issue(s: Session, node: str) -> str:
    key = new_secret("dyk")
    row = s.get(Setting, _row_key(node))
    if row is None:
        s.add(Setting(key=_row_key(node), value=key))
    else:
        row.value = key
    return key


def get(s: Session, node: str) -> str | None:
    row = s.get(Setting, _row_key(node))
    return row.value if row is not None else None
