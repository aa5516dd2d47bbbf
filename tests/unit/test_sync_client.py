"""The agent's sync client (agent/client.py): failover between servers, older epochs ignored.

The servers are httpx mock transports: this is a unit test of the client's choices; the
integration tests (tests/integration/test_ha.py) kill real servers under real agents."""
from __future__ import annotations

import httpx
import pytest

from agent.client import SyncClient, server_list


class Client(SyncClient):
    def __init__(self, servers, handlers):  # type: ignore[no-untyped-def]
        super().__init__(servers)
        self.handlers = handlers
        self.calls: list[str] = []

    def _client(self, url, kind):  # type: ignore[no-untyped-def]
        def handle(request: httpx.Request) -> httpx.Response:
            self.calls.append(url)
            return self.handlers[url](request)
        return httpx.Client(base_url=url, transport=httpx.MockTransport(handle))


def answer(epoch, generation="g1", assignments=()):  # type: ignore[no-untyped-def]
    return lambda _r: httpx.Response(200, json={"node": "n", "generation": generation, "epoch": epoch,
                                                "assignments": list(assignments), "heartbeat_interval": 1.0})


def refused(_r):  # type: ignore[no-untyped-def]
    raise httpx.ConnectError("connection refused")


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
    unavailable = lambda _r: httpx.Response(503, json={"error": {"code": "unavailable", "message": "db away"}})  # noqa: E731
    c = Client("http://a,http://b", {"http://a": unavailable, "http://b": unavailable})
    with pytest.raises(RuntimeError, match="503"):
        c.sync(None, 0, None)
    assert c.calls == ["http://a", "http://b"]


def test_every_server_down_raises_the_transport_error():
    c = Client("http://a,http://b", {"http://a": refused, "http://b": refused})
    with pytest.raises(httpx.ConnectError):
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
