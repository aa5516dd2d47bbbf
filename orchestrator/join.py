"""Who may join under a node name: the pure decision behind POST /v1/agent/join.

The join token lets a host into the cluster; it must not let whoever holds it take over
the identity of a node that is alive (its assignments, its logs, its credential). So:

- a name nobody has is free: a new node;
- a node's own agent may always join again, by presenting the node's current credential
  (the agent keeps it in its state directory, so a restarted agent re-joins at once and
  re-adopts its containers before the node would go down);
- a node that is down (declared down by the loop, or silent for longer than the node TTL)
  may be taken by the join token alone: its instances were already declared lost and
  replaced, so the name carries nothing live, and a reinstalled host (state directory
  lost) comes back without an admin;
- anything else is refused: an admin removes the node first
  (`dockyard nodes drain NAME --wait && dockyard nodes rm NAME`).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    """What the server knows of a node that already has the name."""

    status: str  # ready | down
    last_seen: float  # the newest heartbeat this server knows of (seconds since the epoch)
    credential_hash: str  # sha256 hex of its current credential ("" if none)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    kind: str  # new | own | revive | refused
    reason: str


def decide(name: str, known: Known | None, presented_hash: str | None, now: float, ttl: float) -> Verdict:
    """May an agent join as `name`? `presented_hash` is the hash of the credential it sent, if any."""
    if known is None:
        return Verdict(True, "new", f"node {name} joined")
    if presented_hash and known.credential_hash and hmac.compare_digest(presented_hash, known.credential_hash):
        return Verdict(True, "own", f"node {name} re-joined with its credential")
    silent = now - known.last_seen
    if known.status == "down" or silent > ttl:
        return Verdict(True, "revive", f"node {name} re-joined (it was down)")
    why = "the credential it sent is not the node's current one" if presented_hash else "it sent no node credential"
    return Verdict(False, "refused", (
        f"node {name!r} is already joined and alive (last heartbeat {max(silent, 0.0):.1f}s ago); {why}. "
        f"A second agent cannot take over a live node's name with the join token: give this agent another "
        f"--node-name, or stop the node's agent and wait until the node is down (node TTL {ttl:g}s), "
        f"or have an admin remove the node first (`dockyard nodes drain {name} --wait && dockyard nodes rm {name}`)"))
