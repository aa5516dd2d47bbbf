"""A backlog over the pass budget is placed over several passes, and the nodes those passes
assign work to are woken together when it is done (or HOLD_MAX after the first), not once per
pass; and a node is woken at most once per WAKE_SPACING x the heartbeat interval. A real Reconciler on a SQLite database; passes driven by hand."""
from __future__ import annotations

import time

import pytest

from orchestrator import reconcile
from orchestrator.db import Database, migrate
from orchestrator.hub import Hub
from orchestrator.models import Instance, Node, Service
from orchestrator.reconcile import Reconciler

NODES = [f"n{k}" for k in range(6)]


@pytest.fixture
def loop(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(reconcile, "BACKLOG_BUDGET_FACTOR", 1)  # the budget as set (its own test below)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    db = Database(url)
    hub = Hub()
    now = time.time()

    def seed(s):  # type: ignore[no-untyped-def]
        for name in NODES:
            s.add(Node(name=name, address="127.0.0.1", status="ready", availability="active", cpus=8.0,
                       memory=16 * 1024**3, labels={}, last_heartbeat=now))
        for k in range(5):
            s.add(Service(name=f"svc{k}", namespace="default", replicas=4, version=1,
                          spec={"image": "busybox:1", "command": ["sleep", "60"], "replicas": 4},
                          created_at=now, updated_at=now))

    db.run(seed)
    for name in NODES:
        hub.heartbeats[name] = now
    r = Reconciler(db, hub)
    r.budget = 8  # two services a pass: five services take three passes
    bumps: list[set[str]] = []
    hub.bump = lambda nodes: bumps.append(set(nodes))  # type: ignore[method-assign]
    return r, db, bumps


def placed(db: Database) -> int:
    return db.run(lambda s: s.query(Instance).filter(Instance.node_name.is_not(None)).count())


def test_the_nodes_of_a_backlog_are_woken_once_when_it_is_placed(loop):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    counts = []
    for _ in range(3):
        r._pass()
        counts.append(placed(db))
    assert counts == [8, 16, 20]  # the budget spread the work over three passes
    # woken once, when the last instance is placed: every node has work. The services placed
    # first are still planned again by later passes (their rows moved), but those passes place
    # nothing, so the nodes do not wait for them
    assert bumps == [set(NODES)]
    assert r._deferred and not r._placing
    for _ in range(3):
        r._pass()
    assert len(bumps) == 1  # nothing more to wake


def test_a_scale_up_over_the_budget_is_held_until_it_is_placed_too(loop, monkeypatch):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    monkeypatch.setattr(reconcile, "WAKE_SPACING", 0.0)  # the first placement's wake-up was just now
    for _ in range(6):
        r._pass()
    assert placed(db) == 20 and len(bumps) == 1
    bumps.clear()

    def scale(s):  # type: ignore[no-untyped-def]
        for svc in s.query(Service):
            svc.replicas, svc.version = 8, svc.version + 1  # what a client's write does

    db.run(scale)
    counts = []
    for _ in range(8):
        r._pass()
        counts.append(placed(db))
        if placed(db) < 40:
            assert not bumps, counts  # instances left to create: the nodes wait
    assert placed(db) == 40 and len(bumps) == 1  # woken once, when the last one was placed


def test_an_idle_service_does_not_keep_a_big_one_out(loop):  # type: ignore[no-untyped-def]
    """A service scaled to 0 (no rows) is no longer the one service a pass always takes: a
    service bigger than the budget is still planned."""
    r, db, _bumps = loop

    def shape(s):  # type: ignore[no-untyped-def]
        for svc in s.query(Service):
            svc.replicas = 0 if svc.name == "svc0" else 1
        big = s.get(Service, "svc1")
        big.replicas, big.version = 12, big.version + 1  # over the budget of 8

    db.run(shape)
    for _ in range(6):
        r._pass()
    assert db.run(lambda s: s.query(Instance).filter(Instance.service_name == "svc1").count()) == 12
    assert not r._deferred


def test_a_long_backlog_wakes_its_nodes_after_hold_max(loop, monkeypatch):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    monkeypatch.setattr(reconcile, "HOLD_MAX", 0.0)  # every pass is past the hold
    monkeypatch.setattr(reconcile, "HOLD_HEARTBEATS", 0.0)
    monkeypatch.setattr(reconcile, "WAKE_SPACING", 0.0)
    for _ in range(3):
        r._pass()
    assert placed(db) == 20 and len(bumps) == 3 and all(bumps)


@pytest.mark.parametrize("burst, counts", [(False, [8, 20]), (True, [8, 16])], ids=["quiet", "api-burst"])
def test_a_backlog_gets_a_bigger_budget_unless_api_writes_keep_coming(loop, monkeypatch, burst, counts):  # type: ignore[no-untyped-def]
    r, db, _bumps = loop
    monkeypatch.setattr(reconcile, "BACKLOG_BUDGET_FACTOR", 2)
    if burst:
        _kicked_during_passes(r, monkeypatch, api=True)
    got = []
    for _ in range(2):
        r._pass()  # the first knows of no backlog yet: the plain budget
        got.append(placed(db))
    assert got == counts  # quiet: the other 12 in one pass (budget 2 x 8)


def test_passes_come_closer_together_while_a_backlog_lasts(loop):  # type: ignore[no-untyped-def]
    r, _db, _bumps = loop
    r._last_start, r._last_duration = 100.0, 1.0
    r._deferred = True
    assert r._next_allowed() == 100.0 + reconcile.BACKLOG_GAP_FACTOR
    r._deferred = False
    assert r._next_allowed() == 100.0 + reconcile.PASS_GAP_FACTOR


def test_held_nodes_are_woken_when_the_server_stops_leading(loop):  # type: ignore[no-untyped-def]
    r, _db, bumps = loop
    r._pass()
    assert not bumps and r._held
    r.deposed(1)
    assert len(bumps) == 1 and bumps[0] and not r._held  # the next leader's passes may not touch them


def test_a_new_term_wakes_every_node_once(loop, monkeypatch):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    monkeypatch.setattr(reconcile, "WAKE_SPACING", 0.0)
    for _ in range(8):
        r._pass()
    assert placed(db) == 20 and bumps
    # the next leader (here: a new Reconciler on the same database): the last one may have died
    # holding wake-ups, so its first pass wakes every node, whatever it changes
    nxt = Reconciler(db, r.hub)
    nxt._pass()
    assert bumps[-1] == set(NODES)
    count = len(bumps)
    nxt._pass()
    assert len(bumps) == count


def test_a_node_woken_recently_is_woken_again_when_the_spacing_has_passed(loop, monkeypatch):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    monkeypatch.setattr(reconcile, "WAKE_SPACING", 0.3)  # x the 1 s heartbeat interval
    r.budget = 100  # no backlog: each pass wakes what it changed
    r._pass()
    assert bumps == [set(NODES)]
    db.run(lambda s: s.query(Service).filter(Service.name == "svc0").update({"replicas": 6}))
    r._pass()  # places two more at once, on nodes woken a moment ago
    assert placed(db) == 22 and len(bumps) == 1 and r._held
    assert r._wake is not None and r._wake <= time.time() + 0.3  # a pass comes when they may go
    time.sleep(0.35)
    r._pass()  # nothing else to do: skipped, but it wakes them
    assert len(bumps) == 2 and bumps[1] and bumps[1] <= set(NODES) and not r._held


def test_the_usage_cache_answers_as_the_full_read_and_rereads_only_what_moved(loop):  # type: ignore[no-untyped-def]
    from orchestrator import pass_state

    r, db, _bumps = loop
    for _ in range(8):
        r._pass()
    cache = pass_state.UsageCache()

    def both(excluding):  # type: ignore[no-untyped-def]
        return db.run(lambda s: (sorted(cache.rows(s, pass_state.load(s), excluding)),
                                 sorted(pass_state.usage(s, excluding))))

    got, want = both({"svc0"})
    assert got == want and len(want) >= 16 and cache.reads == 4
    assert both({"svc0"})[0] == want and cache.reads == 4  # nothing moved: nothing read
    # an instance of svc1 moves to another node (updated_at moves with it), svc2 loses one
    def move(s):  # type: ignore[no-untyped-def]
        i = s.query(Instance).filter(Instance.service_name == "svc1").first()
        i.node_name = next(n for n in NODES if n != i.node_name)
        i.updated_at = time.time() + 1
        s.delete(s.query(Instance).filter(Instance.service_name == "svc2").first())

    db.run(move)
    got, want = both({"svc0"})
    assert got == want and cache.reads == 6  # svc1 and svc2 read again
    got, want = both(set())
    assert got == want and cache.reads == 7  # svc0 now wanted too


def _kicked_during_passes(r, monkeypatch, api: bool) -> None:  # type: ignore[no-untyped-def]
    """Every pass of `r` sees a kick arrive while it runs, from a client's API request or not."""
    from orchestrator import priority

    real = r.reconcile

    def during(s, now):  # type: ignore[no-untyped-def]
        token = priority.API_WRITER.set(api)
        try:
            r.kick()
        finally:
            priority.API_WRITER.reset(token)
        return real(s, now)

    monkeypatch.setattr(r, "reconcile", during)


def _large(r) -> None:  # type: ignore[no-untyped-def]
    """As on a cluster past 200 nodes: hub.py stretches the heartbeat interval (here to 2 s)."""
    r.hub.heartbeat_interval = lambda nodes=0: 2.0


def test_a_burst_of_api_writes_holds_wake_ups_until_it_ends(loop, monkeypatch):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    _large(r)
    r.budget = 100  # no backlog: without the burst, the pass would wake its nodes at once
    _kicked_during_passes(r, monkeypatch, api=True)
    r._pass()
    assert placed(db) == 20 and not bumps and r._held  # another write came meanwhile: held
    assert r._wake is not None and r._wake <= time.time() + 2.0  # a pass comes then at the latest
    monkeypatch.undo()  # the writes stop: the next pass (nothing left to do) wakes them, once
    r._pass()
    assert bumps == [set(NODES)] and not r._held


@pytest.mark.parametrize("large, api, hold", [
    (False, True, True),  # six nodes: the heartbeat interval is not stretched, no burst hold
    (True, False, True),  # agents' reports kick too: no burst
    (True, True, False),  # HOLD_HEARTBEATS 0 (x the heartbeat interval): no hold at all
], ids=["small-cluster", "agent-kicks", "hold-bounded"])
def test_these_passes_wake_their_nodes_at_once(loop, monkeypatch, large, api, hold):  # type: ignore[no-untyped-def]
    r, db, bumps = loop
    if large:
        _large(r)
    r.budget = 100
    if not hold:
        monkeypatch.setattr(reconcile, "HOLD_MAX", 0.0)
        monkeypatch.setattr(reconcile, "HOLD_HEARTBEATS", 0.0)
    _kicked_during_passes(r, monkeypatch, api=api)
    r._pass()
    assert placed(db) == 20 and bumps == [set(NODES)]


def test_a_follower_forwards_that_a_kick_came_from_the_api(tmp_path):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from orchestrator import priority
    from orchestrator.coord import base as signals

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    hub = Hub()
    sent: list[tuple[str, list[str]]] = []
    hub.coord.publish = lambda kind, values=(): sent.append((kind, list(values)))  # type: ignore[method-assign]
    r = Reconciler(Database(url), hub, elector=SimpleNamespace(is_leader=False))
    token = priority.API_WRITER.set(True)
    try:
        r.kick()
    finally:
        priority.API_WRITER.reset(token)
    r._forwarded = 0.0
    r.kick()  # an agent's report
    assert sent == [(signals.KICK, ["api"]), (signals.KICK, [])]
    # and the leader takes the forwarded kick as from the API
    leader = Reconciler(Database(url), Hub())
    leader.hub.coord.publish(signals.KICK, ["api"])
    assert leader._api_kick > 0
