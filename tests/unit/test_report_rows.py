"""A batch of agents' reports is written as plain rows (orchestrator/report_rows.py): what each
report changes lands, only the columns it changed, events are recorded, a finished instance
is deleted, and the rest is left alone. api/agent.py's _write_reports on real SQLite and PostgreSQL databases."""
from __future__ import annotations

import time
from types import SimpleNamespace

from orchestrator import report_rows
from orchestrator.api.agent import _write_reports
import pytest

from orchestrator.db import Database, migrate
from orchestrator.models import Event, Instance, Node, Service
from orchestrator.protocol import ReportItem
from tests import pg

T0 = 1_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        u = f"sqlite:///{tmp_path / 'state.db'}"
        migrate(u)
        yield u
        return
    u = pg.fresh_database()
    yield u
    pg.drop_database(u)


def _setup(url):  # type: ignore[no-untyped-def]
    db = Database(url)

    def seed(s):  # type: ignore[no-untyped-def]
        for name in ("n1", "n2"):
            s.add(Node(name=name, address="127.0.0.1", status="ready", availability="active", cpus=8.0,
                       memory=16 * 1024**3, labels={}, last_heartbeat=T0))
        s.add(Service(name="web", namespace="default", replicas=4, version=1,
                      spec={"image": "busybox:1", "replicas": 4}, created_at=T0, updated_at=T0))
        rows = {
            "a": ("n1", "running", "assigned", None),   # reported running: becomes ready
            "b": ("n1", "running", "running", "c-b"),   # reported unhealthy and restarted
            "c": ("n1", "stopped", "running", "c-c"),   # not reported, stopped: finished, deleted
            "d": ("n1", "running", "running", "c-d"),   # not reported, running: back to assigned
            "e": ("n2", "running", "running", "c-e"),   # another node's: untouched
        }
        for k, (slot, (node, desired, state, cid)) in enumerate(rows.items(), start=1):
            s.add(Instance(id=slot, service_name="web", slot=k, revision=1, node_name=node, desired_state=desired,
                           state=state, container_id=cid, host_ports=[], restart_count=0, last_error="",
                           healthy=None, ready_since=T0 if state == "running" else None,
                           created_at=T0, updated_at=T0))

    db.run(seed)
    calls: list[str] = []
    st = SimpleNamespace(db=db, hub=SimpleNamespace(watched=None, events_changed=lambda: calls.append("events")),
                         routes=SimpleNamespace(changed=lambda: calls.append("routes")))
    return db, st, calls


def _sqlite(tmp_path) -> str:  # type: ignore[no-untyped-def]
    u = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(u)
    return u


def _row(db: Database, iid: str):  # type: ignore[no-untyped-def]
    return db.run(lambda s: (lambda i: None if i is None else {c: getattr(i, c) for c in report_rows.COLUMNS})(
        s.get(Instance, iid)))


def test_a_batch_writes_what_its_reports_change_and_nothing_else(url):  # type: ignore[no-untyped-def]
    db, st, calls = _setup(url)
    e_before = _row(db, "e")
    now = time.time()
    report = [
        ReportItem(instance_id="a", state="running", container_id="c-a", healthy=None, restart_count=0,
                   host_ports=[{"container_port": 80, "host_port": 32768, "protocol": "tcp"}]),
        ReportItem(instance_id="b", state="running", container_id="c-b", healthy=False, restart_count=1,
                   error="health check failed"),
    ]
    results = _write_reports(st, [("n1", report, now), ("n2", None, now)])
    assert len(results) == 2 and results[0] is True  # watched None: every change kicks the loop

    a = _row(db, "a")
    assert (a["state"], a["container_id"], a["ready_since"], a["updated_at"]) == ("running", "c-a", now, now)
    assert a["host_ports"] == [{"container_port": 80, "host_port": 32768, "protocol": "tcp"}]
    b = _row(db, "b")
    assert (b["healthy"], b["restart_count"], b["last_error"], b["ready_since"]) == (False, 1, "health check failed", None)
    assert _row(db, "c") is None  # its container is gone: finished
    d = _row(db, "d")
    assert (d["state"], d["ready_since"], d["updated_at"]) == ("assigned", None, now)
    assert _row(db, "e") == e_before  # a node without a report: untouched
    kinds = db.run(lambda s: sorted(e.kind for e in s.query(Event).filter(Event.instance == "b")))
    assert kinds == ["instance_restarted", "instance_unhealthy"]
    assert "routes" in calls  # an endpoint came and went


def _statements(db: Database) -> list[str]:
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(" ".join(statement.split())))
    return seen


def test_only_the_columns_a_report_changed_are_written(tmp_path):  # type: ignore[no-untyped-def]
    db, st, _calls = _setup(_sqlite(tmp_path))
    seen = _statements(db)
    report = [ReportItem(instance_id="b", state="running", container_id="c-b", healthy=False, restart_count=0,
                         error="health check failed"),
              ReportItem(instance_id="c", state="running", container_id="c-c", healthy=None, restart_count=0),
              ReportItem(instance_id="d", state="running", container_id="c-d", healthy=None, restart_count=0),
              ReportItem(instance_id="a", state="assigned", container_id=None, healthy=None, restart_count=0)]
    _write_reports(st, [("n1", report, time.time())])
    updates = [x for x in seen if x.startswith("UPDATE instances")]
    assert len(updates) == 1  # "b" alone changed: c and d say again what the table has, "a" too
    written = updates[0].split(" SET ")[1].split(" WHERE ")[0]
    assert sorted(written.split(", ")) == ["healthy=?", "last_error=?", "ready_since=?", "updated_at=?"]
    assert not [x for x in seen if x.startswith("DELETE FROM instances")]


def test_a_report_that_changes_nothing_writes_no_instance(tmp_path):  # type: ignore[no-untyped-def]
    db, st, _calls = _setup(_sqlite(tmp_path))
    seen = _statements(db)
    same = [ReportItem(instance_id=k, state="running", container_id=f"c-{k}", healthy=None, restart_count=0)
            for k in "bcd"] + [ReportItem(instance_id="a", state="assigned", container_id=None, restart_count=0)]
    _write_reports(st, [("n1", same, time.time())])
    assert not [x for x in seen if x.startswith(("UPDATE instances", "DELETE FROM instances"))]
