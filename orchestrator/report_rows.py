"""The instance rows a batch of agents' reports changes: plain objects, written as Core statements.

A batch of reports (api/agent.py) used to load as ORM objects the instances it changes and
let the session flush them: at 5,000 nodes, when 50,000 new instances report "running", the
flush and the objects' loading were ~60 % of a batch, on the GIL the deliveries of the other
nodes' assignments wait for. Now the rows read to find what changes (api/agent.py _changing)
become plain objects with the same attribute names; what the report handling changes in them
is written with one executemany per set of changed columns, and the finished ones deleted in
one statement. Only the columns a report changed are written, as the ORM's flush did.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import bindparam, delete, update
from sqlalchemy.orm import Session

from orchestrator import db_writes
from orchestrator.assignments import chunks
from orchestrator.models import Instance


@dataclass(slots=True)
class ReportedRow:
    """An instance row as a report batch reads it (LOADED's columns)."""

    id: str
    node_name: str | None
    desired_state: str
    state: str
    healthy: bool | None
    restart_count: int
    container_id: str | None
    exit_code: int | None
    host_ports: list[Any]
    last_error: str
    ready_since: float | None
    service_name: str
    slot: int
    revision: int
    updated_at: float


COLUMNS = tuple(f.name for f in fields(ReportedRow))
LOADED = tuple(getattr(Instance, c) for c in COLUMNS)
_t = Instance.__table__


class Batch:
    """The rows one batch may change, as read; written (changed columns only) by write()."""

    def __init__(self, rows: list[Any]):
        self.rows = [ReportedRow(*r) for r in rows]
        self._read = {r.id: tuple(getattr(r, c) for c in COLUMNS) for r in self.rows}
        self.deleted: set[str] = set()

    def delete(self, row: ReportedRow) -> None:
        self.deleted.add(row.id)

    def write(self, s: Session) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        names: set[str] = set()
        for row in self.rows:
            if row.id in self.deleted:
                names.add(row.service_name)
                continue
            now = tuple(getattr(row, c) for c in COLUMNS)
            changed = tuple(c for c, a, b in zip(COLUMNS, self._read[row.id], now) if a != b)
            if changed:
                names.add(row.service_name)
                groups.setdefault(changed, []).append({"k": row.id, **{"v_" + c: getattr(row, c) for c in changed}})
        if not names:
            return
        with db_writes.naming(s, names):
            conn = s.connection()
            for changed, params in groups.items():
                # (bind names apart from the columns': SQLAlchemy reserves those in SET)
                stmt = update(_t).where(_t.c.id == bindparam("k")).values({c: bindparam("v_" + c) for c in changed})
                conn.execute(stmt, params)
            for chunk in chunks(sorted(self.deleted)):
                conn.execute(delete(_t).where(_t.c.id.in_(chunk)))
        s.info["core_writes"] = True
