"""The agent's small logs API: authentication, lookup by instance, streaming (fake driver)."""
from __future__ import annotations

import httpx
import pytest

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
