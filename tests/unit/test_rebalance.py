"""The rebalance planner (orchestrator/core/rebalance.py): moves towards an even spread,
bounded, ready instances only; properties over random placements."""
from __future__ import annotations

from hypothesis import given, strategies as st

from orchestrator.core.rebalance import Placed, balanced, counts, plan


def _placed(layout: dict[str, int], ready: bool = True) -> list[Placed]:
    out, slot = [], 0
    for node, n in sorted(layout.items()):
        for _ in range(n):
            slot += 1
            out.append(Placed(f"i{slot}", slot, node, ready))
    return out


def test_a_new_node_gets_its_share() -> None:
    inst = _placed({"a": 3, "b": 3})
    moves = plan(inst, ["a", "b", "c"], max_moves=10)
    assert [(m.source, m.target) for m in moves] == [("a", "c"), ("b", "c")]
    assert plan(inst, ["a", "b", "c"], max_moves=1) == moves[:1]
    assert plan(_placed({"a": 2, "b": 2, "c": 2}), ["a", "b", "c"], 5) == []
    assert "web slot 3 (i3): a -> c" == moves[0].text("web")


def test_only_ready_instances_move() -> None:
    assert plan(_placed({"a": 4}, ready=False), ["a", "b"], 5) == []


layouts = st.dictionaries(st.sampled_from(list("abcdef")), st.integers(0, 12), min_size=1, max_size=6)


@given(layouts, st.lists(st.sampled_from(list("abcdefg")), min_size=1, max_size=7, unique=True), st.integers(1, 5))
def test_moves_converge_to_an_even_spread_and_respect_the_bound(layout, eligible, max_moves) -> None:  # type: ignore[no-untyped-def]
    inst = _placed(layout)
    for _ in range(200):
        moves = plan(inst, eligible, max_moves)
        assert len(moves) <= max_moves
        if not moves:
            break
        c = counts(inst, eligible)
        for m in moves:  # each move, in order, goes from a node at least two above its target
            assert m.source in eligible and m.target in eligible and c[m.source] >= c[m.target] + 2
            c[m.source] -= 1
            c[m.target] += 1
        moved = {m.instance_id: m.target for m in moves}
        inst = [Placed(i.instance_id, i.slot, moved.get(i.instance_id, i.node), i.ready) for i in inst]
    assert balanced(inst, eligible)
    total = sum(layout.values())
    assert len(inst) == total  # moves never add or lose an instance


@given(layouts, st.lists(st.sampled_from(list("abcdef")), min_size=1, max_size=6, unique=True))
def test_a_move_always_narrows_the_gap(layout, eligible) -> None:  # type: ignore[no-untyped-def]
    inst = _placed(layout)
    c = counts(inst, eligible)
    for m in plan(inst, eligible, 1):
        assert c[m.source] - c[m.target] >= 2
