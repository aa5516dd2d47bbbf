"""Answers of hot reads kept for a moment, and dropped by any committed write.

`GET /v1/services/{name}` reads a service and every live instance of it; dashboards and
scripts poll it, and `dockyard apply` of an unchanged manifest compares against it. An
answer is reused while no committed transaction has written that service's row or its
instances since it was read (Database.service_writes, orchestrator/db_writes.py; other
services' reports and the loop's other writes leave it alone) and for at most MAX_AGE
seconds (readiness also moves with time alone: min_ready_seconds). A write answered to a
client is committed first, so the client's next read is fresh.

Under load two things made a cached answer's expiry costly (bench/simulate.py, 500 req/s over
100 services): entries made together expired together, a burst of misses each second; and
the requests that missed at once each read the same service. So an entry lives a random
`jitter` share less than MAX_AGE, and `load` reads a key once for all who miss it meanwhile.
"""
from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable, Callable

from orchestrator import metrics

MAX_AGE = 1.0
MAX_ENTRIES = 10_000


class ReadCache:
    def __init__(self, db: Any, max_age: float = MAX_AGE, jitter: float = 0.0):
        self.db, self.max_age, self.jitter = db, max_age, jitter
        self._entries: dict[str, tuple[tuple[int, int], float, float, Any]] = {}
        self._loading: dict[str, tuple[tuple[int, int], asyncio.Future]] = {}  # key -> (stamp, the read in progress)

    def stamp(self, key: str) -> tuple[int, int]:
        """Take before reading: an answer is stored with the write counts it was read at."""
        return self.db.unattributed, self.db.service_writes.get(key, 0)

    def get(self, key: str, now: float) -> Any | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != self.stamp(key) or not hit[1] <= now < min(hit[2], hit[1] + self.max_age):
            metrics.READ_CACHE.labels("miss").inc()
            return None
        metrics.READ_CACHE.labels("hit").inc()
        return hit[3]

    def put(self, key: str, stamp: tuple[int, int], now: float, value: Any) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        life = self.max_age * (1.0 - self.jitter * random.random())
        self._entries[key] = (stamp, now, now + life, value)

    async def load(self, key: str, now: float, read: Callable[[], Awaitable[Any]]) -> Any:
        """The cached answer, or `read()`'s, shared by every request that misses the key while it
        runs (its exception too: a 404 is everyone's 404)."""
        out = self.get(key, now)
        if out is not None:
            return out
        stamp = self.stamp(key)
        running = self._loading.get(key)
        # join a read only if nothing was written to the key since it began (a client that just
        # wrote must read its write), and never with several servers (max_age 0: their writes
        # are not counted here)
        if (running is not None and running[0] == stamp and self.max_age > 0
                and running[1].get_loop() is asyncio.get_running_loop()):
            return await asyncio.shield(running[1])
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._loading[key] = (stamp, fut)
        try:
            out = await read()
            self.put(key, stamp, now, out)
            fut.set_result(out)
            return out
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            if self._loading.get(key, (None, None))[1] is fut:
                del self._loading[key]
