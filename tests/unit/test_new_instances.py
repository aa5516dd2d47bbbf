"""A pass writes the instances it creates with one INSERT after its other changes
(orchestrator/new_instances.py): the rows are as the pass left them (placed), and a
replacement that takes the (service, revision, slot) of an instance the same pass stopped
commits (the live-slot unique index sees the stop first). A real Reconciler on SQLite and on PostgreSQL."""
from __future__ import annotations

import time

import pytest

from orchestrator.db import Database, migrate
from orchestrator.hub import Hub
from orchestrator.models import Event, Instance, Node, Service
from orchestrator.reconcile import Reconciler
from tests import pg

NODES = ["n0", "n1"]


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


def _cluster(url):  # type: ignore[no-untyped-def]
    db, hub, now = Database(url), Hub(), time.time()

    def seed(s):  # type: ignore[no-untyped-def]
        for name in NODES:
            s.add(Node(name=name, address="127.0.0.1", status="ready", availability="active", cpus=8.0,
                       memory=16 * 1024**3, labels={}, last_heartbeat=now))
        s.add(Service(name="web", namespace="default", replicas=4, version=1,
                      spec={"image": "busybox:1", "command": ["sleep", "60"], "replicas": 4},
                      created_at=now, updated_at=now))

    db.run(seed)
    for name in NODES:
        hub.heartbeats[name] = now
    hub.bump = lambda nodes: None  # type: ignore[method-assign]
    return db, hub


def _rows(db: Database) -> list[tuple]:
    return db.run(lambda s: sorted((i.slot, i.revision, i.node_name, i.desired_state, i.state, i.host_ports,
                                    i.restart_count, i.last_error) for i in s.query(Instance)))


def test_the_rows_a_pass_creates_are_written_placed(url):  # type: ignore[no-untyped-def]
    db, hub = _cluster(url)
    r = Reconciler(db, hub)
    r._pass()
    rows = _rows(db)
    assert [row[:2] for row in rows] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert {row[2] for row in rows} == set(NODES)  # spread over both nodes
    assert all(row[3:] == ("running", "assigned", [], 0, "") for row in rows)
    assert db.run(lambda s: s.get(Service, "web").rollout_phase) in ("complete", "progressing")


def test_a_lost_node_s_slots_are_taken_again_in_the_same_pass(url):  # type: ignore[no-untyped-def]
    db, hub = _cluster(url)
    r = Reconciler(db, hub, node_ttl=5.0)
    r._pass()
    on_n0 = {row[0] for row in _rows(db) if row[2] == "n0"}
    assert on_n0
    # n0 falls silent: the pass that marks it down stops its instances and creates their
    # replacements in the same (revision, slot), on n1
    hub.heartbeats["n0"] = time.time() - 60
    db.run(lambda s: setattr(s.get(Node, "n0"), "last_heartbeat", time.time() - 60))
    r.hub.started_at = time.time() - 60  # past the start-up grace
    r._pass()
    rows = _rows(db)
    running = [row for row in rows if row[3] == "running"]
    assert sorted(row[0] for row in running) == [1, 2, 3, 4] and {row[2] for row in running} == {"n1"}
    assert {row[0] for row in rows if row[4] == "lost"} == on_n0
    assert db.run(lambda s: s.query(Event).filter(Event.kind == "node_down").count()) == 1


def test_the_plain_instance_has_every_column_of_the_table_with_its_default():
    """A column added to models.Instance but not to NewInstance would be left NULL by the
    pass's INSERT (or fail it): the two lists must stay one."""
    from dataclasses import MISSING, fields

    from orchestrator.new_instances import COLUMNS, NewInstance

    table = Instance.__table__
    assert set(COLUMNS) == {c.name for c in table.columns}
    for f in fields(NewInstance):
        column = table.columns[f.name]
        if column.default is None:  # NULL when nullable, else the pass must always give it
            assert f.default is (None if column.nullable else MISSING) and f.default_factory is MISSING, f.name
            continue
        ours = f.default_factory() if f.default_factory is not MISSING else f.default
        theirs = column.default.arg
        theirs = theirs(None) if callable(theirs) else theirs
        assert ours == theirs, f.name
