"""Answers of hot reads kept for a moment, and dropped by any committed write.

`GET /v1/services/{name}` reads a service and every live instance of it; dashboards and
scripts poll it, and `dockyard apply` of an unchanged manifest compares against it. An
answer is reused while no committed transaction has written that service's row or its
instances since it was read (Database.service_writes, orchestrator/db_writes.py; other
services' reports and the loop's other writes leave it alone) and for at most MAX_AGE
seconds, a safety net only: the answer does not move with time (readiness there is "ready
since", without min_ready_seconds), and with several servers, whose writes are not counted
here, the cache is off (runtime.py). A write answered to a client is committed first, so the
client's next read is fresh.

Each entry lives a random 50-100 % of MAX_AGE: entries filled together (a client polling every
service) otherwise expire together, and their refills came as one burst of reads every
lifetime, a stall the API's tail showed (bench/simulate.py --api-trace: one every 1.2 s with
a 1 s lifetime).
"""
from __future__ import annotations

import random
from typing import Any

from orchestrator import metrics

MAX_AGE = 10.0
JITTER = 0.5  # an entry lives max_age * (1 - JITTER * random())
MAX_ENTRIES = 10_000


class ReadCache:
    def __init__(self, db: Any, max_age: float = MAX_AGE):
        self.db, self.max_age = db, max_age
        self._entries: dict[str, tuple[tuple[int, int], float, float, Any]] = {}

    def stamp(self, key: str) -> tuple[int, int]:
        """Take before reading: an answer is stored with the write counts it was read at."""
        return self.db.unattributed, self.db.service_writes.get(key, 0)

    def get(self, key: str, now: float) -> Any | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != self.stamp(key) or not 0 <= now - hit[1] < min(hit[2], self.max_age):
            metrics.READ_CACHE.labels("miss").inc()
            return None
        metrics.READ_CACHE.labels("hit").inc()
        return hit[3]

    def put(self, key: str, stamp: tuple[int, int], now: float, value: Any) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (stamp, now, self.max_age * (1 - JITTER * random.random()), value)
