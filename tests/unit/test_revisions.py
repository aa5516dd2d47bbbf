"""Revisions and rollout bookkeeping on a real (SQLite file) database, without the server:
numbering, change causes, history limit, diffs, rollback targets, pause and resume."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from orchestrator import revisions
from orchestrator import service_ops as ops
from orchestrator.db import Database
from orchestrator.errors import Conflict, NotFound
from orchestrator.models import Base, Event, Instance, Revision, Service
from orchestrator.spec import ServiceApply


@pytest.fixture
def db(tmp_path):  # type: ignore[no-untyped-def]
    d = Database(f"sqlite:///{tmp_path / 't.db'}")
    Base.metadata.create_all(d.engine)
    yield d
    d.engine.dispose()


def put(db: Database, name: str = "web", limit: int = 10, **kw) -> Service:  # type: ignore[no-untyped-def]
    body = ServiceApply.model_validate({"image": "img:1", "replicas": 2, **kw})
    return db.run(lambda s: ops.apply(s, name, body, if_match=None, actor="t", now=1.0, history_limit=limit)[0])


def revs(db: Database, name: str = "web") -> list[tuple[int, str]]:
    return db.run(lambda s: [(r.number, r.change_cause) for r in s.scalars(
        select(Revision).where(Revision.service_name == name).order_by(Revision.number))])


def test_every_spec_change_is_a_numbered_revision_with_a_cause(db):  # type: ignore[no-untyped-def]
    put(db)
    put(db, image="img:2", change_cause="ship 2")
    put(db, image="img:2", env={"A": "1"})  # generated summary
    put(db, image="img:2", env={"A": "1"}, replicas=5)  # replicas only: no revision
    put(db, image="img:2", env={"A": "1"}, replicas=5)  # identical: nothing
    assert revs(db) == [(1, "created"), (2, "ship 2"), (3, "env.A changed")]


def test_generated_summary_names_the_image():
    assert revisions.summary({"image": "a:1"}, {"image": "a:2"}) == "image a:1 -> a:2"
    many = revisions.summary({"env": {}}, {"env": {k: "1" for k in "ABCDEF"}})
    assert many.endswith("(+2 more)")


def test_diff_between_revisions():
    a = {"image": "a:1", "env": {"X": "1", "Y": "2"}, "update": {"max_surge": "25%"}}
    b = {"image": "a:2", "env": {"X": "1", "Z": "3"}, "update": {"max_surge": 1}}
    assert revisions.diff(a, b) == [
        {"field": "env.Y", "from": "2", "to": None},
        {"field": "env.Z", "from": None, "to": "3"},
        {"field": "image", "from": "a:1", "to": "a:2"},
        {"field": "update.max_surge", "from": "25%", "to": 1},
    ]
    assert revisions.diff(a, a) == []


def test_history_limit_keeps_the_newest_and_those_in_use(db):  # type: ignore[no-untyped-def]
    put(db, limit=3)
    db.run(lambda s: s.add(Instance(id="i1", service_name="web", slot=1, revision=1, created_at=0, updated_at=0)))
    for n in range(2, 7):
        put(db, limit=3, image=f"img:{n}")
    assert [n for n, _ in revs(db)] == [1, 4, 5, 6]  # 1 is still run by an instance
    db.run(lambda s: s.delete(s.get(Instance, "i1")))
    put(db, limit=3, image="img:7")
    assert [n for n, _ in revs(db)] == [5, 6, 7]


def complete(db: Database) -> None:
    db.run(lambda s: setattr(ops.load(s, "web"), "rollout_phase", "complete"))


def test_rollback_goes_to_the_previous_or_a_named_revision(db):  # type: ignore[no-untyped-def]
    put(db)
    put(db, image="img:2")
    complete(db)
    put(db, image="img:3")
    svc = db.run(lambda s: ops.rollback(s, "web", None, actor="t", now=2.0))
    assert svc.revision == 2 and svc.rollout_phase == "progressing" and svc.spec["image"] == "img:2"
    svc = db.run(lambda s: ops.rollback(s, "web", 1, actor="t", now=3.0))
    assert svc.revision == 1 and svc.spec["image"] == "img:1" and svc.rollout_from == 2
    with pytest.raises(Conflict):
        db.run(lambda s: ops.rollback(s, "web", 1, actor="t", now=4.0))
    with pytest.raises(NotFound):
        db.run(lambda s: ops.rollback(s, "web", 99, actor="t", now=4.0))
    # revision numbers never move: the next change is revision 4
    put(db, image="img:4")
    assert [n for n, _ in revs(db)] == [1, 2, 3, 4]


def test_a_failed_rollout_returns_to_the_last_complete_revision(db):  # type: ignore[no-untyped-def]
    put(db)  # 1, complete
    put(db, image="img:2")  # 1 -> 2 progressing
    svc = put(db, image="img:3")  # superseded before 2 completed
    assert svc.revision == 3 and svc.rollout_from == 1
    complete(db)
    assert put(db, image="img:4").rollout_from == 3


def test_pause_and_resume(db):  # type: ignore[no-untyped-def]
    put(db)
    with pytest.raises(Conflict):  # nothing rolling
        db.run(lambda s: ops.pause_rollout(s, "web", actor="t", now=2.0))
    put(db, image="img:2")
    db.run(lambda s: s.add_all([
        Instance(id="bad", service_name="web", slot=1, revision=2, state="exited", restart_count=5,
                 created_at=0, updated_at=0),
        Instance(id="good", service_name="web", slot=2, revision=2, state="running", created_at=0, updated_at=0),
    ]))
    svc = db.run(lambda s: ops.pause_rollout(s, "web", actor="t", now=2.0))
    assert svc.rollout_phase == "paused" and "paused by t" in svc.rollout_reason
    assert db.run(lambda s: ops.pause_rollout(s, "web", actor="t", now=2.5)).rollout_phase == "paused"  # idempotent
    svc = db.run(lambda s: ops.resume_rollout(s, "web", actor="t", now=3.0))
    assert svc.rollout_phase == "progressing" and svc.rollout_started_at == 3.0 and svc.rollout_reason == ""
    states = db.run(lambda s: {i.id: i.desired_state for i in s.scalars(select(Instance))})
    assert states == {"bad": "stopped", "good": "running"}  # the failed one gets a fresh try
    with pytest.raises(Conflict):
        db.run(lambda s: ops.resume_rollout(s, "web", actor="t", now=4.0))
    kinds = db.run(lambda s: [e.kind for e in s.scalars(select(Event).order_by(Event.id))])
    assert "rollout_paused" in kinds and "rollout_resumed" in kinds


def test_rollout_view_counts(db):  # type: ignore[no-untyped-def]
    put(db)
    put(db, image="img:2")
    live = [Instance(id="o1", service_name="web", slot=1, revision=1, state="running", healthy=True,
                     ready_since=0.5, created_at=0, updated_at=0),
            Instance(id="n1", service_name="web", slot=1, revision=2, state="starting", created_at=0, updated_at=0)]
    out = db.run(lambda s: ops.rollout_dict(ops.load(s, "web"), live, 10.0))
    assert {k: out[k] for k in ("revision", "from_revision", "phase", "new", "old", "ready", "new_ready",
                                "max_surge", "max_unavailable", "old_revisions")} == {
        "revision": 2, "from_revision": 1, "phase": "progressing", "new": 1, "old": 1, "ready": 1,
        "new_ready": 0, "max_surge": 1, "max_unavailable": 0, "old_revisions": [1]}  # 25% of 2
