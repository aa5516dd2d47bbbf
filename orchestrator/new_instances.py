"""Instances a reconcile pass creates: plain objects for the pass, one executemany at its end.

A pass that fills a cluster creates thousands of instances (2,000 per pass while 50,000 are
placed on 5,000 nodes). As ORM objects, their construction (sixteen instrumented attribute
sets each) and their flush took ~45 % of such a pass; as plain slotted objects written with
one Core INSERT the same pass is ~2x faster (docs/performance.md, "5,000 nodes"). The rest
of the pass reads them like the loaded instances: same attribute names.

The INSERT comes after the session's flush: a pass can stop a slot's instance and create its
replacement with the same (service, revision, slot), and the unique index on live slots must
see the stop first (the ORM's own flush order, updates before inserts, did the same).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from orchestrator import db_writes
from orchestrator.models import Instance


@dataclass(slots=True)
class NewInstance:
    """An instance this pass created, not written yet: the columns of models.Instance."""

    id: str
    service_name: str
    slot: int
    revision: int
    created_at: float
    updated_at: float
    node_name: str | None = None
    desired_state: str = "running"
    state: str = "pending"
    container_id: str | None = None
    host_ports: list[Any] = field(default_factory=list)
    exit_code: int | None = None
    restart_count: int = 0
    last_error: str = ""
    healthy: bool | None = None
    ready_since: float | None = None


COLUMNS = tuple(f.name for f in fields(NewInstance))  # (dataclasses.asdict deep-copies: 5x slower)


def write(s: Session, fresh: list[NewInstance]) -> None:
    """Insert the pass's new instances as they are now (placed or not), after its other changes."""
    if not fresh:
        return
    s.flush()
    with db_writes.naming(s, {i.service_name for i in fresh}):
        s.connection().execute(insert(Instance.__table__), [{c: getattr(i, c) for c in COLUMNS} for i in fresh])
    s.info["core_writes"] = True
