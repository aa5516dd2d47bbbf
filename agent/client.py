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

import functools
import http.client
import json
import logging
import select
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from agent import wire
from agent.types import Assignment

log = logging.getLogger("dockyard.agent")
RETRY_STATUSES = (502, 503, 504)
CONNECT_TIMEOUT = 2.0  # seconds to connect (and shake hands, with TLS)
REQUEST_TIMEOUT = 5.0  # seconds a join, a report or a metrics post may wait for a read or a write
ANSWER_MARGIN = 5.0  # seconds a sync may take beyond its long-poll wait (a busy server, a big answer)
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)  # unreachable, reset, timed out, a garbled answer


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
        self._conns: dict[tuple[str, str], Connection] = {}

    @property
    def server(self) -> str:
        return self.servers[self.current]

    def _request(self, url: str, kind: str, path: str, body: dict, headers: dict[str, str],
                 timeout: float) -> Answer:
        c = self._conns.get((url, kind))
        if c is None:
            c = self._conns[(url, kind)] = Connection(url, self.verify)
        return c.post(path, body, headers, timeout)

    def _post(self, kind: str, path: str, body: dict, headers: dict | None = None,
              timeout: float = REQUEST_TIMEOUT) -> Answer:
        """POST to the current server, else to each of the others in turn."""
        last: Exception | None = None
        for k in range(len(self.servers)):
            idx = (self.current + k) % len(self.servers)
            url = self.servers[idx]
            try:
                r = self._request(url, kind, path, body, headers or {}, timeout)
            except TRANSPORT_ERRORS as exc:
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
                       wire.sync_request(known, wait, report, self.routes_known),
                       headers={"Authorization": f"Bearer {self.credential}"}, timeout=wait + ANSWER_MARGIN)
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
        for c in self._conns.values():
            c.close()


class Answer:
    """A server's answer: its status and body (read whole: answers are small JSON documents)."""

    def __init__(self, status_code: int, content: bytes):
        self.status_code, self.content = status_code, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Connection:
    """One kept-alive HTTP/1.1 connection to one server, on the standard library's http.client.

    The agent's few calls (JSON POSTs, one at a time per connection) need no more than this, and
    httpx would cost an agent ~7 MiB of resident memory (its command-line module imports Rich,
    Click and Pygments; docs/performance.md, Memory). `verify` is as httpx's: True (the system's
    CAs), False, or an ssl.SSLContext (orchestrator/cli/main.py _ca)."""

    def __init__(self, url: str, verify: Any = True):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host, self.tls = parts.hostname, parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.context: ssl.SSLContext | None = None
        if self.tls:
            if isinstance(verify, ssl.SSLContext):
                self.context = verify
            else:
                self.context = _default_context() if verify else ssl._create_unverified_context()
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict, headers: dict[str, str], timeout: float) -> Answer:
        data = json.dumps(body, separators=(",", ":")).encode()
        hdrs = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        if self.conn is not None and _closed_by_peer(self.conn.sock):
            self.close()  # the server closed the kept-alive connection meanwhile (idle, restarted)
        conn = self.conn or self._connect()
        self.conn = conn
        try:
            conn.sock.settimeout(timeout)
            conn.request("POST", self.prefix + path, body=data, headers=hdrs)
            r = conn.getresponse()
            content = r.read()
        except BaseException:
            self.close()
            raise
        if r.will_close:
            self.close()
        return Answer(r.status, content)

    def _connect(self) -> http.client.HTTPConnection:
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        # http.client for the Host header and the framing; the socket is ours
        conn = (http.client.HTTPSConnection(self.host, self.port, context=self.context) if self.tls
                else http.client.HTTPConnection(self.host, self.port))
        conn.sock = sock
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@functools.lru_cache(maxsize=1)
def _default_context() -> ssl.SSLContext:
    """The system's CAs, loaded once for every connection (each load costs memory)."""
    return ssl.create_default_context()


def _closed_by_peer(sock: socket.socket | None) -> bool:
    """Is an idle kept-alive socket readable? Then the server closed it (or sent what we never
    asked for): either way it cannot carry a request."""
    if sock is None:
        return True
    try:
        poller = select.poll()  # not select(): a busy agent's descriptors may be past 1024
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _message(r: Answer) -> str:
    try:
        return r.json()["error"]["message"]
    except Exception:
        return r.text[:200]
