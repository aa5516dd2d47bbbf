"""Signals between servers through PostgreSQL's LISTEN/NOTIFY.

One channel; a payload is JSON `{"k": kind, "v": [values], "s": sender}`. A server delivers
its own signals locally at once and ignores their echo. Payloads are chunked under
PostgreSQL's 8,000-byte limit. The listener runs in a thread of its own with its own
connection; when that connection is lost it reconnects with back-off and then delivers
RESYNC, since whatever was notified meanwhile is gone.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Iterable

import psycopg

from orchestrator.coord.base import RESYNC, Coordinator, server_id

log = logging.getLogger("dockyard.coord")
CHANNEL = "dockyard"
MAX_PAYLOAD = 7000


def libpq_url(url: str) -> str:
    """SQLAlchemy's postgresql+psycopg://... as a URL libpq understands."""
    scheme, _, rest = url.partition("://")
    return "postgresql://" + rest


class PostgresCoordinator(Coordinator):
    shared = True

    def __init__(self, url: str):
        super().__init__()
        self.url = libpq_url(url)
        self.me = server_id()
        self._send_lock = threading.Lock()
        self._send: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    # -- sending ---------------------------------------------------------------------
    def publish(self, kind: str, values: Iterable[str] = ()) -> None:
        vals = list(values)
        self._deliver(kind, vals)
        for payload in _payloads(kind, vals, self.me):
            self._notify(payload)

    def _notify(self, payload: str) -> None:
        with self._send_lock:
            for attempt in (1, 2):  # a connection broken since the last send: one fresh try
                try:
                    if self._send is None or self._send.closed:
                        self._send = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                    self._send.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    return
                except psycopg.Error as exc:
                    self._close_send()
                    if attempt == 2:
                        # the listeners of the other servers lost their connection too (the
                        # database is away) and resync when it is back
                        log.warning("could not notify other servers: %s", exc)

    def _close_send(self) -> None:
        if self._send is not None:
            try:
                self._send.close()
            except Exception:
                pass
        self._send = None

    # -- listening -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen_forever, name="dockyard-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        with self._send_lock:
            self._close_send()

    def _listen_forever(self) -> None:
        delay, first = 0.2, True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._connected, delay = True, 0.2
                    if not first:
                        self._deliver(RESYNC, [])
                    first = False
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=1.0, stop_after=256):
                            self._received(n.payload)
                        conn.execute("SELECT 1")  # notices a dead connection within a second
            except psycopg.Error as exc:
                if self._connected:
                    log.warning("lost the database's notifications (%s); reconnecting", exc)
                self._connected = False
                first = False
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
        self._connected = False

    def _received(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
            if msg.get("s") == self.me:
                return  # delivered locally when published
            self._deliver(str(msg["k"]), [str(v) for v in msg.get("v", [])])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notification: %.80s", payload)


def _payloads(kind: str, values: list[str], me: str) -> list[str]:
    """One or more JSON payloads carrying `values`, each under MAX_PAYLOAD bytes."""
    out, chunk, size = [], [], 0
    for v in values:
        if chunk and size + len(v) + 4 > MAX_PAYLOAD:
            out.append(json.dumps({"k": kind, "v": chunk, "s": me}))
            chunk, size = [], 0
        chunk.append(v)
        size += len(v) + 4
    out.append(json.dumps({"k": kind, "v": chunk, "s": me}))
    return out
