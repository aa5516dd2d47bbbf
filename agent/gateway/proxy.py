"""The gateway's data plane: an HTTP/1.1 reverse proxy on its own thread and event loop.

A thin I/O shell around `routing.py`: httptools parses, `routing` decides, this file moves
bytes. One coroutine per client connection serves its requests in order (keep-alive,
pipelining); each request streams its body to a pooled backend connection (`upstream.py`)
and the response streams back as it arrives, re-framed for the client. Nothing buffers a
whole body: a read is forwarded before the next one is taken, so a slow side holds back
only its own connection. The per-connection protocol logic is in `session.py`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import httptools
from prometheus_client import REGISTRY, CollectorRegistry

from . import routing as rt
from .metrics import GatewayMetrics
from .session import Session
from .upstream import UpstreamPool

log = logging.getLogger("dockyard.gateway")

READ = 1 << 16


class GatewayError(RuntimeError):
    pass


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.new_event_loop()


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {listen!r}")
    return host, int(port)


class Gateway:
    def __init__(self, listen: str = "127.0.0.1:8000", *, connect_timeout: float = 2.0,
                 response_timeout: float = 60.0, idle_timeout: float = 75.0,
                 registry: CollectorRegistry | None = None, access_log: bool = False):
        self.listen = listen
        # one line per answered request (client, method, host, path, status, time, the namespace
        # and service that served it, the requested space): off by default, it costs per request
        self.access_log = logging.getLogger("dockyard.gateway.access") if access_log else None
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.idle_timeout = idle_timeout
        self.registry = registry if registry is not None else REGISTRY
        self.metrics = GatewayMetrics(self.registry)
        self.pool = UpstreamPool(connect_timeout, max_idle=64)
        self.outstanding: dict[str, int] = {}  # instance id -> requests in flight (loop thread only)
        self.turn = 0
        self._table = rt.Table()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[Session] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._address: tuple[str, int] | None = None

    # ---- control (any thread) ----------------------------------------------------------------

    def update(self, routes_wire: Any, spaces: Any = None) -> None:
        """Swap in a new routing table and spaces map (`{namespace: parent or None}`; None:
        every namespace is a root); requests already in flight keep their endpoint."""
        self._table = rt.Table.from_wire(routes_wire, spaces)  # one reference store: atomic under the GIL

    def table(self) -> list[dict[str, Any]]:
        return self._table.to_wire()

    def spaces(self) -> dict[str, str | None]:
        """The spaces map in effect (without one given: every namespace with a route, as a root)."""
        return self._table.spaces_to_wire()

    @property
    def routes(self) -> rt.Table:
        return self._table

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise GatewayError("gateway is not started")
        return self._address

    def start(self) -> None:
        host, port = parse_listen(self.listen)
        loop = self._loop = _new_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(host, port), loop).result(timeout=10)
        except OSError as e:
            self._halt()
            raise GatewayError(f"gateway cannot listen on {self.listen}: {e.strerror or e}") from e
        except BaseException:
            self._halt()
            raise

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        except Exception:  # shutting down anyway
            log.exception("gateway shutdown")
        self._halt()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        self._address = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            loop.close()

    # ---- loop side ---------------------------------------------------------------------------

    async def _serve(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._client, host, port, backlog=1024, limit=READ)
        self._address = self._server.sockets[0].getsockname()[:2]
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for s in list(self._sessions):
            s.writer.transport.abort()
        self.pool.close_all()
        await asyncio.sleep(0)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.idle_timeout / 4, self.response_timeout / 4)
        n = 0
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            idle_cutoff, response_cutoff = now - self.idle_timeout, now - self.response_timeout
            for s in list(self._sessions):
                if 0.0 < s.idle_since < idle_cutoff:
                    s.abort = True
                    s.writer.transport.abort()  # the session's pending read sees EOF and ends
                if 0.0 < s.upstream_since < response_cutoff and s.upstream is not None:
                    s.timed_out = True
                    s.upstream.close()  # likewise for its pending backend read
            n += 1
            if n % max(1, int(5 / tick)) == 0:
                self.pool.sweep(self._table.endpoint_keys())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = Session(self, reader, writer)
        self._sessions.add(s)
        try:
            await s.run()
        except Exception:  # one broken connection must never take the gateway down
            log.debug("client session failed", exc_info=True)
        finally:
            self._sessions.discard(s)
            writer.transport.abort() if s.abort else writer.close()

