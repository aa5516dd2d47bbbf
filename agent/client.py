"""The agent's HTTP client for the servers: join and sync, failing over between them.

The agent is given one server URL or several (`--server URL1,URL2,URL3`); any server of a
cluster answers every call, since they share one database. A call that cannot reach its
server (connection refused or reset, a timeout, a 502/503/504) is tried on the next one at
once, so losing the server an agent talks to costs it one failed request.

Answers carry the leader epoch their assignments were read under; an answer older than the
newest epoch this agent has seen is ignored (it was computed before a takeover and only
arrived late, e.g. the long poll overtaken by a report's answer).
"""
from __future__ import annotations

import logging
from typing import Any

import httpx

from agent.types import Assignment
from orchestrator import protocol

log = logging.getLogger("dockyard.agent")
RETRY_STATUSES = (502, 503, 504)
REQUEST_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
ANSWER_MARGIN = 5.0  # seconds a sync may take beyond its long-poll wait (a busy server, a big answer)


class AuthLost(Exception):
    """The server no longer accepts our credential: join again."""


def server_list(servers: str | list[str]) -> list[str]:
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out = [s.strip().rstrip("/") for s in items if s.strip()]
    if not out:
        raise ValueError("no server URL given")
    return out


class SyncClient:
    def __init__(self, server: str | list[str], verify: Any = True):
        self.servers = server_list(server)
        self.current = 0
        self.verify = verify
        self.credential: str | None = None
        self.epoch = 0  # the newest leader epoch seen in an answer
        # the routing table for this node's gateway: None = no gateway (the server sends no
        # table); else the version we have, sent with every sync, and who takes a new table
        self.routes_known: str | None = None
        self.on_routes: Any = None
        # two clients per server: the long poll must never queue behind (or in front of) a report
        self._clients: dict[tuple[str, str], httpx.Client] = {}

    @property
    def server(self) -> str:
        return self.servers[self.current]

    def _client(self, url: str, kind: str) -> httpx.Client:
        c = self._clients.get((url, kind))
        if c is None:
            c = self._clients[(url, kind)] = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT, verify=self.verify)
        return c

    def _post(self, kind: str, path: str, body: dict, headers: dict | None = None,
              timeout: httpx.Timeout = None) -> httpx.Response:  # type: ignore[assignment]
        """POST to the current server, else to each of the others in turn."""
        last: Exception | None = None
        for k in range(len(self.servers)):
            idx = (self.current + k) % len(self.servers)
            url = self.servers[idx]
            try:
                r = self._client(url, kind).post(path, json=body, headers=headers, timeout=timeout or REQUEST_TIMEOUT)
            except httpx.TransportError as exc:
                last = exc
            else:
                if r.status_code not in RETRY_STATUSES or k == len(self.servers) - 1:
                    if idx != self.current:
                        log.info("now talking to %s", url)
                        self.current = idx
                    return r
                last = RuntimeError(f"{url} answered {r.status_code}: {_message(r)}")
            if len(self.servers) > 1:
                log.warning("server %s unreachable (%s); trying the next", url, last)
        assert last is not None
        raise last

    def join(self, body: dict) -> dict:
        r = self._post("push", "/v1/agent/join", body)
        if r.status_code >= 400:
            raise RuntimeError(f"join refused ({r.status_code}): {_message(r)}")
        out = r.json()
        self.credential = out["credential"]
        return out

    def sync(self, known: str | None, wait: float,
             report: list[dict] | None) -> tuple[str | None, list[Assignment] | None, float]:
        """(generation, assignments, heartbeat interval); assignments is None when the server
        says they are unchanged since `known`, or when the answer is older than one already seen."""
        # a server that stopped answering (paused, its host gone silent) must not hold the long
        # poll for long: it answers within `wait` seconds, or the next server is asked
        r = self._post("poll" if wait > 0 else "push", "/v1/agent/sync",
                       protocol.sync_request(known, wait, report, self.routes_known),
                       headers={"Authorization": f"Bearer {self.credential}"},
                       timeout=httpx.Timeout(REQUEST_TIMEOUT.connect, read=wait + ANSWER_MARGIN))
        if r.status_code == 401:
            raise AuthLost(_message(r))
        if r.status_code >= 400:
            raise RuntimeError(f"sync refused ({r.status_code}): {_message(r)}")
        out = r.json()
        self._routes(out)
        raw = out.get("assignments")
        if raw is not None and not self.fresh(out.get("epoch")):
            return known, None, out["heartbeat_interval"]
        assignments = None if raw is None else [Assignment(**a) for a in raw]
        return out["generation"], assignments, out["heartbeat_interval"]

    def leave(self) -> None:
        """Tell the server we stop on purpose, so that our long poll's connection closing does
        not make the node suspect (its containers keep running; a restart follows, usually).
        Best effort: a server that does not hear it sees a dropped agent. A connection of its
        own: the report thread may be using the push one."""
        try:
            self._post("leave", "/v1/agent/leave", {}, headers={"Authorization": f"Bearer {self.credential}"},
                       timeout=1.0)
        except Exception as exc:
            log.debug("leave not heard: %s", exc)

    def metrics(self, body: dict) -> int:
        """POST /v1/agent/metrics (agent/metrics_reporter.py); the answer's status. Its own
        connection per server, like the long poll's: a slow metrics post never delays a sync."""
        r = self._post("metrics", "/v1/agent/metrics", body, headers={"Authorization": f"Bearer {self.credential}"})
        return r.status_code

    def _routes(self, out: dict) -> None:
        routes = out.get("routes")
        if self.routes_known is None or routes is None or out.get("routes_version") == self.routes_known:
            return
        # versions are content digests, not ordered: a late answer may carry an older table,
        # and then the next sync (sending that older version) is answered with the current one
        self.routes_known = out.get("routes_version") or ""
        if self.on_routes is not None:
            self.on_routes(routes, out.get("spaces"))

    def fresh(self, epoch: int | None) -> bool:
        """Is an answer under `epoch` as new as any seen? (None: a server that sends no epoch)"""
        if epoch is None:
            return True
        if epoch < self.epoch:
            log.warning("ignored assignments of epoch %s (already saw epoch %s)", epoch, self.epoch)
            return False
        self.epoch = epoch
        return True

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


def _message(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except Exception:
        return r.text[:200]
