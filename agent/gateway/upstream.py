"""Keep-alive connections from the gateway to backends, pooled per (address, port).

Opening a TCP connection per request costs a round trip and a socket on both sides; a few
idle connections per backend are kept for reuse instead. Runs on the gateway's event loop
only, so nothing here locks.
"""
from __future__ import annotations

import asyncio
import time


class UpstreamConn:
    __slots__ = ("key", "reader", "writer", "idle_since")

    def __init__(self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        # a backend that closed an idle connection has fed EOF by the time we look; stray bytes
        # on an idle connection mean it is out of step, so it goes too
        return not self.writer.transport.is_closing() and not self.reader.at_eof() \
            and not self.reader._buffer  # type: ignore[attr-defined]

    def close(self) -> None:
        try:
            self.writer.transport.abort()
        except Exception:  # already gone
            pass


class UpstreamPool:
    def __init__(self, connect_timeout: float, max_idle: int = 32, max_idle_age: float = 30.0):
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.max_idle_age = max_idle_age
        self._idle: dict[tuple[str, int], list[UpstreamConn]] = {}

    async def acquire(self, address: str, port: int, *, fresh: bool = False) -> tuple[UpstreamConn, bool]:
        """(connection, whether it was reused). Raises OSError or TimeoutError on connect failure."""
        key = (address, port)
        if not fresh:
            idle = self._idle.get(key)
            while idle:
                c = idle.pop()  # the most recently used one is the least likely to have been closed
                if c.usable():
                    return c, True
                c.close()
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(address, port, limit=1 << 17)
        return UpstreamConn(key, reader, writer), False

    def release(self, c: UpstreamConn) -> None:
        idle = self._idle.setdefault(c.key, [])
        if len(idle) >= self.max_idle or not c.usable():
            c.close()
            return
        c.idle_since = time.monotonic()
        idle.append(c)

    def sweep(self, live: set[tuple[str, int]]) -> None:
        """Close connections idle too long or to backends no longer in the table."""
        cutoff = time.monotonic() - self.max_idle_age
        for key in list(self._idle):
            conns = self._idle[key]
            keep = [c for c in conns if key in live and c.idle_since >= cutoff and c.usable()]
            for c in conns:
                if c not in keep:
                    c.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def idle_count(self, key: tuple[str, int] | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(map(len, self._idle.values()))

    def close_all(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
