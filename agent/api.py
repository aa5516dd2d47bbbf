"""The agent's small HTTP API: container logs for the server to proxy, and the engine's own
image list and container inspection for the server's Docker Engine API.

Reconciliation never uses it (agents pull); it exists for what a user asks for. Every
request but /healthz must carry `Authorization: Bearer <agent key>`, the per-node key the
server hands out at join and keeps to call this API. The agent only serves containers
labelled with its own node, looked up by instance id. With an SSL context (agent/tls.py)
it serves HTTPS; the handshake runs in the request's own thread, so a slow client cannot
stall the accept loop.

A followed log must not outlive its reader: the container's output is pumped into a
bounded queue by a second thread while the request thread, between chunks, watches the
connection; when the server hangs up (or a write times out) both end and the Docker
stream is shut down. Accepted sockets use TCP keepalive, so a server host that vanished
without a word is noticed too.
"""
from __future__ import annotations

import hmac
import json
import logging
import queue
import select
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from agent.driver import DockerDriver, DriverError

log = logging.getLogger("dockyard.agent.api")
IO_TIMEOUT = 30.0  # seconds a request may take to arrive, and a write to be accepted
PEER_CHECK = 0.5  # seconds between looks at a quiet follow's connection
QUEUE_CHUNKS = 64  # chunks buffered between Docker and a slow reader (then Docker waits)
MAX_TAIL = 2**31 - 1
KEEPALIVE = (30, 10, 3)  # idle seconds, probe interval, probes: a silent peer is dropped in ~1 min


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = listen, "0"
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"--listen must look like host:port, got {listen!r}") from None


def advertised_host(host: str, address: str = "") -> str:
    """The host the server should call: the listen address, or the node's address when listening on all."""
    return (address or "127.0.0.1") if host in ("0.0.0.0", "::", "") else host


def advertised_url(host: str, port: int, address: str = "", scheme: str = "http") -> str:
    host = advertised_host(host, address)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _keepalive(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = KEEPALIVE
        for opt, v in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), v)
    except OSError:
        pass  # not fatal: the follow loop still notices a server that hangs up


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, addr = self.socket.accept()
        _keepalive(sock)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        log.debug("agent API request from %s failed", client_address, exc_info=True)


def _is_true(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes", "on")


class AgentAPI:
    def __init__(self, listen: str, driver: DockerDriver, key: Callable[[], str | None], address: str = "",
                 tls: ssl.SSLContext | None = None):
        self.host, self.port = parse_listen(listen)
        self.driver, self.key, self.address, self.tls = driver, key, address, tls
        self.server: ThreadingHTTPServer | None = None
        self.gateway = None  # the node's gateway (agent/gateway/), when it runs one: its table is shown

    @staticmethod
    def advertised_host_of(listen: str, address: str = "") -> str:
        return advertised_host(parse_listen(listen)[0], address)

    @property
    def url(self) -> str:
        assert self.server is not None
        return advertised_url(self.host, self.server.server_address[1], self.address,
                              "https" if self.tls is not None else "http")

    def start(self) -> str:
        api = self

        class Handler(_Handler):
            owner = api

        self.server = _Server((self.host, self.port), Handler)
        self.server.ssl_context = self.tls
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
    timeout = IO_TIMEOUT  # the request must arrive, and every write be taken, within this

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # under `timeout`; a failure ends only this request

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

    def do_POST(self) -> None:  # noqa: N802
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if not self._authorised():
            return
        if len(parts) == 4 and parts[:2] == ["v1", "instances"] and parts[3] == "exec":
            from agent.exec import serve  # run a command in the instance's container (agent/exec.py)

            serve(self, parts[2])
            return
        self._json(404, "not_found", f"no such endpoint: {urlsplit(self.path).path}")

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
        if parts == ["metrics"]:  # Prometheus text: the gateway's request counts and latencies
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            body = generate_latest()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not self._authorised():
            return
        if parts == ["v1", "gateway", "routes"]:
            gw = self.owner.gateway
            body = json.dumps({"listen": "%s:%d" % gw.address if gw else None,
                               "routes": gw.table() if gw else [],
                               "spaces": gw.spaces() if gw else {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if len(parts) == 4 and parts[:2] == ["v1", "instances"] and parts[3] == "logs":
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._logs(parts[2], q.get("tail", "all"), _is_true(q.get("follow")), _is_true(q.get("raw")))
            return
        # for the server's Docker Engine API (orchestrator/dockerapi/): the engine's own answers
        if parts == ["v1", "images"]:
            self._engine_json(lambda d: d.api.images())
            return
        if len(parts) == 4 and parts[:2] == ["v1", "instances"] and parts[3] == "inspect":
            cid = self.owner.find_container(parts[2])
            if cid is None:
                self._json(404, "not_found", f"instance {parts[2]!r} has no container on this node")
                return
            self._engine_json(lambda d: d.api.inspect_container(cid))
            return
        self._json(404, "not_found", f"no such endpoint: {url.path}")

    def _engine_json(self, call: Callable[[DockerDriver], object]) -> None:
        try:
            body = json.dumps(call(self.owner.driver)).encode()
        except Exception as exc:  # noqa: BLE001 - the engine's refusal, passed on as text
            self._json(502, "engine_error", f"the Docker engine refused: {exc}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _logs(self, instance_id: str, tail: str, follow: bool, raw: bool = False) -> None:
        if tail != "all" and not (tail.isdigit() and int(tail) <= MAX_TAIL):
            self._json(400, "bad_request", f"tail must be a number of lines (at most {MAX_TAIL}) or 'all'")
            return
        try:
            cid = self.owner.find_container(instance_id)
            if cid is None:
                self._json(404, "not_found", f"instance {instance_id!r} has no container on this node")
                return
            stream = (self.owner.driver.logs(cid, tail=tail, follow=follow, raw=True) if raw
                      else self.owner.driver.logs(cid, tail=tail, follow=follow))
        except DriverError as exc:
            self._json(404, "not_found", str(exc))
            return
        self.send_response(200)
        # raw: Docker's multiplexed frames (8-byte header: stream 1 stdout / 2 stderr, length)
        self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream" if raw
                         else "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            if follow:
                self._follow(instance_id, stream)
            else:
                for chunk in stream:
                    self.wfile.write(chunk)
                self.wfile.flush()
        except (OSError, ValueError):
            pass  # the reader went away (broken pipe, reset, write timeout)
        except Exception as exc:  # the container went away mid-stream
            log.debug("log stream of %s ended: %s", instance_id, exc)
        finally:
            close = getattr(stream, "close", None)
            if close:
                try:
                    close()
                except Exception:  # noqa: BLE001 - a generator still running in the pump thread
                    pass

    def _follow(self, instance_id: str, stream: Iterator[bytes]) -> None:
        """Copy a followed stream until it ends or the server hangs up, whichever comes first."""
        chunks: queue.Queue[bytes | None] = queue.Queue(QUEUE_CHUNKS)
        done = threading.Event()
        cancel = _canceller(stream)

        def pump() -> None:
            try:
                for chunk in stream:
                    while not done.is_set():
                        try:
                            chunks.put(chunk, timeout=PEER_CHECK)
                            break
                        except queue.Full:
                            continue
                    if done.is_set():
                        return
            except Exception as exc:  # cancelled below, or the container went away
                log.debug("log pump of %s ended: %s", instance_id, exc)
            finally:
                try:
                    chunks.put_nowait(None)
                except queue.Full:
                    pass
                done.set()

        t = threading.Thread(target=pump, daemon=True, name=f"logs-{instance_id[:12]}")
        t.start()
        try:
            while True:
                try:
                    chunk = chunks.get(timeout=PEER_CHECK)
                except queue.Empty:
                    if done.is_set() or self._peer_gone():
                        return
                    continue
                if chunk is None:
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
        finally:
            done.set()
            if cancel is not None:
                cancel()  # unblocks the pump's read of a quiet container
            t.join(timeout=2 * PEER_CHECK)

    def _peer_gone(self) -> bool:
        """The server sends nothing after its request: a readable socket means it hung up (EOF,
        a TLS close_notify) or misbehaves; either way the stream is over."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


def _canceller(stream: object) -> Callable[[], None] | None:
    """A function that shuts a Docker stream's socket from another thread (which wakes a read
    blocked on a quiet container), or None if the stream is not a Docker one."""
    from docker.types.daemon import CancellableStream

    if isinstance(stream, CancellableStream):
        return stream.close
    frame = getattr(stream, "gi_frame", None)  # the SDK's generators keep the HTTP response here
    response = frame.f_locals.get("response") if frame is not None else None
    if response is None or not hasattr(response, "raw"):
        return None
    handle = CancellableStream(stream, response)

    def cancel() -> None:
        try:
            handle.close()
        except Exception as exc:  # noqa: BLE001 - already closed
            log.debug("closing a log stream: %s", exc)

    return cancel
