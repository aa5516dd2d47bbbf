"""ReadCache and Database's write counts: an answer is reused only while nothing was written
to its service since it was read, and never past its age."""
from __future__ import annotations

import collections

from sqlalchemy import update

from orchestrator import service_ops as ops
from orchestrator.db import Database, migrate
from orchestrator.models import Instance, Setting
from orchestrator.read_cache import ReadCache
from orchestrator.spec import ServiceApply


class Counter:
    def __init__(self) -> None:
        self.unattributed = 0
        self.service_writes: dict[str, int] = collections.defaultdict(int)


def test_reused_until_a_write_or_its_age():
    db = Counter()
    c = ReadCache(db, max_age=1.0)
    stamp = c.stamp("web")
    c.put("web", stamp, 100.0, {"v": 1})
    assert c.get("web", 100.5) == {"v": 1}
    assert c.get("web", 101.0) is None  # too old
    assert c.get("web", 99.0) is None  # clock went back: not trusted
    assert c.get("other", 100.5) is None
    db.service_writes["other"] += 1
    assert c.get("web", 100.5) == {"v": 1}  # another service's write leaves it alone
    db.service_writes["web"] += 1
    assert c.get("web", 100.5) is None  # its service was written since
    c.put("web", c.stamp("web"), 100.0, {"v": 2})
    db.unattributed += 1
    assert c.get("web", 100.5) is None  # service rows were written, nobody said whose


def test_an_answer_read_while_a_write_committed_is_not_reused():
    db = Counter()
    c = ReadCache(db)
    stamp = c.stamp("web")  # taken before the read...
    db.service_writes["web"] += 1  # ...a write commits meanwhile...
    c.put("web", stamp, 100.0, {"v": "maybe old"})
    assert c.get("web", 100.1) is None  # ...so the answer is never served


def test_only_committed_writes_count(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    migrate(url)
    db = Database(url)
    db.run(lambda s: s.get(Setting, "nothing"))
    assert db.writes == 0  # a read
    db.run(lambda s: s.add(Setting(key="k", value="1")))
    assert db.writes == 1

    def fails(s):  # type: ignore[no-untyped-def]
        s.add(Setting(key="k2", value="1"))
        s.flush()
        raise RuntimeError("rolled back")

    try:
        db.run(fails)
    except RuntimeError:
        pass
    assert db.writes == 1  # rolled back: nothing was written
    db.run(lambda s: s.get(Setting, "k"))
    assert db.writes == 1  # and the flag of the rolled-back one did not leak to the next user


def test_writes_are_counted_against_the_services_they_touch(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    migrate(url)
    db = Database(url)
    body = ServiceApply.model_validate({"image": "img:1", "replicas": 1})
    for name in ("web", "api"):
        db.run(lambda s: ops.apply(s, name, body, if_match=None, actor="t", now=1.0, history_limit=5))
    assert db.service_writes["web"] >= 1 and db.service_writes["api"] >= 1
    before = dict(db.service_writes), db.unattributed, db.writes
    db.run(lambda s: s.add(Setting(key="k", value="1")))  # neither service's rows
    assert (dict(db.service_writes), db.unattributed) == before[:2] and db.writes == before[2] + 1
    db.run(lambda s: s.add(Instance(id="i1", service_name="web", slot=1, revision=1, created_at=0, updated_at=0)))
    assert db.service_writes["web"] == before[0]["web"] + 1 and db.service_writes["api"] == before[0]["api"]

    def touch(s):  # type: ignore[no-untyped-def]
        s.get(Instance, "i1").state = "running"

    db.run(touch)
    assert db.service_writes["web"] == before[0]["web"] + 2
    assert db.unattributed == before[1]
    # a statement outside the ORM's flush names no service: it counts against all of them
    db.run(lambda s: s.execute(update(Instance).where(Instance.id == "i1").values(state="exited")))
    assert db.unattributed == before[1] + 1

    def fails(s):  # type: ignore[no-untyped-def]
        s.get(Instance, "i1").state = "running"
        s.flush()
        raise RuntimeError("rolled back")

    marks = dict(db.service_writes), db.unattributed
    try:
        db.run(fails)
    except RuntimeError:
        pass
    assert (dict(db.service_writes), db.unattributed) == marks  # nothing committed, nothing counted
