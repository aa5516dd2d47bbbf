"""Server settings: one plain object built from flags or DOCKYARD_* environment variables."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=lambda: Path(".dockyard"))
    database_url: str | None = None
    admin_token: str | None = None
    join_token: str | None = None
    loop_interval: float = 1.0
    node_ttl: float = 5.0
    # seconds a node whose agent dropped its long poll (a dead agent process) has to reconnect
    # before it is down, instead of waiting for the TTL; 0 turns the fast path off (--node-grace)
    node_grace: float = 1.0
    # seconds a leader's lease lasts unrenewed (renewed about every second); --lease-ttl or
    # DOCKYARD_LEASE_TTL. 4 s: a crash is taken over within about 4.25 s (coord/leader.py)
    lease_ttl: float = field(default_factory=lambda: float(os.environ.get("DOCKYARD_LEASE_TTL") or 4.0))
    heartbeat_interval: float = 1.0
    history_limit: int = 10
    log_level: str = "info"
    # security (see README, Security)
    allow: tuple[str, ...] = ()  # host privileges specs may use: privileged, host-network, host-pid, cap:X, bind:/p
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # host:port of the Docker Engine API listener (orchestrator/dockerapi/); '' = none. Its socket
    # is bound by the command line before the server starts, so a taken port stops it at once.
    docker_api: str = ""
    docker_api_socket: Any = field(default=None, repr=False)
    # the CA that signs the agents' API certificates; unset: each agent's own certificate is
    # pinned at join (orchestrator/agent_tls.py). The CLI does not pass it (yet): read here.
    agent_ca: Path | None = field(default_factory=lambda: Path(p) if (p := os.environ.get("DOCKYARD_AGENT_CA")) else None)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(self.data_dir) / 'dockyard.db').resolve()}"
