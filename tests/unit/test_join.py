"""Who may join under a node name (orchestrator/join.py): the pure decision, exhaustively."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.auth import hash_secret
from orchestrator.join import Known, decide

NOW, TTL = 1_000_000.0, 5.0
OWN = hash_secret("dyn_current")
known_nodes = st.builds(Known, status=st.sampled_from(["ready", "down"]),
                        last_seen=st.floats(NOW - 3600, NOW + 5, allow_nan=False),
                        credential_hash=st.sampled_from([OWN, ""]))
presented = st.sampled_from([None, OWN, hash_secret("dyn_other"), ""])


def test_a_free_name_is_a_new_node():
    v = decide("web-1", None, None, NOW, TTL)
    assert v.allowed and v.kind == "new"


def test_a_live_node_refuses_the_join_token_alone():
    v = decide("web-1", Known("ready", NOW - 1.0, OWN), None, NOW, TTL)
    assert not v.allowed and v.kind == "refused"
    for hint in ("alive", "1.0s ago", "no node credential", "nodes rm web-1", "--node-name", "node TTL 5s"):
        assert hint in v.reason, hint


def test_a_live_node_refuses_another_credential():
    v = decide("web-1", Known("ready", NOW - 1.0, OWN), hash_secret("dyn_stolen?"), NOW, TTL)
    assert not v.allowed and "not the node's current one" in v.reason


def test_its_own_credential_always_rejoins():
    v = decide("web-1", Known("ready", NOW, OWN), OWN, NOW, TTL)
    assert v.allowed and v.kind == "own"


def test_a_down_or_silent_node_may_be_revived():
    assert decide("web-1", Known("down", NOW, OWN), None, NOW, TTL).kind == "revive"
    # silent past the TTL, the loop has not marked it down yet
    assert decide("web-1", Known("ready", NOW - TTL - 0.1, OWN), None, NOW, TTL).kind == "revive"
    # silent exactly the TTL: still alive
    assert not decide("web-1", Known("ready", NOW - TTL, OWN), None, NOW, TTL).allowed


def test_an_empty_stored_credential_matches_nothing():
    v = decide("web-1", Known("ready", NOW, ""), "", NOW, TTL)
    assert not v.allowed


@given(known_nodes, presented)
def test_decision_properties(known: Known, given_hash: str | None):
    v = decide("n", known, given_hash, NOW, TTL)
    alive = known.status == "ready" and NOW - known.last_seen <= TTL
    own = bool(given_hash) and given_hash == known.credential_hash and bool(known.credential_hash)
    # the one rule: a live node's name is taken only with its current credential
    assert v.allowed == (own or not alive)
    assert v.kind == ("own" if own else "revive" if not alive else "refused")
    assert v.reason  # every verdict says why


@given(presented)
def test_a_free_name_never_needs_a_credential(given_hash: str | None):
    assert decide("n", None, given_hash, NOW, TTL).allowed
