"""Node liveness decisions (orchestrator/core/liveness.py): examples and properties."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.liveness import NodeBeat, Transition, decide, next_deadline, suspect_since

TTL = 5.0


def test_a_silent_ready_node_goes_down_with_its_newest_heartbeat():
    out = decide([NodeBeat("a", "ready", persisted=90.0, heard=93.0)], now=100.0, ttl=TTL, since=0.0)
    assert out == [Transition("a", "down", 93.0)]


def test_a_heartbeat_another_server_wrote_keeps_a_node_up():
    # this server heard nothing for 9 s, but another server wrote a beat 1 s ago
    assert decide([NodeBeat("a", "ready", persisted=99.0, heard=91.0)], now=100.0, ttl=TTL, since=0.0) == []


def test_a_new_leader_gives_one_ttl_of_grace():
    # the beats went to a server that died; this one began to lead at 98
    assert decide([NodeBeat("a", "ready", persisted=80.0)], now=100.0, ttl=TTL, since=98.0) == []
    assert decide([NodeBeat("a", "ready", persisted=80.0)], now=102.9, ttl=TTL, since=98.0) == []
    assert decide([NodeBeat("a", "ready", persisted=80.0)], now=98.1 + TTL, ttl=TTL, since=98.0)[0].status == "down"


def test_a_down_node_that_beats_again_comes_back():
    assert decide([NodeBeat("a", "down", persisted=50.0, heard=99.0)], now=100.0, ttl=TTL, since=0.0) == [
        Transition("a", "ready", 99.0)]
    assert decide([NodeBeat("a", "down", persisted=99.5)], now=100.0, ttl=TTL, since=0.0) == [
        Transition("a", "ready", 99.5)]
    assert decide([NodeBeat("a", "down", persisted=50.0, heard=0.0)], now=100.0, ttl=TTL, since=0.0) == []


def test_a_node_down_after_a_drop_comes_back_only_with_a_newer_beat():
    # down 1 s after its drop; its last beat (99.0) is recent, but older than the drop
    n = NodeBeat("a", "down", persisted=99.0, heard=99.0, suspect=99.5)
    assert decide([n], now=100.6, ttl=TTL, since=0.0, grace=1.0) == []
    back = NodeBeat("a", "down", persisted=99.0, heard=101.0, suspect=99.5)
    assert decide([back], now=101.2, ttl=TTL, since=0.0, grace=1.0) == [Transition("a", "ready", 101.0)]


beats = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(st.lists(st.tuples(st.sampled_from(["ready", "down"]), beats, beats), max_size=20), beats, beats)
def test_properties(rows, now, since):
    nodes = [NodeBeat(f"n{k}", status, p, h) for k, (status, p, h) in enumerate(rows)]
    out = decide(nodes, now + 1000, TTL, since)
    by = {n.name: n for n in nodes}
    for t in out:
        n = by[t.node]
        assert t.status != n.status  # only transitions
        newest = max(n.persisted, n.heard)
        if t.status == "down":
            # down only after a full TTL of silence, counted from the grace start at the earliest
            assert now + 1000 - max(newest, since) > TTL
        else:
            assert now + 1000 - newest <= TTL / 2
    # deciding again on the result changes nothing (no flapping within one instant)
    after = [NodeBeat(n.name, next((t.status for t in out if t.node == n.name), n.status), n.persisted, n.heard)
             for n in nodes]
    assert decide(after, now + 1000, TTL, since) == []


# -- a dropped long poll: suspect, then down after the grace unless a heartbeat comes -----------

GRACE = 1.0


def test_a_dropped_node_goes_down_after_the_grace_not_the_ttl():
    n = NodeBeat("a", "ready", persisted=90.0, heard=99.0, suspect=99.5)
    assert decide([n], now=100.4, ttl=TTL, since=0.0, grace=GRACE) == []
    assert decide([n], now=100.6, ttl=TTL, since=0.0, grace=GRACE) == [Transition("a", "down", 99.0, dropped=True)]


def test_a_heartbeat_after_the_drop_clears_it():
    # it reconnected (to this server, or to another one that wrote the beat to the table)
    assert decide([NodeBeat("a", "ready", persisted=0.0, heard=99.7, suspect=99.5)], now=103.0, ttl=TTL,
                  since=0.0, grace=GRACE) == []
    assert decide([NodeBeat("a", "ready", persisted=99.7, heard=98.0, suspect=99.5)], now=103.0, ttl=TTL,
                  since=0.0, grace=GRACE) == []


def test_a_drop_seen_before_this_server_took_charge_falls_back_to_the_ttl():
    # e.g. a restarted server: the beats that cleared the mark were only in the old one's memory
    n = NodeBeat("a", "ready", persisted=50.0, suspect=60.0)
    assert decide([n], now=100.0, ttl=TTL, since=98.0, grace=GRACE) == []
    assert decide([n], now=103.1, ttl=TTL, since=98.0, grace=GRACE)[0].dropped is False


def test_without_a_grace_drops_do_not_count():
    assert decide([NodeBeat("a", "ready", persisted=99.0, suspect=99.5)], now=101.0, ttl=TTL, since=0.0) == []


def test_a_down_node_is_never_suspect():
    n = NodeBeat("a", "down", persisted=50.0, suspect=60.0)
    assert decide([n], now=100.0, ttl=TTL, since=0.0, grace=GRACE) == []
    assert suspect_since(n, 0.0) == 0.0


def test_the_next_deadline_is_the_sooner_of_grace_and_ttl():
    nodes = [NodeBeat("a", "ready", persisted=99.0), NodeBeat("b", "ready", persisted=98.0, suspect=99.8),
             NodeBeat("c", "down", persisted=10.0)]
    assert next_deadline(nodes, now=100.0, ttl=TTL, since=0.0, grace=GRACE) == 99.8 + GRACE
    assert next_deadline(nodes, now=100.0, ttl=TTL, since=0.0) == 98.0 + TTL
    assert next_deadline([NodeBeat("c", "down", persisted=10.0)], now=100.0, ttl=TTL, since=0.0) is None


nodes_ = st.lists(st.tuples(st.sampled_from(["ready", "down"]), beats, beats, beats), max_size=20)


@given(nodes_, beats, beats, st.floats(min_value=0.1, max_value=10))
def test_drop_properties(rows, now, since, grace):
    nodes = [NodeBeat(f"n{k}", status, p, h, s) for k, (status, p, h, s) in enumerate(rows)]
    now += 500
    out = decide(nodes, now, TTL, since, grace)
    by = {n.name: n for n in nodes}
    for t in out:
        n = by[t.node]
        newest = max(n.persisted, n.heard)
        if t.dropped:
            # down early only for a drop after every heartbeat known, seen while in charge,
            # and a whole grace ago
            assert n.status == "ready" and n.suspect > newest and n.suspect >= since and now - n.suspect > grace
        elif t.status == "down":
            assert now - max(newest, since) > TTL
    # a drop never keeps a node up that the TTL alone would take down, nor brings one back
    without = decide(nodes, now, TTL, since)
    assert {t.node for t in without if t.status == "down"} <= {t.node for t in out if t.status == "down"}
    assert [t for t in without if t.status == "ready"] == [t for t in out if t.status == "ready"]
    # applying the result (the pass records `seen` as last_heartbeat) and deciding again changes
    # nothing: a node that went down early does not come straight back on its last beat
    after = []
    for n in nodes:
        t = next((t for t in out if t.node == n.name), None)
        after.append(n if t is None else NodeBeat(n.name, t.status, max(n.persisted, t.seen), n.heard, n.suspect))
    assert decide(after, now, TTL, since, grace) == []
    # nothing due before the next deadline: deciding a moment before it changes nothing new
    soon = next_deadline(nodes, now, TTL, since, grace)
    pending = {n.name for n in nodes} - {t.node for t in out}
    if soon is not None and soon > now:
        early = decide([n for n in nodes if n.name in pending], (now + soon) / 2, TTL, since, grace)
        assert not [t for t in early if t.status == "down"]
