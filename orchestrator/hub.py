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
        # credential hash -> (principal, expires_at, when checked against the database): API
        # tokens and node credentials, so that a request costs no database read to authenticate
        # (api/deps.py). Revoking a token or removing a node forgets its entries at once; the
        # epoch stops a check that raced the revocation from caching what it read before it.
        self._credentials: dict[str, tuple[object, float | None, float]] = {}
        self._credential_epoch = 0

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

    def credential(self, digest: str, now: float, ttl: float) -> object | None:
        hit = self._credentials.get(digest)
        if hit is None or now - hit[2] >= ttl or (hit[1] is not None and hit[1] <= now):
            return None  # unknown, checked too long ago, or expired since (checked again: 401)
        return hit[0]

    def credential_epoch(self) -> int:
        return self._credential_epoch

    def remember_credential(self, digest: str, principal: object, expires_at: float | None, now: float,
                            epoch: int) -> None:
        with self._lock:
            if epoch == self._credential_epoch:
                self._credentials[digest] = (principal, expires_at, now)

    def _forget(self, gone) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self._credential_epoch += 1
            self._credentials = {d: v for d, v in self._credentials.items() if not gone(v[0])}

    def forget_node(self, node: str) -> None:
        """Drop cached credentials of a node (it joined again with a new one, or was removed)."""
        self._forget(lambda p: getattr(p, "kind", None) == "node" and getattr(p, "name", None) == node)

    def forget_token(self, token_id: str) -> None:
        """Drop a revoked API token from the cache: its next request is checked again (401)."""
        self._forget(lambda p: getattr(p, "token_id", None) == token_id)

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
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        with self._lock:
            if known != self.generation(node):
                return
            self._waiters[node].append((loop, ev))
        # a timer rather than asyncio.wait_for, which wraps every long poll in a task of its own
        timer = loop.call_later(timeout, ev.set)
        try:
            await ev.wait()
        finally:
            timer.cancel()
            with self._lock:
                lst = self._waiters.get(node)
                if lst:  # timed out (a bump takes the whole list)
                    lst[:] = [w for w in lst if w[1] is not ev]
                    if not lst:
                        del self._waiters[node]

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
