"""Node liveness decisions (orchestrator/core/liveness.py): examples and properties."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.liveness import NodeBeat, Transition, decide

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
