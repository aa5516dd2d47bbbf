"""ReadCache and Database.writes: an answer is reused only while nothing was written since it
was read, and never past its age."""
from __future__ import annotations

from orchestrator.db import Database, migrate
from orchestrator.models import Setting
from orchestrator.read_cache import ReadCache


class Counter:
    writes = 0


def test_reused_until_a_write_or_its_age():
    db = Counter()
    c = ReadCache(db, max_age=1.0)
    stamp = c.stamp()
    c.put("web", stamp, 100.0, {"v": 1})
    assert c.get("web", 100.5) == {"v": 1}
    assert c.get("web", 101.0) is None  # too old
    assert c.get("web", 99.0) is None  # clock went back: not trusted
    assert c.get("other", 100.5) is None
    db.writes += 1
    assert c.get("web", 100.5) is None  # something was written since


def test_an_answer_read_while_a_write_committed_is_not_reused():
    db = Counter()
    c = ReadCache(db)
    stamp = c.stamp()  # taken before the read...
    db.writes += 1  # ...a write commits meanwhile...
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
