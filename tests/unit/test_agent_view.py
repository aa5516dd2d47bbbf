"""The agent's view between two container lists (agent/view.py): the last list patched with its
own starts and removals shows what the engine would list, whatever the order of actions,
lists and events."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from agent.types import Observed
from agent.view import LocalView


def o(cid: str, state: str = "running") -> Observed:
    return Observed("i-" + cid, "web", 1, 0, cid, state)


def test_starts_and_removals_show_without_a_list():
    v = LocalView()
    v.took_list(v.begin_list(), [o("a"), o("b")])
    v.did_start(o("c"))
    v.did_remove("a")
    assert [x.container_id for x in v.current()] == ["b", "c"]
    assert not v.stale
    assert v.own("start", "c") and v.own("destroy", "a") and v.own("die", "a")
    assert not v.own("die", "b") and not v.own("start", "b") and not v.own("health_status", "c")


def test_a_list_supersedes_what_finished_before_it_began_and_keeps_what_finished_during_it():
    v = LocalView()
    v.did_start(o("a"))
    token = v.begin_list()
    v.did_start(o("b"))  # finished while the engine was listing: the list may not show it
    v.took_list(token, [o("a")])
    assert [x.container_id for x in v.current()] == ["a", "b"]
    assert "a" not in v.started and "b" in v.started


def test_a_list_shows_the_truth_about_a_container_we_started():
    v = LocalView()
    v.did_start(o("a"))
    v.took_list(v.begin_list(), [o("a", "exited")])
    assert [x.state for x in v.current()] == ["exited"]


def test_a_death_during_the_start_call_is_not_overwritten_by_its_return():
    v = LocalView()
    v.took_list(v.begin_list(), [])
    v.did_die("a", starting=True)  # the event came before the start call returned
    v.stale = False  # a list ran meanwhile (and did not show the container yet)
    v.did_start(o("a"))
    assert v.stale and v.current() == [] and "a" not in v.dead


def test_a_death_after_the_start_drops_the_started_entry():
    v = LocalView()
    v.took_list(v.begin_list(), [])
    v.did_start(o("a"))
    v.did_die("a", starting=False)
    assert v.stale and v.current() == [] and not v.dead


def test_restart_in_place_asks_for_a_list():
    v = LocalView()
    v.took_list(v.begin_list(), [o("a", "exited")])
    v.did_die("a", starting=True)
    v.did_restart("a")
    assert v.stale and not v.dead


# A model engine: actions change it at once; a list reads it at one moment, and the agent gets
# the answer later (actions may finish in between).
steps = st.lists(st.one_of(
    st.tuples(st.just("start"), st.integers(0, 9)),
    st.tuples(st.just("remove"), st.integers(0, 9)),
    st.tuples(st.just("list"), st.integers(0, 3)),  # how many of the following steps it overlaps
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_the_view_matches_the_engine_after_any_interleaving(plan):
    engine: dict[str, Observed] = {}
    v = LocalView()
    v.took_list(v.begin_list(), [])
    pending: list[tuple[int, int, list[Observed]]] = []  # (steps left, token, what the engine showed)
    for kind, arg in plan:
        if kind == "start":
            cid = f"c{arg}"
            if cid not in engine:
                engine[cid] = o(cid)
                v.did_start(engine[cid])
        elif kind == "remove":
            cid = f"c{arg}"
            if engine.pop(cid, None) is not None:
                v.did_remove(cid)
        elif not pending:  # the reconciler lists one at a time
            pending.append((arg, v.begin_list(), list(engine.values())))
        still = []
        for left, token, shown in pending:
            if left <= 0:
                v.took_list(token, shown)
            else:
                still.append((left - 1, token, shown))
        pending = still
    for _, token, shown in pending:
        v.took_list(token, shown)
    assert sorted(x.container_id for x in v.current()) == sorted(engine)
