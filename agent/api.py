"""The agent's small HTTP API: container logs for the server to proxy, nothing else.

Reconciliation never uses it (agents pull); it exists for streams a user asks for. Every
request but /healthz must carry `Authorization: Bearer <agent key>`, the per-node key the
server hands out at join and keeps to call this API. The agent only serves containers
labelled with its own node, looked up by instance id.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from agent.driver import DockerDriver, DriverError

log = logging.getLogger("dockyard.agent.api")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = listen, "0"
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"--listen must look like host:port, got {listen!r}") from None


def advertised_url(host: str, port: int, address: str = "") -> str:
    """The URL the server should call: the listen address, or the node's address when listening on all."""
    if host in ("0.0.0.0", "::", ""):
        host = address or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _is_true(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes", "on")


class AgentAPI:
    def __init__(self, listen: str, driver: DockerDriver, key: Callable[[], str | None], address: str = ""):
        self.host, self.port = parse_listen(listen)
        self.driver, self.key, self.address = driver, key, address
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return advertised_url(self.host, self.server.server_address[1], self.address)

    def start(self) -> str:
        api = self

        class Handler(_Handler):
            owner = api

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
                         name="agent-api").start()
        log.info("agent API listening on %s", self.url)
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def find_container(self, instance_id: str) -> str | None:
        mine = [o for o in self.driver.list() if o.instance_id == instance_id]
        mine.sort(key=lambda o: (o.state != "running", o.container_id))
        return mine[0].container_id if mine else None


class _Handler(BaseHTTPRequestHandler):
    owner: AgentAPI
    server_version = "dockyard-agent"

    def log_message(self, fmt: str, *args) -> None:  # type: ignore[no-untyped-def]
        log.debug("%s " + fmt, self.address_string(), *args)

    def _json(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        key = self.owner.key()
        if not key:
            self._json(503, "unavailable", "the agent has not joined the cluster yet")
            return False
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            self._json(401, "unauthorized", "missing or invalid agent key")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts == ["healthz"]:
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not self._authorised():
            return
        if len(parts) == 4 and parts[:2] == ["v1", "instances"] and parts[3] == "logs":
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._logs(parts[2], q.get("tail", "all"), _is_true(q.get("follow")))
            return
        self._json(404, "not_found", f"no such endpoint: {url.path}")

    def _logs(self, instance_id: str, tail: str, follow: bool) -> None:
        if tail != "all" and not tail.isdigit():
            self._json(400, "bad_request", "tail must be a number of lines or 'all'")
            return
        try:
            cid = self.owner.find_container(instance_id)
            if cid is None:
                self._json(404, "not_found", f"instance {instance_id!r} has no container on this node")
                return
            stream = self.owner.driver.logs(cid, tail=tail, follow=follow)
        except DriverError as exc:
            self._json(404, "not_found", str(exc))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader went away
        except Exception as exc:  # the container went away mid-stream
            log.debug("log stream of %s ended: %s", instance_id, exc)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
            self.close_connection = True
