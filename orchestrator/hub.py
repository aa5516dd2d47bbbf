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


# The most syncs a second the server asks of its agents. Past MAX_HEARTBEATS_PER_SECOND x the
# configured interval nodes (200 at the default 1 s), the heartbeat interval handed to agents
# (their long-poll wait) stretches with the node count, and node TTLs with it, as Nomad's do:
# one Python process answers a few hundred syncs a second, not thousands.
MAX_HEARTBEATS_PER_SECOND = 200.0
TTL_HEARTBEATS = 3.0  # a node TTL is never shorter than this many (stretched) heartbeat intervals


class Hub:
    def __init__(self, heartbeat_interval: float = 1.0) -> None:
        self.base_heartbeat = heartbeat_interval
        self.epoch = secrets.token_hex(4)
        self.started_at = time.time()
        self._gen: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(list)
        self._event_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()
        # heartbeats live in memory: writing 1,000 of them a second to SQL buys nothing
        self.heartbeats: dict[str, float] = {}
        # services whose instance states the loop waits on (None: not known yet, so all)
        self.watched: frozenset[str] | None = None
        # node -> ((generation, report digest), when applied): the last report written to the
        # database, so unchanged re-sends can skip it (api/agent.py)
        self.reports: dict[str, tuple[tuple[str, int], float]] = {}
        # node credential hash -> (principal, when checked against the database); see api/agent.py
        self._credentials: dict[str, tuple[object, float]] = {}

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

    def node_credential(self, digest: str, now: float, ttl: float) -> object | None:
        hit = self._credentials.get(digest)
        return hit[0] if hit is not None and now - hit[1] < ttl else None

    def remember_node_credential(self, digest: str, principal: object, now: float) -> None:
        self._credentials[digest] = (principal, now)

    def forget_node(self, node: str) -> None:
        """Drop cached credentials of a node (it joined again with a new one, or was removed)."""
        with self._lock:
            self._credentials = {d: v for d, v in self._credentials.items() if getattr(v[0], "name", None) != node}

    def heartbeat_interval(self) -> float:
        """Seconds between an agent's syncs: the configured interval, stretched past 200 nodes."""
        return max(self.base_heartbeat, len(self.heartbeats) / MAX_HEARTBEATS_PER_SECOND)

    def node_ttl(self, configured: float) -> float:
        """Seconds of silence before a node is down: the configured TTL, stretched with the interval."""
        return max(configured, TTL_HEARTBEATS * self.heartbeat_interval())

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
