"""The agent's sync client (agent/client.py): failover between servers, older epochs ignored,
and its kept-alive connections (http.client) against a real loopback server.

The servers of the failover tests are functions: this is a unit test of the client's choices;
the integration tests (tests/integration/test_ha.py) kill real servers under real agents."""
from __future__ import annotations

import json
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.client import Answer, Connection, SyncClient, server_list


class Client(SyncClient):
    def __init__(self, servers, handlers):  # type: ignore[no-untyped-def]
        super().__init__(servers)
        self.handlers = handlers
        self.calls: list[str] = []

    def _request(self, url, kind, path, body, headers, timeout):  # type: ignore[no-untyped-def]
        self.calls.append(url)
        return self.handlers[url](body)


def answer(epoch, generation="g1", assignments=()):  # type: ignore[no-untyped-def]
    body = {"node": "n", "generation": generation, "epoch": epoch, "assignments": list(assignments),
            "heartbeat_interval": 1.0}
    return lambda _b: Answer(200, json.dumps(body).encode())


def refused(_b):  # type: ignore[no-untyped-def]
    raise ConnectionRefusedError("connection refused")


ASSIGNMENT = {"instance_id": "i1", "service": "web", "slot": 1, "revision": 1, "spec": {"image": "x"}, "restart_count": 0}


def test_server_list_parsing():
    assert server_list("http://a:1, http://b:2/") == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError):
        server_list(" , ")


def test_a_dead_server_is_skipped_at_once_and_the_next_one_kept():
    c = Client("http://a,http://b,http://c", {"http://a": refused, "http://b": answer(3, assignments=[ASSIGNMENT]),
                                              "http://c": answer(3)})
    gen, got, _ = c.sync(None, 0, None)
    assert gen == "g1" and [a.instance_id for a in got] == ["i1"]
    assert c.calls == ["http://a", "http://b"] and c.server == "http://b"
    c.sync(None, 0, None)
    assert c.calls[-1] == "http://b"  # stays with the one that answered


def test_503_moves_on_but_the_last_answer_is_returned():
    unavailable = lambda _b: Answer(503, b'{"error": {"code": "unavailable", "message": "db away"}}')  # noqa: E731
    c = Client("http://a,http://b", {"http://a": unavailable, "http://b": unavailable})
    with pytest.raises(RuntimeError, match="503"):
        c.sync(None, 0, None)
    assert c.calls == ["http://a", "http://b"]


def test_every_server_down_raises_the_transport_error():
    c = Client("http://a,http://b", {"http://a": refused, "http://b": refused})
    with pytest.raises(ConnectionRefusedError):
        c.sync(None, 0, None)


def test_assignments_of_an_older_epoch_are_ignored():
    handlers = {"http://a": answer(5, "g5", [ASSIGNMENT])}
    c = Client("http://a", handlers)
    assert c.sync(None, 0, None)[1] is not None and c.epoch == 5
    handlers["http://a"] = answer(4, "g4", [])  # computed before the takeover, arrived late
    gen, got, _ = c.sync("g5", 0, None)
    assert got is None and gen == "g5"  # as if unchanged: the agent keeps what it runs
    handlers["http://a"] = answer(6, "g6", [])
    assert c.sync("g5", 0, None)[1] == [] and c.epoch == 6


# --- the connection itself, against a real HTTP/1.1 server on loopback --------------------------

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: list = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Echo.peers.append(self.client_address)
        out = json.dumps({"path": self.path, "body": json.loads(body),
                          "auth": self.headers.get("Authorization"), "type": self.headers.get("Content-Type")}).encode()
        self.send_response(200 if self.path != "/base/close" else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if self.path == "/base/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def echo():  # type: ignore[no-untyped-def]
    Echo.peers = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_connection_posts_json_keeps_alive_and_reconnects_when_told_to_close(echo):  # type: ignore[no-untyped-def]
    c = Connection(f"http://127.0.0.1:{echo.server_address[1]}/base/")
    r = c.post("/x", {"a": 1}, {"Authorization": "Bearer k"}, 5.0)
    assert r.status_code == 200
    assert r.json() == {"path": "/base/x", "body": {"a": 1}, "auth": "Bearer k", "type": "application/json"}
    c.post("/y", {}, {}, 5.0)
    assert Echo.peers[0] == Echo.peers[1]  # one connection, kept alive
    assert c.post("/close", {}, {}, 5.0).status_code == 503 and c.conn is None  # the server said close
    c.post("/z", {}, {}, 5.0)
    assert Echo.peers[3] != Echo.peers[0]
    c.close()


def test_a_kept_alive_connection_the_server_closed_is_replaced_before_sending():
    # a server that answers one request per connection and then hangs up without saying so
    # (as one does on its idle timeout); sending on the dead socket would fail the call
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                accepted.append(1)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    threading.Thread(target=serve, daemon=True).start()
    try:
        c = Connection(f"http://127.0.0.1:{listener.getsockname()[1]}")
        for _ in range(3):
            assert c.post("/", {}, {}, 5.0).json() == {}
            select.select([c.conn.sock], [], [], 5.0)  # until the server's hang-up has arrived
        assert len(accepted) == 3
    finally:
        listener.close()


def test_an_unreachable_server_is_a_transport_error_and_a_bad_url_a_value_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
    with pytest.raises(OSError):
        Connection(f"http://127.0.0.1:{port}").post("/", {}, {}, 1.0)
    with pytest.raises(ValueError):
        Connection("ftp://x")


def test_https_verifies_the_servers_certificate_against_the_given_ca(tmp_path):  # type: ignore[no-untyped-def]
    import ssl

    from tests.harness import self_signed

    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    srv.daemon_threads = True
    srv.socket = server_side.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}"
    try:
        c = Connection(url, ssl.create_default_context(cafile=str(cert)))  # as `--ca-file` gives it
        assert c.post("/x", {"a": 1}, {}, 5.0).json()["body"] == {"a": 1}
        assert c.post("/y", {}, {}, 5.0).json()["path"] == "/y"
        with pytest.raises(ssl.SSLCertVerificationError):  # an OSError: the next server is tried
            Connection(url, True).post("/x", {}, {}, 5.0)
    finally:
        srv.shutdown()
        srv.server_close()
