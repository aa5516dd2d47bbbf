"""The leader elector: a thread that takes, renews and gives back the lease (lease.py).

State here is this process's view of its own leadership; the truth is the lease row, and
every leader-only write checks it again (Lease.fence). The elector steps down when a renew
fails, and also when renewals have not succeeded for a whole TTL (the database is away or
this process was paused): by then another server may have taken over, and this one must
stop deciding even before it can reach the database to find out.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from orchestrator import metrics
from orchestrator.coord.base import RELEASED, Coordinator
from orchestrator.coord.lease import Lease

log = logging.getLogger("dockyard.leader")

RETRY_EVERY = 0.25


class Elector:
    def __init__(self, db, coord: Coordinator, holder: str, ttl: float = 4.0,  # type: ignore[no-untyped-def]
                 renew_every: float | None = None, sole: bool = False,
                 on_elected: Callable[[int], None] | None = None,
                 on_deposed: Callable[[int], None] | None = None):
        self.db, self.coord, self.ttl = db, coord, ttl
        self.renew_every = renew_every or min(1.0, ttl / 3)
        # a follower looks at the lease more often than the leader renews it: a crashed
        # leader's lease is taken within RETRY_EVERY of its expiry (TTL after its last renewal)
        self.retry_every = min(RETRY_EVERY, self.renew_every)
        # no other server can share this database (SQLite, file lock held): take the lease at
        # start even if a crashed predecessor's has not expired (Lease.acquire, steal)
        self.sole = sole
        self.lease = Lease(holder, ttl, db.engine.dialect.name)
        self.holder = holder
        self.on_elected, self.on_deposed = on_elected, on_deposed
        self.epoch: int | None = None  # set while this server leads
        self.leading_since = 0.0  # time.time() when it took the lease
        self._renewed = 0.0  # time.monotonic() of the last successful renew (or acquire)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.takeovers = 0
        coord.on(RELEASED, lambda _values: self._wake.set())

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None and time.monotonic() - self._renewed < self.ttl

    def start(self) -> None:
        self.step()  # the first server up leads before it answers its first request
        self._thread = threading.Thread(target=self._run, name="dockyard-elector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Give the lease back (a graceful hand-over) and stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        epoch = self.epoch
        if epoch is not None:
            self._depose(epoch, "shutting down")
            try:
                if self.db.run(lambda s: self.lease.release(s, epoch), attempts=2):
                    self.coord.publish(RELEASED)
                    log.info("released the lease (epoch %s)", epoch)
            except Exception as exc:
                log.warning("could not release the lease (%s); it expires in %.1fs", exc, self.ttl)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.renew_every if self.epoch is not None else self.retry_every)
            self._wake.clear()
            if not self._stop.is_set():
                self.step()

    def step(self) -> None:
        """One election step: renew if leading, else try to take the lease."""
        epoch = self.epoch
        try:
            if epoch is not None:
                if self.db.run(lambda s: self.lease.renew(s, epoch), attempts=1):
                    self._renewed = time.monotonic()
                else:
                    self._depose(epoch, "the lease was taken over")
                return
            got = self.db.run(lambda s: self.lease.acquire(s, steal=self.sole), attempts=1)
        except Exception as exc:
            if epoch is not None and time.monotonic() - self._renewed >= self.ttl:
                self._depose(epoch, f"no renewal for {self.ttl:.1f}s ({type(exc).__name__})")
            log.debug("election step failed: %s", exc)
            return
        if got is not None:
            self.epoch, self._renewed, self.leading_since = got, time.monotonic(), time.time()
            self.takeovers += 1
            metrics.LEADER.set(1)
            metrics.EPOCH.set(got)
            metrics.TAKEOVERS.inc()
            log.info("leading (epoch %s)", got)
            if self.on_elected:
                self.on_elected(got)

    def _depose(self, epoch: int, why: str) -> None:
        if self.epoch != epoch:
            return
        self.epoch = None
        metrics.LEADER.set(0)
        metrics.STEPDOWNS.inc()
        log.warning("stepped down from epoch %s: %s", epoch, why)
        if self.on_deposed:
            self.on_deposed(epoch)

    def lost(self, epoch: int, why: str) -> None:
        """A fenced write found the lease gone: stop leading now."""
        self._depose(epoch, why)
