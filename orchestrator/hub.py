"""In-memory signalling between the loop and long-polling agents / event watchers.

Nothing here is state that matters after a restart: the generation tokens carry a
per-process epoch, so an agent that polls a restarted server always gets a full answer.
"""
from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import defaultdict
from typing import Iterable


class Hub:
    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.started_at = time.time()
        self._gen: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(list)
        self._event_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()
        # heartbeats live in memory: writing 1,000 of them a second to SQL buys nothing
        self.heartbeats: dict[str, float] = {}

    def generation(self, node: str) -> str:
        return f"{self.epoch}:{self._gen[node]}"

    def bump(self, nodes: Iterable[str]) -> None:
        woken = []
        with self._lock:
            for n in set(nodes):
                self._gen[n] += 1
                woken += self._waiters.pop(n, [])
        for loop, ev in woken:
            loop.call_soon_threadsafe(ev.set)

    def beat(self, node: str, now: float) -> None:
        self.heartbeats[node] = now

    def last_seen(self, node: str, persisted: float) -> float:
        # after a server restart, nodes get one TTL of grace from the start instead of being declared down
        return self.heartbeats.get(node, max(persisted, self.started_at))

    async def wait(self, node: str, known: str | None, timeout: float) -> None:
        if timeout <= 0 or known != self.generation(node):
            return
        ev = asyncio.Event()
        with self._lock:
            if known != self.generation(node):
                return
            self._waiters[node].append((asyncio.get_running_loop(), ev))
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            with self._lock:
                lst = self._waiters.get(node, [])
                lst[:] = [w for w in lst if w[1] is not ev]

    def events_changed(self) -> None:
        with self._lock:
            woken, self._event_waiters = self._event_waiters, []
        for loop, ev in woken:
            loop.call_soon_threadsafe(ev.set)

    async def wait_events(self, timeout: float) -> None:
        ev = asyncio.Event()
        with self._lock:
            self._event_waiters.append((asyncio.get_running_loop(), ev))
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            with self._lock:
                self._event_waiters = [w for w in self._event_waiters if w[1] is not ev]
