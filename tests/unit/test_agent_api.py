"""The agent's small logs API: authentication, lookup by instance, streaming, TLS, abandoned follows (fake driver)."""
from __future__ import annotations

import socket
import ssl
import threading
import time

import httpx
import pytest

from agent import tls
from agent.api import AgentAPI, advertised_url, parse_listen
from agent.driver import DriverError
from agent.types import Observed

KEY = "dyk_secret"


class FakeDriver:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def list(self) -> list[Observed]:
        return [Observed("i1", "web", 1, 1, "c-old", "exited"), Observed("i1", "web", 1, 1, "c-run", "running"),
                Observed("i2", "web", 1, 2, "c-gone", "running")]

    def logs(self, cid: str, tail="all", follow=False):  # type: ignore[no-untyped-def]
        self.calls.append((cid, tail, follow))
        if cid == "c-gone":
            raise DriverError("container c-gone no longer exists")
        return iter([b"hello\n", b"world\n"])


@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    key: list[str | None] = [KEY]
    a = AgentAPI("127.0.0.1:0", FakeDriver(), lambda: key[0])  # type: ignore[arg-type]
    a.start()
    yield a, key
    a.stop()


def test_listen_and_advertised_url():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("0.0.0.0:7001") == ("0.0.0.0", 7001)
    assert parse_listen("[::1]:7001") == ("::1", 7001)
    with pytest.raises(ValueError):
        parse_listen("host:port")
    assert advertised_url("0.0.0.0", 7001, "10.0.0.5") == "http://10.0.0.5:7001"
    assert advertised_url("127.0.0.1", 7001) == "http://127.0.0.1:7001"
    assert advertised_url("::1", 7001) == "http://[::1]:7001"
    assert advertised_url("0.0.0.0", 7001, "node.example", "https") == "https://node.example:7001"


def test_requests_need_the_agent_key(api):  # type: ignore[no-untyped-def]
    a, key = api
    url = f"{a.url}/v1/instances/i1/logs"
    assert httpx.get(f"{a.url}/healthz").status_code == 200
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    key[0] = None  # not joined yet
    r = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 503


def test_logs_of_the_running_container(api):  # type: ignore[no-untyped-def]
    a, _ = api
    r = httpx.get(f"{a.url}/v1/instances/i1/logs", params={"tail": "5", "follow": "true"},
                  headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.text == "hello\nworld\n"
    assert a.driver.calls == [("c-run", "5", True)]


def test_unknown_instance_and_bad_tail(api):  # type: ignore[no-untyped-def]
    a, _ = api
    h = {"Authorization": f"Bearer {KEY}"}
    r = httpx.get(f"{a.url}/v1/instances/nope/logs", headers=h)
    assert r.status_code == 404 and "no container" in r.json()["error"]["message"]
    assert httpx.get(f"{a.url}/v1/instances/i2/logs", headers=h).status_code == 404
    assert httpx.get(f"{a.url}/v1/instances/i1/logs", params={"tail": "x"}, headers=h).status_code == 400
    assert httpx.get(f"{a.url}/v1/other", headers=h).status_code == 404


class QuietStream:
    """A followed log of a container that prints nothing: blocks until closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield b"first\n"
        self.closed.wait(30)

    def close(self) -> None:
        self.closed.set()


def test_an_abandoned_follow_leaves_no_thread(api):  # type: ignore[no-untyped-def]
    a, _ = api
    streams: list[QuietStream] = []

    def logs(cid, tail="all", follow=False):  # type: ignore[no-untyped-def]
        streams.append(QuietStream())
        return streams[-1]

    a.driver.logs = logs
    before = threading.active_count()
    socks = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", a.server.server_address[1]))
        s.sendall(f"GET /v1/instances/i1/logs?follow=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n"
                  .encode())
        assert b"first" in _read_until(s, b"first")
        socks.append(s)
    assert threading.active_count() >= before + 10  # the follows are being served
    for s in socks:
        s.close()  # the server hangs up without a word
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, [t.name for t in threading.enumerate()]
    assert all(st.closed.is_set() for st in streams)


def _read_until(s: socket.socket, marker: bytes) -> bytes:
    s.settimeout(5)
    got = b""
    while marker not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def test_the_api_over_tls(tmp_path):  # type: ignore[no-untyped-def]
    m = tls.generate("127.0.0.1")
    try:
        a = AgentAPI("127.0.0.1:0", FakeDriver(), lambda: KEY, tls=tls.server_context(m))  # type: ignore[arg-type]
        url = a.start()
        try:
            assert url.startswith("https://127.0.0.1:")
            with pytest.raises(httpx.ConnectError):  # not trusted: refused
                httpx.get(f"{url}/healthz")
            ok = ssl.create_default_context(cadata=m.pem)
            r = httpx.get(f"{url}/v1/instances/i1/logs", headers={"Authorization": f"Bearer {KEY}"}, verify=ok)
            assert r.status_code == 200 and r.text == "hello\nworld\n"
            # TLS does not replace the key
            assert httpx.get(f"{url}/v1/instances/i1/logs", verify=ok).status_code == 401
            # plain HTTP to the TLS port gets nowhere, and the API keeps serving
            with pytest.raises(httpx.HTTPError):
                httpx.get(url.replace("https", "http") + "/healthz", timeout=3)
            assert httpx.get(f"{url}/healthz", verify=ok).status_code == 200
        finally:
            a.stop()
    finally:
        tls.discard(m)
    assert not m.cert.parent.exists()


def test_tls_wanted():
    assert not tls.wanted("http://s:8080", None, None)
    assert tls.wanted("https://s:8080", None, None)
    assert tls.wanted("http://a,https://b", None, None)
    assert tls.wanted("http://s:8080", "c.pem", "k.pem")
    with pytest.raises(tls.TLSSetupError):
        tls.wanted("http://s", "c.pem", None)


def test_huge_tail_is_refused(api):  # type: ignore[no-untyped-def]
    a, _ = api
    r = httpx.get(f"{a.url}/v1/instances/i1/logs", params={"tail": str(2**64)},
                  headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400
