"""The leader lease (orchestrator/coord/lease.py) on a real database, SQLite and PostgreSQL:
takeover only after expiry, the epoch grows, a fenced write of a deposed leader changes nothing."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from orchestrator.coord.lease import Lease, NotLeader, current_epoch, read
from orchestrator.db import Database, migrate
from tests import pg


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'l.db'}"
        migrate(url)
    else:
        url = pg.fresh_database()
    d = Database(url)
    yield d
    d.engine.dispose()
    if request.param == "postgres":
        pg.drop_database(url)


def test_one_holder_then_takeover_after_expiry(db):
    dialect = db.engine.dialect.name
    a, b = Lease("a", 0.5, dialect), Lease("b", 0.5, dialect)
    e1 = db.run(a.acquire)
    assert e1 == 1
    assert db.run(b.acquire) is None  # held and fresh
    assert db.run(lambda s: a.renew(s, e1))
    time.sleep(0.7)
    e2 = db.run(b.acquire)
    assert e2 == 2
    assert not db.run(lambda s: a.renew(s, e1))  # a's term is over
    info = db.run(lambda s: read(s, dialect))
    assert info.holder == "b" and info.epoch == 2 and info.valid
    assert db.run(current_epoch) == 2


def test_a_deposed_leader_writes_nothing(db):
    dialect = db.engine.dialect.name
    a, b = Lease("a", 0.3, dialect), Lease("b", 5, dialect)
    e1 = db.run(a.acquire)
    time.sleep(0.4)
    db.run(b.acquire)

    def write(s):  # type: ignore[no-untyped-def]
        s.execute(text("INSERT INTO settings (key, value) VALUES ('x', 'from a')"))
        a.fence(s, e1)

    with pytest.raises(NotLeader):
        db.run(write)
    assert db.run(lambda s: s.execute(text("SELECT count(*) FROM settings WHERE key = 'x'")).scalar()) == 0


def test_an_expired_lease_fences_even_before_a_takeover(db):
    a = Lease("a", 0.2, db.engine.dialect.name)
    e1 = db.run(a.acquire)
    db.run(lambda s: a.fence(s, e1))  # fresh: fine
    time.sleep(0.3)
    with pytest.raises(NotLeader):
        db.run(lambda s: a.fence(s, e1))
    assert db.run(lambda s: a.renew(s, e1))  # nobody took over: renewing is safe, and fences pass again
    db.run(lambda s: a.fence(s, e1))


def test_release_lets_another_take_over_at_once(db):
    dialect = db.engine.dialect.name
    a, b = Lease("a", 30, dialect), Lease("b", 30, dialect)
    e1 = db.run(a.acquire)
    assert db.run(b.acquire) is None
    assert db.run(lambda s: a.release(s, e1))
    assert db.run(b.acquire) == e1 + 1


def test_a_sole_server_takes_its_crashed_predecessors_lease_at_once(db):
    """SQLite: the file lock says no other server runs, so a restarted server need not wait
    out the lease its killed predecessor left behind; a plain acquire still waits."""
    dialect = db.engine.dialect.name
    dead, restarted = Lease("dead", 30.0, dialect), Lease("restarted", 30.0, dialect)
    e1 = db.run(dead.acquire)
    assert db.run(restarted.acquire) is None  # unexpired: a shared database waits
    e2 = db.run(lambda s: restarted.acquire(s, steal=True))
    assert e2 == e1 + 1
    with pytest.raises(NotLeader):
        db.run(lambda s: dead.fence(s, e1))  # the predecessor's epoch is over
