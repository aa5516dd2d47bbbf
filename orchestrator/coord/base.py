"""The coordination interface and its in-process implementation (one server on SQLite)."""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections import defaultdict
from typing import Callable, Iterable

log = logging.getLogger("dockyard.coord")
Handler = Callable[[list[str]], None]

# signal kinds (values: what they are about)
BUMP = "bump"                # node names whose assignments changed: wake their long polls
EVENTS = "events"            # events were committed: wake SSE watchers
FORGET_NODE = "forget_node"  # node names whose cached credential is no longer valid
FORGET_TOKEN = "forget_token"  # API token ids that were revoked
KICK = "kick"                # something changed that the leader's loop should look at soon
RELEASED = "released"        # the leader let go of the lease: take it now, not after the TTL
RESYNC = "resync"            # signals may have been missed: drop every cache
ROUTES = "routes"            # what the gateways' routing table is made of changed: recompute it


def server_id() -> str:
    """A name for this server process, unique across restarts and hosts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Coordinator:
    shared = False  # may other servers share this database?

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()

    def on(self, kind: str, fn: Handler) -> None:
        with self._lock:
            self._handlers[kind].append(fn)

    def publish(self, kind: str, values: Iterable[str] = ()) -> None:
        raise NotImplementedError

    def _deliver(self, kind: str, values: list[str]) -> None:
        with self._lock:
            handlers = list(self._handlers.get(kind, ()))
        for fn in handlers:
            try:
                fn(values)
            except Exception:  # one bad handler must not stop the others (or the listener)
                log.exception("coordination handler for %s failed", kind)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True


class MemoryCoordinator(Coordinator):
    """One server: a signal is a call of the local handlers."""

    def publish(self, kind: str, values: Iterable[str] = ()) -> None:
        self._deliver(kind, list(values))
