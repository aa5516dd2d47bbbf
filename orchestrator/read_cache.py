"""Answers of hot reads kept for a moment, and dropped by any committed write.

`GET /v1/services/{name}` reads a service and every live instance of it; dashboards and
scripts poll it, and `dockyard apply` of an unchanged manifest compares against it. An
answer is reused while no committed transaction has written that service's row or its
instances since it was read (Database.service_writes, orchestrator/db_writes.py; other
services' reports and the loop's other writes leave it alone) and for at most MAX_AGE
seconds (readiness also moves with time alone: min_ready_seconds). A write answered to a
client is committed first, so the client's next read is fresh.
"""
from __future__ import annotations

from typing import Any

from orchestrator import metrics

MAX_AGE = 1.0
MAX_ENTRIES = 10_000


class ReadCache:
    def __init__(self, db: Any, max_age: float = MAX_AGE):
        self.db, self.max_age = db, max_age
        self._entries: dict[str, tuple[tuple[int, int], float, Any]] = {}

    def stamp(self, key: str) -> tuple[int, int]:
        """Take before reading: an answer is stored with the write counts it was read at."""
        return self.db.unattributed, self.db.service_writes.get(key, 0)

    def get(self, key: str, now: float) -> Any | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != self.stamp(key) or not 0 <= now - hit[1] < self.max_age:
            metrics.READ_CACHE.labels("miss").inc()
            return None
        metrics.READ_CACHE.labels("hit").inc()
        return hit[2]

    def put(self, key: str, stamp: tuple[int, int], now: float, value: Any) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (stamp, now, value)
