"""Answers of hot reads kept for a moment, and dropped by any committed write.

`GET /v1/services/{name}` reads a service and every live instance of it; dashboards and
scripts poll it, and `dockyard apply` of an unchanged manifest compares against it. An
answer is reused while no transaction has written anything since it was read
(Database.writes) and for at most MAX_AGE seconds (readiness also moves with time alone:
min_ready_seconds). A write answered to a client is committed first, so the client's next
read is fresh.
"""
from __future__ import annotations

from typing import Any

from orchestrator import metrics

MAX_AGE = 1.0
MAX_ENTRIES = 10_000


class ReadCache:
    def __init__(self, db: Any, max_age: float = MAX_AGE):
        self.db, self.max_age = db, max_age
        self._entries: dict[object, tuple[int, float, Any]] = {}

    def stamp(self) -> int:
        """Take before reading: an answer is stored with the write count it was read at."""
        return self.db.writes

    def get(self, key: object, now: float) -> Any | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != self.db.writes or not 0 <= now - hit[1] < self.max_age:
            metrics.READ_CACHE.labels("miss").inc()
            return None
        metrics.READ_CACHE.labels("hit").inc()
        return hit[2]

    def put(self, key: object, stamp: int, now: float, value: Any) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (stamp, now, value)
