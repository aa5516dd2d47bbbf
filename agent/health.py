"""Health probes the agent runs itself (http and tcp); exec checks are Docker's own.

The decisions are a pure state machine over an injected `now` (`HealthState`, `due`,
`observe`), with Docker's semantics: the first probe runs one interval after the
container started; a success makes the container healthy; `retries` consecutive
failures make it unhealthy; failures inside `start_period` do not count until the first
success. The `Prober` is the thin shell: it probes the container's address on its Docker
network (or its published host port) from a small thread pool and says when a status
changes, so the agent reports it at once.
"""
from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

log = logging.getLogger("dockyard.health")

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


@dataclass(frozen=True)
class Check:
    type: str  # http | tcp
    port: int
    path: str = "/"
    expected_status: int = 200
    interval: float = 2.0
    timeout: float = 1.0
    retries: int = 3
    start_period: float = 0.0

    @classmethod
    def from_spec(cls, health: dict | None) -> "Check | None":
        """The agent-probed check of a spec's `health`, or None (no check, or exec: Docker runs it)."""
        if not health or health.get("type") not in ("http", "tcp") or not health.get("port"):
            return None
        return cls(type=health["type"], port=int(health["port"]), path=health.get("path") or "/",
                   expected_status=int(health.get("expected_status", 200)),
                   interval=float(health.get("interval", 2.0)), timeout=float(health.get("timeout", 1.0)),
                   retries=int(health.get("retries", 3)), start_period=float(health.get("start_period", 0.0)))


@dataclass(frozen=True)
class HealthState:
    started_at: float  # when the container (re)started
    status: str = STARTING
    failures: int = 0  # consecutive failures that count
    succeeded: bool = False  # a probe succeeded since the start: the start period is over
    last_probe_at: float | None = None
    last_output: str = ""


def due(check: Check, st: HealthState) -> float:
    """When the next probe should run."""
    return (st.last_probe_at if st.last_probe_at is not None else st.started_at) + check.interval


def observe(check: Check, st: HealthState, ok: bool, now: float, output: str = "") -> HealthState:
    """The state after one probe result."""
    if ok:
        return replace(st, status=HEALTHY, failures=0, succeeded=True, last_probe_at=now, last_output=output)
    in_start_period = not st.succeeded and now - st.started_at < check.start_period
    if in_start_period:
        return replace(st, last_probe_at=now, last_output=output)
    failures = st.failures + 1
    status = UNHEALTHY if failures >= check.retries else st.status
    return replace(st, status=status, failures=failures, last_probe_at=now, last_output=output)


def describe(check: Check, st: HealthState) -> str:
    """Why a container is unhealthy, in one stable line (it becomes the instance's last error)."""
    what = f"GET :{check.port}{check.path}" if check.type == "http" else f"tcp :{check.port}"
    return f"{check.type} health check {what} failed {st.failures} time(s): {st.last_output}"


# -- I/O: one probe ------------------------------------------------------------------------

def probe_http(host: str, port: int, path: str, expected: int, timeout: float) -> tuple[bool, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "dockyard-health", "Connection": "close"})
        status = conn.getresponse().status
        if status == expected:
            return True, f"status {status}"
        return False, f"status {status}, expected {expected}"
    except (OSError, http.client.HTTPException) as exc:
        return False, _why(exc)
    finally:
        conn.close()


def probe_tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, "connected"
    except OSError as exc:
        return False, _why(exc)


def _why(exc: Exception) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return getattr(exc, "strerror", None) or type(exc).__name__


def run_probe(check: Check, host: str, port: int) -> tuple[bool, str]:
    if check.type == "http":
        return probe_http(host, port, check.path, check.expected_status, check.timeout)
    return probe_tcp(host, port, check.timeout)


# -- the shell -----------------------------------------------------------------------------

@dataclass
class _Tracked:
    check: Check
    state: HealthState
    address: tuple[str, int] | None = None
    in_flight: bool = False
    epoch: int = 0  # bumped on reset, so a probe of the previous run is ignored


class Prober:
    """Probes the http/tcp checks of running containers; `sync` says which, `status` reads the result.

    `resolve(container_id, port)` gives the (host, port) to probe, or None when the container
    has no reachable address yet. `on_change()` is called (from a probe thread) whenever a
    container's status changes.
    """

    TICK = 0.05

    def __init__(self, resolve: Callable[[str, int], tuple[str, int] | None], on_change: Callable[[], None],
                 clock: Callable[[], float] = time.time, workers: int = 4):
        self.resolve, self.on_change, self.clock = resolve, on_change, clock
        self.tracked: dict[str, _Tracked] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")

    def sync(self, wanted: dict[str, Check]) -> None:
        """Track exactly these running containers (container id -> check)."""
        now = self.clock()
        with self.lock:
            for cid in [c for c in self.tracked if c not in wanted]:
                del self.tracked[cid]
            for cid, check in wanted.items():
                t = self.tracked.get(cid)
                if t is None:
                    self.tracked[cid] = _Tracked(check, HealthState(started_at=now))
                elif t.check != check:  # cannot happen for one container, but stay correct
                    self.tracked[cid] = _Tracked(check, HealthState(started_at=now), epoch=t.epoch + 1)

    def reset(self, cid: str) -> None:
        """The container restarted: start over (start period, no result yet, a new address)."""
        with self.lock:
            t = self.tracked.get(cid)
            if t is not None:
                self.tracked[cid] = _Tracked(t.check, HealthState(started_at=self.clock()), epoch=t.epoch + 1)

    def prime(self, cids: list[str]) -> None:
        """Probe these containers now and wait for the results (bounded by their timeouts).

        For containers a restarted agent adopts: they have been running all along, and
        reporting them as `starting` until a probe interval passed would make the server
        count them as not ready (and a rollout could stop them as serving nobody)."""
        futures = []
        with self.lock:
            for cid in cids:
                t = self.tracked.get(cid)
                if t is not None and not t.in_flight and t.state.last_probe_at is None:
                    t.in_flight = True
                    futures.append(self.pool.submit(self._probe, cid, t.epoch))
        for f in futures:
            f.result()

    def status(self, cid: str) -> tuple[str, str] | None:
        """(status, why) of a tracked container; why is set when unhealthy."""
        with self.lock:
            t = self.tracked.get(cid)
            if t is None:
                return None
            return t.state.status, describe(t.check, t.state) if t.state.status == UNHEALTHY else ""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = self.clock()
            with self.lock:
                ready = [(cid, t.epoch) for cid, t in self.tracked.items()
                         if not t.in_flight and now >= due(t.check, t.state)]
                for cid, _ in ready:
                    self.tracked[cid].in_flight = True
            for cid, epoch in ready:
                self.pool.submit(self._probe, cid, epoch)
            stop.wait(self.TICK)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _probe(self, cid: str, epoch: int) -> None:
        with self.lock:
            t = self.tracked.get(cid)
            if t is None or t.epoch != epoch:
                return
            check, address = t.check, t.address
        try:
            if address is None:
                address = self.resolve(cid, check.port)
            if address is None:
                ok, output = False, "container has no address to probe"
            else:
                ok, output = run_probe(check, *address)
        except Exception as exc:  # a probe must never kill the prober
            ok, output = False, f"probe error: {exc}"
        changed = False
        with self.lock:
            t = self.tracked.get(cid)
            if t is None or t.epoch != epoch:
                return
            before = t.state.status
            t.state = observe(t.check, t.state, ok, self.clock(), output)
            t.address, t.in_flight = address, False
            changed = t.state.status != before
        if changed:
            log.info("container %s is %s (%s)", cid[:12], t.state.status, output)
            self.on_change()
