"""API first: people's requests are admitted in bounded numbers and served before background work.

One server process answers three kinds of work on one GIL: API requests (people, scripts,
the dashboard), agents' syncs and reports, and the leader's loop. Under load the API used to
queue behind the other two (bench/simulate.py: p99 of seconds at 1,000 agents on a busy
machine). Two rules, in the manner of Kubernetes' API priority and fairness:

- **Bounded admission.** At most `limit` API requests are being worked on at once (from
  arrival until their response starts: a stream counts only until its headers are sent).
  The next ones wait in a queue up to `queue_timeout` seconds, then get 503 `overloaded`
  with `Retry-After`, instead of piling up without end. Agent endpoints (`/v1/agent/`), the
  probes and the dashboard's static files are not API work here: agents have their own
  flow control (long polls, batched reports) and must never be refused for API load.
- **Background work yields.** The report and assignment batchers and the leader's pass call
  `yield_to_api()` between steps: while API requests are in flight it sleeps a moment (at
  most `budget`), so the GIL goes to the API threads first. The budget bounds the delay:
  background work is slowed under API load, never starved.

State: per process and about this process only (requests it is serving): nothing to share
between servers.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import time
from typing import Any

from orchestrator import metrics
from orchestrator.errors import error_body

# Set while a client's API request runs (APIFirst): its write transactions go to the head of the
# writers' queue (db.py's FairLock). Context variables follow a request into the worker thread
# that runs its database work (anyio's to_thread copies the context).
API_WRITER: contextvars.ContextVar[bool] = contextvars.ContextVar("dy_api_writer", default=False)

API_LIMIT = 64  # API requests worked on at once: enough to keep the threads busy, few enough to answer fast
QUEUE_TIMEOUT = 2.0  # seconds an API request may wait for its turn before 503
YIELD_BUDGET = 0.02  # seconds a background step waits for the API at most
YIELD_STEP = 0.001
NOT_API = ("/v1/agent/", "/healthz", "/readyz", "/ui/")


_in_flight = 0  # API requests of this process admitted and not yet answering (read by background threads)


def api_in_flight() -> int:
    return _in_flight


def yield_to_api(budget: float = YIELD_BUDGET) -> None:
    """For background threads, between steps: wait while API requests are in flight, at most `budget`."""
    if _in_flight <= 0:
        return
    end = time.monotonic() + budget
    while _in_flight > 0 and time.monotonic() < end:
        time.sleep(YIELD_STEP)


class Slices:
    """For a long background step (the leader's pass): after every `every` seconds of work, give
    API requests in flight up to `budget` seconds. Slows the step by budget/every at most."""

    def __init__(self, every: float = 0.01, budget: float = 0.005):
        self.every, self.budget = every, budget
        self._next = time.monotonic() + every

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            yield_to_api(self.budget)
            self._next = time.monotonic() + self.every


class APIFirst:
    """ASGI middleware: admission for API requests (see the module docstring)."""

    def __init__(self, app: Any, limit: int = API_LIMIT, queue_timeout: float = QUEUE_TIMEOUT):
        self.app, self.limit, self.queue_timeout = app, limit, queue_timeout
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def slots(self) -> asyncio.Semaphore:
        """The admission semaphore of the running event loop (tests run one app in several loops)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.limit))
        return self._slots[1]

    async def _refuse(self, send: Any) -> None:
        msg = (f"the server is overloaded: more than {self.limit} API requests in progress and this one "
               f"waited {self.queue_timeout:g}s for its turn; retry shortly")
        body = json.dumps(error_body("overloaded", msg)).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(NOT_API):
            await self.app(scope, receive, send)
            return
        global _in_flight
        slots = self.slots()
        if slots.locked():
            metrics.API_QUEUED.inc()
            try:
                await asyncio.wait_for(slots.acquire(), self.queue_timeout)
            except asyncio.TimeoutError:
                metrics.API_REFUSED.inc()
                await self._refuse(send)
                return
        else:
            await slots.acquire()
        _in_flight += 1
        held = True

        def release() -> None:
            global _in_flight
            nonlocal held
            if held:
                held = False
                _in_flight -= 1
                slots.release()

        async def started(message: Any) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        writer = API_WRITER.set(True)  # its database writes queue first (db.py)
        try:
            await self.app(scope, receive, started)
        finally:
            API_WRITER.reset(writer)
            release()
