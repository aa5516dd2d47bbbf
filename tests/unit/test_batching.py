"""Batcher: items submitted together are worked in one call, each caller gets its own result."""
from __future__ import annotations

import asyncio
import threading

import pytest

from orchestrator.batching import Batcher


def test_each_caller_gets_its_result_and_concurrent_items_share_a_batch():
    calls: list[list[int]] = []
    gate = threading.Event()

    def work(items: list[int]) -> list[object]:
        gate.wait(5)  # hold the first batch so that the others pile up behind it
        calls.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    b = Batcher("t", work)

    async def main():  # type: ignore[no-untyped-def]
        first = asyncio.ensure_future(b.submit(1))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(b.submit(i)) for i in (2, 3, -4, 5)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    out = asyncio.run(main())
    assert out[:3] == [10, 20, 30] and out[4] == 50
    assert isinstance(out[3], ValueError) and str(out[3]) == "bad -4"
    assert calls == [[1], [2, 3, -4, 5]]


def test_a_failing_batch_fails_each_of_its_callers_and_the_batcher_keeps_going():
    def work(items: list[int]) -> list[object]:
        if 0 in items:
            raise RuntimeError("database gone")
        return items

    b = Batcher("t", work)

    async def main():  # type: ignore[no-untyped-def]
        with pytest.raises(RuntimeError, match="database gone"):
            await b.submit(0)
        return await b.submit(7)

    assert asyncio.run(main()) == 7


def test_batches_are_capped():
    sizes: list[int] = []
    gate = threading.Event()

    def work(items: list[int]) -> list[object]:
        gate.wait(5)
        sizes.append(len(items))
        return items

    b = Batcher("t", work, max_batch=3)

    async def main():  # type: ignore[no-untyped-def]
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.05)
        more = [asyncio.ensure_future(b.submit(i)) for i in range(1, 8)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *more)

    assert asyncio.run(main()) == list(range(8))
    assert sizes == [1, 3, 3, 1]
