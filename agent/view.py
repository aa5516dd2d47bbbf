"""What runs on this node between two container lists: the last list, patched with what the
agent's own actions did since.

Listing the node's containers costs the engine (and the agent) time in proportion to every
container on it, and a converge of N containers finishes N actions: listing after each
made a converge O(N^2) in the engine that the containers are waiting on. The agent lists
when something it did not do happened (a `die`, a health status, a failed action, a
container it did not start), and as a safety net; between lists, a container it started is
known to run (Docker's start returned) and one it removed is known to be gone.

Pure: no Docker, no clock, no threads; the shell (agent/main.py) calls it under its lock.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from agent.types import Observed

# Docker events the agent's own actions cause: seen for a container it is starting or just
# started ("start") or removing or just removed ("die" of the stop, "destroy"), they say
# nothing new.
OWN_EVENTS = {"start": "started", "die": "removed", "destroy": "removed"}


@dataclass
class LocalView:
    listed: list[Observed] = field(default_factory=list)
    # container id -> (sequence number, what it is): started by us since the last list
    started: dict[str, tuple[int, Observed]] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # container id -> sequence number
    # containers Docker said died while we were still starting them: their start is no news
    dead: set[str] = field(default_factory=set)
    stale: bool = True  # something we did not do may have happened: list before the next diff
    seq: int = 0

    def begin_list(self) -> int:
        """A list starts now; the token to hand to `took_list` with its result."""
        self.stale = False
        self.seq += 1
        return self.seq

    def took_list(self, token: int, observed: list[Observed]) -> None:
        """The list begun with `token` came back: it shows every action finished before it began
        (those still show through, those done meanwhile are kept)."""
        self.listed = list(observed)
        self.dead &= {o.container_id for o in observed}  # of those gone, no start will return
        self.started = {cid: v for cid, v in self.started.items() if v[0] >= token}
        self.removed = {cid: seq for cid, seq in self.removed.items() if seq >= token}

    def did_start(self, o: Observed) -> None:
        if o.container_id in self.dead:  # it died before its start call returned
            self.dead.discard(o.container_id)
            self.stale = True
            return
        self.seq += 1
        self.removed.pop(o.container_id, None)
        self.started[o.container_id] = (self.seq, o)

    def did_restart(self, container_id: str) -> None:
        """Restarted in place (its state and host ports may have changed): list again."""
        self.stale = True
        self.dead.discard(container_id)

    def did_die(self, container_id: str, starting: bool) -> None:
        """Docker said it died (not in our removal): a list must tell what it is now. `starting`:
        its start may not have returned yet, and must not be taken as news when it does."""
        self.stale = True
        self.started.pop(container_id, None)
        if starting:
            self.dead.add(container_id)

    def did_remove(self, container_id: str) -> None:
        self.seq += 1
        self.started.pop(container_id, None)
        self.removed[container_id] = self.seq

    def own(self, action: str, container_id: str) -> bool:
        """Is this Docker event one of our own actions' (nothing to list for)?"""
        kind = OWN_EVENTS.get(action)
        return (kind == "started" and container_id in self.started) or (
            kind == "removed" and container_id in self.removed)

    def current(self) -> list[Observed]:
        """The last list, without the containers removed since, with those started since."""
        out = [self.started[o.container_id][1] if o.container_id in self.started else o
               for o in self.listed if o.container_id not in self.removed]
        shown = {o.container_id for o in self.listed}
        out += [o for cid, (_, o) in sorted(self.started.items(), key=lambda kv: kv[1][0]) if cid not in shown]
        return out
