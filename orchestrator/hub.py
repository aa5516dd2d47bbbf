"""In-memory signalling between the loop and long-polling agents / event watchers.

Nothing here is state that matters after a restart: the generation tokens carry a
per-process epoch, so an agent that polls a restarted server (or another server) always
gets a full answer. Several servers may share one database: every change that must reach
the others goes through the coordinator (orchestrator/coord), whose signals each server's
hub applies locally. What each piece of state is, is said next to it.
"""
from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import defaultdict
from typing import Callable, Iterable

from orchestrator.coord import Coordinator, MemoryCoordinator
from orchestrator.coord import base as signals


# The most syncs a second the server asks of its agents. Past MAX_HEARTBEATS_PER_SECOND x the
# configured interval nodes (200 at the default 1 s), the heartbeat interval handed to agents
# (their long-poll wait) stretches with the node count, and node TTLs with it, as Nomad's do:
# one Python process answers a few hundred syncs a second, not thousands.
MAX_HEARTBEATS_PER_SECOND = 200.0
TTL_HEARTBEATS = 3.0  # a node TTL is never shorter than this many (stretched) heartbeat intervals
FLUSH_MARGIN = 0.25  # seconds a heartbeat heard by another server may take beyond its flush period


class Hub:
    def __init__(self, heartbeat_interval: float = 1.0, coord: Coordinator | None = None) -> None:
        self.base_heartbeat = heartbeat_interval
        self.coord = coord or MemoryCoordinator()
        # per-process; a new one after a resync, so every agent's next poll gets a full answer
        self.epoch = secrets.token_hex(4)
        self.started_at = time.time()
        self._gen: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(list)
        self._event_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()
        self.closing = False  # set once, when the server stops (close_polls)
        # Heartbeats this server heard, in memory: writing 1,000 of them a second to SQL buys
        # nothing. With several servers (coord.shared), each writes the newest ones to the
        # nodes table about once a second (flush_heartbeats), so the leader sees them all;
        # the leader's liveness takes the newest of its own and the table's.
        self.heartbeats: dict[str, float] = {}
        self._unflushed: dict[str, float] = {}
        # Leader-only: services whose instance states the loop waits on. None (on a server
        # that does not lead, or before the first pass): all, so reports kick the leader.
        self.watched: frozenset[str] | None = None
        # node -> ((generation, report digest), when applied): the last report THIS server
        # wrote, so unchanged re-sends can skip it (api/agent.py). Safe with several servers:
        # the key holds this server's generation, which moves on every bump from any server.
        self.reports: dict[str, tuple[tuple[str, int], float]] = {}
        # credential hash -> (principal, expires_at, when checked against the database): API
        # tokens and node credentials, so that a request costs no database read to authenticate
        # (api/deps.py). Revoking a token or removing a node forgets its entries at once; the
        # epoch stops a check that raced the revocation from caching what it read before it.
        # Invalidated across servers: revocations and node removals are signalled (FORGET_*).
        self._credentials: dict[str, tuple[object, float | None, float]] = {}
        self._credential_epoch = 0
        # node -> the token of its newest long poll on THIS server (api/agent.py): only that
        # poll's connection closing makes the node suspect. Local by nature (a connection is
        # to one server); an entry lives while its poll runs, and a leaving agent drops it.
        # Touched on the event loop only (no lock).
        self.polls: dict[str, object] = {}
        # the gateways' routing table version (orchestrator/routebook.py sets it): a long poll
        # also ends when it differs from the version its agent has
        self.routes_version: Callable[[], str] = lambda: ""
        self.coord.on(signals.BUMP, self._bump_local)
        self.coord.on(signals.EVENTS, lambda _v: self._wake_event_waiters())
        self.coord.on(signals.FORGET_NODE, lambda names: [self._forget_node_local(n) for n in names])
        self.coord.on(signals.FORGET_TOKEN, lambda ids: [self._forget_token_local(t) for t in ids])
        self.coord.on(signals.RESYNC, lambda _v: self._resync())

    def generation(self, node: str) -> str:
        return f"{self.epoch}:{self._gen[node]}"

    def bump(self, nodes: Iterable[str]) -> None:
        """The assignments of these nodes changed (committed): wake their long polls, everywhere."""
        names = sorted(set(nodes))
        if names:
            self.coord.publish(signals.BUMP, names)

    def _bump_local(self, nodes: Iterable[str]) -> None:
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
        self.coord.publish(signals.FORGET_NODE, [node])

    def _forget_node_local(self, node: str) -> None:
        self._forget(lambda p: getattr(p, "kind", None) == "node" and getattr(p, "name", None) == node)

    def forget_token(self, token_id: str) -> None:
        """Drop a revoked API token from the cache on every server: its next request is checked again (401)."""
        self.coord.publish(signals.FORGET_TOKEN, [token_id])

    def _forget_token_local(self, token_id: str) -> None:
        self._forget(lambda p: getattr(p, "token_id", None) == token_id)

    def _resync(self) -> None:
        """Signals may have been missed: forget every cached credential, and give every agent's
        next poll a full answer (a new epoch) at once."""
        self._forget(lambda _p: True)
        with self._lock:
            self.epoch = secrets.token_hex(4)
        self.wake_all()
        self._wake_event_waiters()

    def heartbeat_interval(self, nodes: int = 0) -> float:
        """Seconds between an agent's syncs: the configured interval, stretched past 200 nodes.

        What this server hands its agents counts the nodes it heard (its own sync rate is what
        the stretch bounds). The leader's TTL and grace pass `nodes`, the cluster's node count:
        an agent of another server may have been told a longer interval than the leader's own
        count gives (agents spread unevenly, or all on another server), and a TTL from the
        smaller count declared such nodes down between two of their syncs."""
        return max(self.base_heartbeat, max(len(self.heartbeats), nodes) / MAX_HEARTBEATS_PER_SECOND)

    def node_grace(self, configured: float, nodes: int = 0) -> float:
        """Seconds a node whose agent dropped its long poll has to reconnect: the configured
        grace, stretched with the interval (an agent's next poll may be that far off on a busy
        server). With several servers, at least the heartbeat flush period and a margin: the
        agent may reconnect to another server, whose heartbeats reach the table that often."""
        grace = max(configured, self.heartbeat_interval(nodes))
        if self.coord.shared:
            grace = max(grace, min(1.0, self.base_heartbeat) + FLUSH_MARGIN)
        return grace

    def node_ttl(self, configured: float, nodes: int = 0) -> float:
        """Seconds of silence before a node is down: the configured TTL, stretched with the
        interval (of `nodes` nodes at least: see heartbeat_interval)."""
        return max(configured, TTL_HEARTBEATS * self.heartbeat_interval(nodes))

    def beat(self, node: str, now: float) -> None:
        self.heartbeats[node] = now
        if self.coord.shared:
            self._unflushed[node] = now

    def take_unflushed(self) -> dict[str, float]:
        """Heartbeats heard since the last call, for the nodes table (several servers only)."""
        with self._lock:
            out, self._unflushed = self._unflushed, {}
        return out

    def last_seen(self, node: str, persisted: float, since: float = 0.0) -> float:
        """The newest heartbeat known of a node: this server's, or one another server wrote
        to the table. Nodes get one TTL of grace from `since` (when this server started, or
        began to lead) instead of being declared down by a server that just arrived."""
        return max(self.heartbeats.get(node, 0.0), persisted, since or self.started_at)

    def wake_all(self) -> None:
        """Something every agent should hear about changed (the routing table): end every long poll."""
        with self._lock:
            woken = [w for lst in self._waiters.values() for w in lst]
            self._waiters.clear()
        for loop, ev in woken:
            loop.call_soon_threadsafe(ev.set)

    def close_polls(self) -> None:
        """The server is stopping: answer every long poll now, and every new one at once, instead
        of leaving thousands of them to be cancelled (with a traceback each) when uvicorn's
        graceful shutdown runs out. Their agents poll again: another server, or this one back."""
        self.closing = True
        self.wake_all()

    def _stale(self, node: str, known: str | None, routes_known: str | None) -> bool:
        return self.closing or known != self.generation(node) or (routes_known is not None and routes_known != self.routes_version())

    async def wait(self, node: str, known: str | None, timeout: float, routes_known: str | None = None,
                   gone: asyncio.Future | None = None) -> None:
        """Until the node's assignments (or, when `routes_known` is given, the routing table)
        differ from what its agent has, or `timeout` passes, or `gone` (the request's
        disconnect, api/agent.py) is done."""
        if timeout <= 0 or self._stale(node, known, routes_known) or (gone is not None and gone.done()):
            return
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        with self._lock:
            if self._stale(node, known, routes_known):
                return
            self._waiters[node].append((loop, ev))
        # a timer rather than asyncio.wait_for, which wraps every long poll in a task of its own
        timer = loop.call_later(timeout, ev.set)
        if gone is not None:
            gone.add_done_callback(lambda _f: ev.set())
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

    def poll_started(self, node: str) -> object:
        """A long poll of this node begins here: it is the node's newest (see `polls`)."""
        token = object()
        self.polls[node] = token
        return token

    def forget_poll(self, node: str) -> None:
        """The node's agent is leaving on purpose: its poll's connection closing says nothing."""
        self.polls.pop(node, None)

    def poll_ended(self, node: str, token: object) -> bool:
        """The poll ended: was it still the node's newest on this server?"""
        if self.polls.get(node) is token:
            del self.polls[node]
            return True
        return False

    def events_changed(self) -> None:
        """Events were committed: wake every server's event watchers."""
        self.coord.publish(signals.EVENTS)

    def _wake_event_waiters(self) -> None:
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
