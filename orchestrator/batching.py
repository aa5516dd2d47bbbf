"""Many requests' database work done in few transactions, on one thread.

A thousand agents syncing at once would otherwise make a thousand transactions, each with
its own thread hop, session and query compilation, all queueing for one Python process's
GIL (and for SQLite's single writer). Requests hand their item to a Batcher and await the
answer; one daemon thread takes everything that arrived while the previous batch ran and
does it in one go.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Callable, Generic, TypeVar

from orchestrator import priority

T = TypeVar("T")


class Batcher(Generic[T]):
    """`work(items)` returns one result per item, in order; a result that is an exception is
    raised in the request that submitted that item. If `work` raises, every item of the batch
    gets that exception."""

    def __init__(self, name: str, work: Callable[[list[T]], list[object]], max_batch: int = 500):
        self.name, self.work, self.max_batch = name, work, max_batch
        self._cond = threading.Condition()
        self._pending: list[tuple[T, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._thread: threading.Thread | None = None

    async def submit(self, item: T) -> object:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cond:
            self._pending.append((item, loop, fut))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return await fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            # API requests first (priority.py): agents' work waits a moment (the batch grows meanwhile)
            priority.yield_to_api()
            with self._cond:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            try:
                results = self.work([item for item, _, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, loop, fut), res in zip(batch, results):
                loop.call_soon_threadsafe(_settle, fut, res)


def _settle(fut: asyncio.Future, res: object) -> None:
    if fut.done():  # the request went away (client disconnected)
        return
    if isinstance(res, BaseException):
        fut.set_exception(res)
    else:
        fut.set_result(res)
