"""The agent's HTTP client for the server: join and sync."""
from __future__ import annotations

from typing import Any

import httpx

from agent.types import Assignment


class AuthLost(Exception):
    """The server no longer accepts our credential: join again."""


class SyncClient:
    def __init__(self, server: str, verify: Any = True):
        self.server = server
        self.credential: str | None = None
        # two clients: the long poll must never queue behind (or in front of) a report
        self._poll = httpx.Client(base_url=server, timeout=httpx.Timeout(10.0, read=75.0), verify=verify)
        self._push = httpx.Client(base_url=server, timeout=10.0, verify=verify)

    def join(self, body: dict) -> dict:
        r = self._push.post("/v1/agent/join", json=body)
        if r.status_code >= 400:
            raise RuntimeError(f"join refused ({r.status_code}): {_message(r)}")
        out = r.json()
        self.credential = out["credential"]
        return out

    def sync(self, known: str | None, wait: float,
             report: list[dict] | None) -> tuple[str, list[Assignment] | None, float]:
        """(generation, assignments, heartbeat interval); assignments is None when the server
        says they are unchanged since `known`."""
        client = self._poll if wait > 0 else self._push
        r = client.post("/v1/agent/sync", json={"known": known, "wait": wait, "report": report},
                        headers={"Authorization": f"Bearer {self.credential}"})
        if r.status_code == 401:
            raise AuthLost(_message(r))
        if r.status_code >= 400:
            raise RuntimeError(f"sync refused ({r.status_code}): {_message(r)}")
        out = r.json()
        raw = out.get("assignments")
        assignments = None if raw is None else [Assignment(**a) for a in raw]
        return out["generation"], assignments, out["heartbeat_interval"]

    def close(self) -> None:
        self._poll.close()
        self._push.close()


def _message(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except Exception:
        return r.text[:200]
