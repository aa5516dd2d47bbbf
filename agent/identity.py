"""The node credential, kept across agent restarts (the one thing the agent keeps on disk).

The server lets an agent join under the name of a node that is alive only with that
node's current credential (orchestrator/join.py): with the credential saved here, a
restarted agent re-joins at once and re-adopts its containers before the node would be
declared down. Desired state is never kept here: only this secret, mode 0600.
Where: --state-dir / DOCKYARD_AGENT_STATE_DIR, else $XDG_STATE_HOME/dockyard, else
~/.local/state/dockyard. A directory that cannot be written is not fatal: the agent then
behaves as before this file existed (it waits for its node to be down to re-join).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("dockyard.agent.identity")


def default_dir() -> Path:
    env = os.environ.get("DOCKYARD_AGENT_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "dockyard" if xdg else Path.home() / ".local" / "state" / "dockyard"


def _path(state_dir: Path, node: str) -> Path:
    # node names are DNS labels; the server URL is not part of the name (one cluster, several servers)
    return Path(state_dir) / f"agent-{node}.credential"


def load(state_dir: Path, node: str) -> str | None:
    try:
        text = _path(state_dir, node).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the saved node credential: %s", exc)
        return None
    return text or None


def save(state_dir: Path, node: str, credential: str) -> None:
    p = _path(state_dir, node)
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(credential + "\n")
        os.replace(tmp, p)
    except OSError as exc:
        log.warning("cannot save the node credential under %s (%s): a restarted agent will have to wait "
                    "until its node is down to join again", p.parent, exc)
