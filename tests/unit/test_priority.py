"""API first (orchestrator/priority.py): bounded admission of API requests, agents never refused,
background work yields to API requests in flight but is never held past its budget."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx

from orchestrator import priority
from orchestrator.priority import APIFirst


def make_app(gate: asyncio.Event | None = None, stream_gate: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        path = scope["path"]
        if path.startswith("/slow") or path.startswith("/v1/agent/"):
            await gate.wait()  # type: ignore[union-attr]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if path == "/stream":
            await stream_gate.wait()  # type: ignore[union-attr]  # headers sent: no longer counted
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def until(pred, what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait (a few seconds at most) for the tasks under test to get where the test needs them."""
    for _ in range(500):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def client(app) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_requests_past_the_limit_wait_then_get_503_overloaded():
    async def go() -> None:
        gate = asyncio.Event()
        async with client(APIFirst(make_app(gate), limit=2, queue_timeout=1.0)) as c:
            slow = [asyncio.create_task(c.get("/slow")) for _ in range(2)]
            await until(lambda: priority.api_in_flight() == 2, "two requests in flight")
            r = await c.get("/v1/services/web")
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "overloaded"
            assert "more than 2 API requests" in r.json()["error"]["message"]
            # agents' endpoints are not API work: never queued nor refused for it
            agent = asyncio.create_task(c.post("/v1/agent/sync"))
            await asyncio.sleep(0.05)
            assert priority.api_in_flight() == 2 and not agent.done()  # waiting in the app, not counted
            # a queued request is admitted when a slot frees within its timeout
            queued = asyncio.create_task(c.get("/v1/services/web"))
            await asyncio.sleep(0.05)
            assert not queued.done()  # waiting for a slot (its timeout is 1 s: released within it)
            gate.set()
            assert [t.status_code for t in await asyncio.gather(*slow, agent, queued)] == [200, 200, 200, 200]
        assert priority.api_in_flight() == 0

    asyncio.run(go())


def test_a_stream_counts_only_until_its_headers_are_sent():
    async def go() -> None:
        stream_gate = asyncio.Event()
        mw = APIFirst(make_app(stream_gate=stream_gate), limit=1, queue_timeout=0.2)
        sent: list[dict] = []

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        stream = asyncio.create_task(mw({"type": "http", "path": "/stream"}, None, send))
        await until(lambda: sent, "the stream's headers")
        assert [m["type"] for m in sent] == ["http.response.start"]  # streaming: headers out, body pending
        assert priority.api_in_flight() == 0 and not mw.slots().locked()  # it holds no slot
        other: list[dict] = []

        async def send_other(message):  # type: ignore[no-untyped-def]
            other.append(message)

        await mw({"type": "http", "path": "/other"}, None, send_other)
        assert other[0]["status"] == 200
        stream_gate.set()
        await stream
        assert sent[-1]["type"] == "http.response.body"

    asyncio.run(go())


def test_a_failing_request_gives_its_slot_back():
    async def boom(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError("handler failed")

    async def go() -> None:
        mw = APIFirst(boom, limit=1, queue_timeout=0.1)
        for _ in range(3):
            try:
                await mw({"type": "http", "path": "/v1/x"}, None, None)
            except RuntimeError:
                pass
        assert priority.api_in_flight() == 0 and not mw.slots().locked()

    asyncio.run(go())


def test_background_work_waits_for_the_api_but_only_up_to_its_budget(monkeypatch):
    t0 = time.monotonic()
    priority.yield_to_api(1.0)
    assert time.monotonic() - t0 < 0.5  # nothing in flight: no wait at all

    monkeypatch.setattr(priority, "_in_flight", 1)
    t0 = time.monotonic()
    priority.yield_to_api(0.05)
    waited = time.monotonic() - t0
    assert 0.05 <= waited < 1.0  # waited for the API, but never past the budget

    done = threading.Event()

    def background() -> None:
        priority.yield_to_api(5.0)
        done.set()

    threading.Thread(target=background, daemon=True).start()
    assert not done.wait(0.1)  # still waiting while the request is in flight
    monkeypatch.setattr(priority, "_in_flight", 0)
    assert done.wait(2.0)  # the request answered: the background work goes on at once
