"""The FastAPI application: wiring, lifespan (migrate, bootstrap, loop) and health endpoints."""
from __future__ import annotations

import gc
import logging
import sys
from contextlib import asynccontextmanager
from typing import Literal

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from orchestrator import __version__, errors, metrics, policy, runtime
from orchestrator.api import agent, cluster, services
from orchestrator.api import logs as logs_api
from orchestrator.api import exec as exec_api
from orchestrator.api import summary as summary_api
from orchestrator.api import ui as ui_api
from orchestrator.api import apply as apply_api
from orchestrator.api import control, openapi, security, tokens
from orchestrator.api import routes as routes_api
from orchestrator.api import usage as usage_api
from orchestrator.api import namespaces as namespaces_api
from orchestrator.api import stacks as stacks_api
from orchestrator.api import deps
from orchestrator.limits import BodyLimit
from orchestrator.priority import APIFirst
from orchestrator.api.sync_path import SyncFastPath
from orchestrator.api.deps import State, role
from orchestrator.auth import Principal
from orchestrator.config import Settings

log = logging.getLogger("dockyard.server")
REQUEST_THREADS = 24  # under db.POOL_SIZE
GC_THRESHOLDS = (200_000, 20, 100)
SWITCH_INTERVAL = 0.00005  # seconds


class Ready(BaseModel):
    """/readyz's answer, 200 or 503 (not the error shape: probes read it either way)."""

    model_config = ConfigDict(extra="allow")  # and what else the server reports (leadership)
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool]


class CountRequests:
    """Counts responses by method and status for /metrics. A plain ASGI middleware: the
    `@app.middleware("http")` kind costs a task and a stream per request, which at a
    thousand agent syncs a second is a good part of the server's CPU."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]

        async def counted(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                metrics.REQUESTS.labels(method, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def create_app(settings: Settings) -> FastAPI:
    policy.parse(settings.allow)  # a bad --allow list stops the server before it serves
    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        st = runtime.start(settings)
        app.state.dy = st
        # Request handlers that block (database work) run in this many threads. Threads past
        # what the database can serve only queue for the GIL and for SQLite's write lock, and
        # every thread runnable at once stretches the event loop's wait for the GIL (agents'
        # long polls answer on the event loop).
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        # Everything built so far (modules, the app, mappers, pydantic models) lives as long as
        # the process: move it out of the garbage collector's way. Full collections otherwise
        # rescan it all, ~100 ms pauses that every request in flight waits out.
        gc.collect()
        gc.freeze()
        # Python's default (a young collection every 700 allocations) is made for small heaps:
        # here a reconcile pass allocates tens of thousands of objects that live until it ends,
        # and a thousand long polls are always in flight, so collections rescanned the same live
        # objects over and over. With 1,000 agents syncing (bench/simulate.py): at 700, 1.6 s of
        # collections in 15 s (8 pauses over 50 ms); at 50,000, none in steady state but a
        # ~100 ms pause every few tens of seconds under API load; at 200,000, none in 30 s of
        # API load. Full passes and report batches run with the collector off (gcpause.py).
        gc.set_threshold(*GC_THRESHOLDS)
        # A thread that gives up the GIL for I/O (SQLite steps every row with the GIL released)
        # waits up to the switch interval to get it back from a busy thread: at Python's 5 ms,
        # reading a 100-row result while the event loop was busy took up to 100 waits. Same
        # API load (200 req/s with 100 agents syncing): 116 % of a core and p99 3.8 s at 5 ms,
        # 51 % and p99 8 ms at 1 ms; 0.05 ms halved the tail again (bench/simulate.py).
        sys.setswitchinterval(SWITCH_INTERVAL)
        metrics.watch_gc()
        docker_api = None
        if settings.docker_api or settings.docker_api_socket is not None:
            from orchestrator.dockerapi.serve import DockerAPIServer, bind

            docker_api = DockerAPIServer(st, settings.docker_api_socket or bind(settings.docker_api))
            docker_api.start()
        log.info("dockyard server %s ready on %s:%s", __version__, settings.host, settings.port)
        try:
            yield
        finally:
            if docker_api is not None:
                await docker_api.stop()
            runtime.stop(st)

    app = FastAPI(
        title="Dockyard", version=__version__, lifespan=lifespan,
        description="A small container orchestrator. Every endpoint but /healthz and /readyz needs "
                    "`Authorization: Bearer <token>`. Errors are `{\"error\": {\"code\", \"message\", \"details\"}}` "
                    "(schema `ErrorBody`), documented per operation. A method a path does not serve is a 405 "
                    "whose `Allow` header names those it does (`components.responses.MethodNotAllowed`).",
    )
    errors.install(app)
    # the services API twice: unprefixed it means namespace default, under /v1/namespaces/{ns} that one
    in_namespace = dict(prefix="/v1/namespaces/{ns}", dependencies=[Depends(deps.namespace_path)])
    app.include_router(services.router, prefix="/v1")
    app.include_router(apply_api.router, prefix="/v1")  # POST /v1/apply
    app.include_router(routes_api.services_router, prefix="/v1")  # GET /v1/services/{name}/endpoints
    app.include_router(usage_api.services_router, prefix="/v1")  # .../metrics, .../rebalance (docs/autoscaling.md)
    app.include_router(usage_api.services_router, **in_namespace)
    app.include_router(usage_api.agent_router)  # POST /v1/agent/metrics
    app.include_router(namespaces_api.router)
    app.include_router(services.router, **in_namespace)
    app.include_router(apply_api.router, **in_namespace)
    app.include_router(routes_api.services_router, **in_namespace)
    app.include_router(stacks_api.router, prefix="/v1")  # /v1/stacks: releases (orchestrator/stacks/)
    app.include_router(stacks_api.router, **in_namespace)
    app.include_router(cluster.router)
    app.include_router(agent.router)
    app.include_router(logs_api.router)
    app.include_router(exec_api.router)  # exec into an instance (POST and WebSocket)
    app.include_router(summary_api.router)  # GET /v1/summary: the dashboard's rows, live with watch=true
    ui_api.install(app)  # /ui: the dashboard (orchestrator/ui/)
    app.include_router(tokens.router)
    app.include_router(control.router)
    app.include_router(routes_api.router)  # endpoints, the gateways' routing table
    security.install(app)  # x-required-role on every operation of /openapi.json
    openapi.install(app)  # error responses, stream content types, 405 Allow in /openapi.json
    app.add_middleware(BodyLimit)  # bodies over 1 MiB -> 413
    app.add_middleware(APIFirst)  # bounded admission of API requests; agents' endpoints bypass it (priority.py)
    app.add_middleware(SyncFastPath)  # well-formed agent syncs skip the routing below (api/sync_path.py)

    app.add_middleware(CountRequests)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=Ready, responses={
        503: {"model": Ready, "description": "the database or the reconcile loop is not healthy"}})
    def readyz(request: Request):  # type: ignore[no-untyped-def]
        st: State = request.app.state.dy
        checks = {"database": st.db.ping(), "loop": st.loop.healthy}
        body = {"status": "ok" if all(checks.values()) else "unavailable", "checks": checks,
                "leader": control.leadership(st)}
        return JSONResponse(body, 200 if all(checks.values()) else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics_endpoint(_: Principal = Depends(role("viewer"))) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
