"""Node loss, the fast path: a server that sees an agent drop its long poll marks the node suspect.

The agent's side closing the connection while its long poll waits (its process died, its
host closed the socket) is a strong hint that the node is gone, seconds before its TTL
would tell. The server that saw it writes the time to nodes.suspect_since (it may not lead:
the column is how the leader hears of it) and kicks the leader, whose pass declares the node
down once the grace passes with no heartbeat newer than the drop (core/liveness.py). A
reconnect within the grace, to any server, clears it. Not fenced: like a heartbeat, it is an
observation, and the leader's decision is the fenced write.

Nothing is kept in memory here. Only a poll that was the node's newest on this server counts
(hub.polls): an agent that timed out a slow answer and polled again must not be suspected for
the connection it gave up.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import bindparam, update

from orchestrator.api.deps import CREDENTIAL_CACHE_SECONDS, State
from orchestrator.auth import bearer, hash_secret
from orchestrator.batching import Batcher
from orchestrator.models import Node

log = logging.getLogger("dockyard.nodes")
_nodes = Node.__table__
# ready, and no newer heartbeat in the table (it already reconnected to another server)
MARK = (update(_nodes)
        .where(_nodes.c.name == bindparam("n"), _nodes.c.status == "ready", _nodes.c.last_heartbeat <= bindparam("beat"))
        .values(suspect_since=bindparam("at")))


def _mark(st: State, items: list[tuple[str, float, float]]) -> list[object]:
    """One statement for every drop that arrived meanwhile: a switch failing under a rack of
    agents closes hundreds of connections at once."""
    st.db.run(lambda s: s.connection().execute(MARK, [{"n": n, "beat": b, "at": t} for n, b, t in items]))
    return [None] * len(items)


def _batcher(st: State) -> Batcher:
    b = getattr(st, "suspect_batcher", None)
    if b is None:
        b = st.suspect_batcher = Batcher("suspects", lambda items: _mark(st, items))  # type: ignore[attr-defined]
    return b


async def dropped(st: State, node: str, beat: float) -> None:
    """The node's newest long poll (heard at `beat`) was closed by its agent's side."""
    if st.settings.node_grace <= 0:
        return  # --node-grace 0: only the TTL counts
    try:
        await _batcher(st).submit((node, beat, time.time()))
    except Exception as exc:  # the database is away: the TTL still applies
        log.warning("could not mark node %s suspect: %s", node, exc)
        return
    log.info("node %s dropped its connection; down in %.1fs unless it reconnects", node,
             st.hub.node_grace(st.settings.node_grace))
    st.loop.kick()  # the leader looks, and wakes up again when the grace ends


async def unread(request: Any) -> None:
    """A sync whose connection closed before its body was read: the agent died right after
    sending its next long poll (a window as long as the server takes to read a request: tens
    of ms on a busy server). The node comes from the credential cache (no database read; not
    cached: the TTL still applies); it counts only if no poll of the node runs here."""
    st: State = request.app.state.dy
    try:
        digest = hash_secret(bearer(request.headers.get("authorization")))
    except Exception:
        return
    p = st.hub.credential(digest, time.time(), CREDENTIAL_CACHE_SECONDS)
    if p is None or getattr(p, "kind", None) != "node" or p.name in st.hub.polls:  # type: ignore[attr-defined]
        return
    await dropped(st, p.name, time.time())  # type: ignore[attr-defined]
