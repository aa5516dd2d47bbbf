"""The SQLite writers' lock (orchestrator/db.py FairLock): arrival order, API writers first, but
never more than a few in a row while another writer waits."""
from __future__ import annotations

import asyncio
import threading
import time

from starlette.concurrency import run_in_threadpool

from orchestrator.db import FairLock
from orchestrator.priority import API_WRITER


def _contend(waiters: list[tuple[str, bool]]) -> list[str]:
    lock, order = FairLock(), []
    assert lock.acquire(1.0)

    def take(name: str, first: bool) -> None:
        assert lock.acquire(5.0, first=first)
        order.append(name)
        lock.release()

    threads = []
    for name, first in waiters:  # queued one after the other, while the lock is held
        t = threading.Thread(target=take, args=(name, first))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while len(lock._first) + len(lock._waiters) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join(5)
    return order


def test_writers_get_the_lock_in_arrival_order():
    assert _contend([("a", False), ("b", False), ("c", False)]) == ["a", "b", "c"]


def test_api_writers_go_before_the_queue_in_their_own_arrival_order():
    assert _contend([("report", False), ("put", True), ("batch", False), ("put2", True)]) == \
        ["put", "put2", "report", "batch"]


def test_other_writers_are_not_starved_by_a_stream_of_api_writers():
    puts = [(f"put{k}", True) for k in range(7)]
    order = _contend([("pass", False), *puts, ("report", False)])
    assert order == ["put0", "put1", "put2", "put3", "pass", "put4", "put5", "put6", "report"]


def test_a_wait_that_times_out_leaves_the_queue():
    lock = FairLock()
    assert lock.acquire(1.0)
    assert not lock.acquire(0.05, first=True)
    assert not lock._first
    lock.release()
    assert lock.acquire(0.05)  # free again


def test_the_api_mark_follows_a_request_into_its_worker_thread():
    async def request() -> bool:
        API_WRITER.set(True)
        return await run_in_threadpool(API_WRITER.get)

    assert asyncio.run(request()) is True
    assert API_WRITER.get() is False
