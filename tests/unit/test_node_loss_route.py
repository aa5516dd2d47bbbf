"""A long poll whose agent closed the connection before the server read its body counts as a
drop (api/agent.py AgentRoute -> node_loss.unread); a whole body does not."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from orchestrator import node_loss
from orchestrator.api.agent import AgentRoute


class Body(BaseModel):
    wait: float = 0


def app_with_sync():  # type: ignore[no-untyped-def]
    router = APIRouter(prefix="/v1/agent", route_class=AgentRoute)

    @router.post("/sync")
    async def sync(body: Body) -> dict:
        return {"ok": True}

    app = FastAPI()
    app.include_router(router)
    return app


def call(app, messages):  # type: ignore[no-untyped-def]
    sent = []

    async def receive():  # type: ignore[no-untyped-def]
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(m):  # type: ignore[no-untyped-def]
        sent.append(m)

    scope = {"type": "http", "method": "POST", "path": "/v1/agent/sync", "raw_path": b"/v1/agent/sync",
             "root_path": "", "scheme": "http", "query_string": b"", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"content-type", b"application/json"),
                                                     (b"authorization", b"Bearer dyn_x")], "app": app}
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_body_cut_by_a_disconnect_is_a_drop(monkeypatch):
    seen = []

    async def unread(request):  # type: ignore[no-untyped-def]
        seen.append(request.url.path)

    monkeypatch.setattr(node_loss, "unread", unread)
    app = app_with_sync()
    call(app, [{"type": "http.disconnect"}])
    assert seen == ["/v1/agent/sync"]
    # a whole body: answered, no drop
    sent = call(app, [{"type": "http.request", "body": b'{"wait": 1}', "more_body": False}])
    assert sent[0]["status"] == 200 and seen == ["/v1/agent/sync"]


def test_through_the_sync_fast_path_a_cut_body_is_still_a_drop(monkeypatch):
    """api/sync_path.py hands what it read (here: a disconnect, or half a body and a disconnect)
    on to the route, which sees the drop as before."""
    from orchestrator.api.sync_path import SyncFastPath

    seen = []

    async def unread(request):  # type: ignore[no-untyped-def]
        seen.append(request.url.path)

    monkeypatch.setattr(node_loss, "unread", unread)
    app = SyncFastPath(app_with_sync())
    call(app, [{"type": "http.disconnect"}])
    call(app, [{"type": "http.request", "body": b'{"wa', "more_body": True}, {"type": "http.disconnect"}])
    assert seen == ["/v1/agent/sync", "/v1/agent/sync"]
