"""The Docker Engine API app: routes, auth and the Engine API's error shape `{"message": ...}`.

Handlers stay thin: translate.py decides, store.py writes, agents.py calls the nodes. The
version prefix (`/v1.41/...`) is taken off before routing; any 1.x from MIN_API_VERSION up
is answered in API_VERSION's shapes (the CLI negotiates down to it; the SDK may not).
Authentication is the same bearer token as /v1 (the docker CLI sends it from `HttpHeaders`
in its config.json); only `/_ping` answers without one, as the CLI pings before anything.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator import __version__, policy
from orchestrator.api import deps
from orchestrator.api.deps import State
from orchestrator.auth import Principal
from orchestrator.dockerapi import agents, store, translate
from orchestrator.dockerapi.translate import API_VERSION, MIN_API_VERSION, Refused
from orchestrator.errors import DockyardError, Unavailable

CREATE_TIMEOUT = 60.0  # seconds `docker run` waits for its container to exist somewhere
STOP_GRACE = 15.0  # seconds past the stop timeout `docker stop` waits for the container to go
POLL = 0.05
WAIT_POLL = 0.5  # `docker wait` checks this often (and whether its client left)
_VERSION = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")

# What the unsupported endpoints are, in the words of the command that calls them.
_UNSUPPORTED = [
    (r"^/build", "docker build; build on a node and push to a registry"),
    (r"^/images/create", "docker pull; images come from each node's engine (pull there, or push to a registry)"),
    (r"^/images/.+/push", "docker push; push from a node"),
    (r"^/containers/[^/]+/attach", "attaching to a container (docker run without -d, docker attach); "
                                   "use docker run -d and docker logs -f"),
    (r"^/containers/[^/]+/exec|^/exec", "docker exec; use `dockyard exec`"),
    (r"^/(swarm|services|nodes|tasks|secrets|configs)", "swarm mode; Dockyard is the orchestrator: use `dockyard`"),
    (r"^/networks", "docker network; containers use each node's default bridge"),
    (r"^/volumes", "docker volume; use -v /host/path:/path bind mounts"),
]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class StripVersion:
    """Routes see paths without the `/v1.NN` prefix; a version below the minimum is refused."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and (m := _VERSION.match(scope["path"])):
            major, minor, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            if (major, minor) < tuple(int(x) for x in MIN_API_VERSION.split(".")):
                await _error(400, f"client version {major}.{minor} is too old. Minimum supported API version is "
                                  f"{MIN_API_VERSION}, please upgrade your client to a newer version")(scope, receive, send)
                return
            scope = dict(scope, path=rest, raw_path=rest.encode())
        await self.app(scope, receive, send)


async def _who(request: Request, role: str) -> Principal:
    p = await deps.principal(request, request.headers.get("authorization"))
    p.require(role)
    return p


def _st(request: Request) -> State:
    return request.app.state.dy


async def _db(st: State, fn):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(st.db.run, fn)


def _flag(request: Request, name: str) -> bool:
    return (request.query_params.get(name) or "").lower() in ("1", "true", "yes")


def create_app(st: State) -> FastAPI:
    app = FastAPI(title="Dockyard Docker Engine API", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.dy = st

    @app.exception_handler(DockyardError)
    async def dockyard_error(_: Request, exc: DockyardError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"invalid request: {exc.errors()[0].get('msg', 'bad input')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):
            return unsupported(request)
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"Dockyard could not do that: {type(exc).__name__}")

    def unsupported(request: Request) -> JSONResponse:
        path = request.url.path
        for pattern, what in _UNSUPPORTED:
            if re.search(pattern, path):
                return _error(501, f"not supported by Dockyard: {what}")
        return _error(501, f"not supported by Dockyard: {request.method} {path}")

    @app.api_route("/_ping", methods=["GET", "HEAD"])
    async def ping() -> PlainTextResponse:
        return PlainTextResponse("OK", headers={
            "API-Version": API_VERSION, "Docker-Experimental": "false", "OSType": "linux",
            "Swarm": "inactive", "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"})

    @app.get("/version")
    async def version(request: Request) -> dict:
        await _who(request, "viewer")
        return {"Platform": {"Name": "Dockyard"}, "Version": f"dockyard-{__version__}", "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": "amd64", "KernelVersion": "",
                "GitCommit": "", "GoVersion": "", "BuildTime": "",
                "Components": [{"Name": "Dockyard", "Version": __version__, "Details": {"ApiVersion": API_VERSION}}]}

    @app.get("/info")
    async def info(request: Request) -> dict:
        st, p = _st(request), await _who(request, "viewer")
        i = await _db(st, lambda s: store.info(s, p))
        status = [["Role", "primary"], ["Strategy", "spread"], ["Nodes", str(len(i["nodes"]))]]
        for name, addr, health, avail, cpus, mem, labels in i["nodes"]:
            status += [[f" {name}", addr], ["  └ Status", "Healthy" if health == "ready" else "Unhealthy"],
                       ["  └ Availability", avail], ["  └ Reserved CPUs", f"{cpus:g}"],
                       ["  └ Labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))]]
        return {"ID": "dockyard", "Name": "dockyard", "OperatingSystem": "Dockyard cluster", "OSType": "linux",
                "Architecture": "x86_64", "KernelVersion": "", "ServerVersion": f"dockyard-{__version__}",
                "Driver": "dockyard", "NCPU": int(i["cpus"]), "MemTotal": i["memory"],
                "Containers": i["containers"], "ContainersRunning": i["running"], "ContainersPaused": 0,
                "ContainersStopped": i["containers"] - i["running"], "Images": 0,
                "SystemStatus": status, "Labels": [f"node={n[0]}" for n in i["nodes"]],
                "Nodes": len(i["nodes"]), "Swarm": {"LocalNodeState": "inactive"}, "Plugins": {},
                "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
                "SecurityOptions": [], "Warnings": []}

    @app.get("/containers/json")
    async def ps(request: Request) -> list[dict]:
        st, p = _st(request), await _who(request, "viewer")
        try:
            filters = translate.parse_filters(json.loads(request.query_params.get("filters") or "{}"))
        except json.JSONDecodeError:
            raise Refused("filters must be JSON") from None
        rows = await _db(st, lambda s: store.rows(s, p))
        now = time.time()
        show_all = _flag(request, "all")
        out = [translate.summary(r, now) for r in rows
               if (show_all or translate.docker_state(r.state) == "running") and translate.matches(r, filters)]
        out.sort(key=lambda c: -c["Created"])
        limit = request.query_params.get("limit")
        if limit and limit.lstrip("-").isdigit() and int(limit) > 0:
            out = out[:int(limit)]
        return out

    @app.post("/containers/create", status_code=201)
    async def create(request: Request) -> dict:
        st, p = _st(request), await _who(request, "operator")
        try:
            body = await request.json()
        except ValueError:
            raise Refused("the body must be JSON") from None
        plan = translate.create_spec(request.query_params.get("name") or None, body)
        check = policy.checker(st.settings, p)
        key = await _db(st, lambda s: store.create(s, plan, p, check=check, now=time.time(),
                                                   history_limit=st.settings.history_limit))
        st.loop.kick()
        cid = await _await_container(st, key)
        return {"Id": cid, "Warnings": plan.warnings}

    async def _await_container(st: State, key: str) -> str:
        """The new container's id once an agent made it; on failure the service goes (nothing half-made)."""
        deadline = time.monotonic() + CREATE_TIMEOUT
        why = ""
        while time.monotonic() < deadline:
            cid, why = await _db(st, lambda s: store.started(s, key))
            if cid:
                await _db(st, lambda s: store.remember(s, key, cid, None))
                return cid
            if why:
                break
            await asyncio.sleep(POLL)
        why = why or f"no node started it within {CREATE_TIMEOUT:.0f} s"
        await _db(st, lambda s: store.ops.delete(s, key, if_match=None, actor="docker-api", now=time.time()))
        st.loop.kick()
        raise _Failed(f"the container could not be started: {why}")

    async def _find(request: Request, ref: str, role: str) -> tuple[State, Principal, translate.Row]:
        st, p = _st(request), await _who(request, role)
        return st, p, await _db(st, lambda s: store.find(s, p, ref))

    async def _until_gone(st: State, r: translate.Row, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not await _db(st, lambda s: store.gone(s, r)):
            await asyncio.sleep(POLL)

    @app.get("/containers/{ref:path}/json")
    async def inspect(request: Request, ref: str) -> dict:
        st, p, r = await _find(request, ref, "viewer")
        engine = await agents.inspect(st, p, r.instance) if r.instance and r.container_id != r.instance else None
        node = await _db(st, lambda s: store.node(s, r.node))
        return translate.inspect(r, node, engine)

    @app.post("/containers/{ref:path}/start")
    async def start(request: Request, ref: str) -> Response:
        st, p, r = await _find(request, ref, "operator")
        what = await _db(st, lambda s: store.start(s, p, r, time.time()))
        if what == "running":
            return Response(status_code=304)
        if what == "exited":
            await _cycle(st, p, r, 10.0)
        else:
            st.loop.kick()
            await _await_new(st, r)
        return Response(status_code=204)

    async def _await_new(st: State, r: translate.Row) -> None:
        deadline = time.monotonic() + CREATE_TIMEOUT
        while time.monotonic() < deadline:
            cid, why = await _db(st, lambda s: store.started(s, r.name))
            if cid and cid != r.container_id:
                await _db(st, lambda s: store.remember(s, r.name, cid, None))
                return
            if why:
                raise _Failed(f"the container could not be started: {why}")
            await asyncio.sleep(POLL)
        raise _Failed(f"no node started the container within {CREATE_TIMEOUT:.0f} s")

    async def _cycle(st: State, p: Principal, r: translate.Row, timeout: float) -> None:
        """Stop, wait for the container to go (its host ports free), start a new one."""
        await _db(st, lambda s: store.stop(s, p, r, time.time()))
        st.loop.kick()
        await _until_gone(st, r, timeout + STOP_GRACE)
        await _db(st, lambda s: store.start(s, p, r, time.time()))
        st.loop.kick()
        await _await_new(st, r)

    def _timeout(request: Request) -> float:
        t = request.query_params.get("t")
        return float(t) if t and t.isdigit() else 10.0

    async def _stop(request: Request, ref: str) -> Response:
        st, p, r = await _find(request, ref, "operator")
        if not await _db(st, lambda s: store.stop(s, p, r, time.time())):
            return Response(status_code=304)
        st.loop.kick()
        await _until_gone(st, r, _timeout(request) + STOP_GRACE)
        return Response(status_code=204)

    @app.post("/containers/{ref:path}/stop")
    async def stop(request: Request, ref: str) -> Response:
        return await _stop(request, ref)

    @app.post("/containers/{ref:path}/kill")
    async def kill(request: Request, ref: str) -> Response:
        sig = (request.query_params.get("signal") or "KILL").upper().removeprefix("SIG")
        if sig not in ("KILL", "9"):
            raise Refused(f"docker kill --signal {sig} is not supported by Dockyard: containers can be stopped "
                          "(docker stop, docker kill) but not sent other signals")
        return await _stop(request, ref)

    @app.post("/containers/{ref:path}/restart")
    async def restart(request: Request, ref: str) -> Response:
        st, p, r = await _find(request, ref, "operator")
        if await _db(st, lambda s: store.is_docker_api(s, r)):
            await _cycle(st, p, r, _timeout(request))
        else:
            await _db(st, lambda s: store.replace(s, p, r, time.time()))
            st.loop.kick()
            await _until_gone(st, r, _timeout(request) + STOP_GRACE)
        return Response(status_code=204)

    @app.post("/containers/{ref:path}/wait")
    async def wait(request: Request, ref: str) -> StreamingResponse:
        """Until the container is not running. The headers go out at once, the body when it
        exits: the CLI sends this before every `docker run`'s start (even -d) and waits for
        the headers only."""
        st, p = _st(request), await _who(request, "viewer")
        await _db(st, lambda s: store.find(s, p, ref))  # 404 for an unknown one, at once

        async def body() -> AsyncIterator[bytes]:
            yield b" "  # JSON allows leading whitespace; this pushes the headers out now
            while (code := await _db(st, lambda s: store.exit_status(s, p, ref))) is None:
                await asyncio.sleep(WAIT_POLL)  # a client that leaves cancels this (Starlette)
            yield json.dumps({"StatusCode": code, "Error": None}).encode()

        return StreamingResponse(body(), media_type="application/json")

    @app.delete("/containers/{ref:path}")
    async def remove(request: Request, ref: str) -> Response:
        st, p, r = await _find(request, ref, "operator")
        nodes = await _db(st, lambda s: store.remove(s, p, r, _flag(request, "force"), time.time()))
        st.hub.bump(nodes)
        st.loop.kick()
        return Response(status_code=204)

    @app.get("/containers/{ref:path}/logs")
    async def logs(request: Request, ref: str) -> StreamingResponse:
        st, p, r = await _find(request, ref, "viewer")
        q = request.query_params
        if _flag(request, "timestamps"):
            raise Refused("docker logs --timestamps is not supported by Dockyard")
        if (q.get("since") or "0") not in ("0", "") or (q.get("until") or "0") not in ("0", ""):
            raise Refused("docker logs --since/--until are not supported by Dockyard: use --tail")
        if r.instance is None or r.instance == r.container_id:
            raise Unavailable(f"container {ref} has no logs: it is not running on any node")
        tail = q.get("tail") or "all"
        if tail != "all" and not tail.isdigit():
            tail = "all"  # Docker reads a negative or unparsable tail as all
        wanted = {1} if _flag(request, "stdout") else set()
        wanted |= {2} if _flag(request, "stderr") else set()
        stream = await agents.logs(st, p, r.instance, tail, _flag(request, "follow"))
        return StreamingResponse(stream if wanted == {1, 2} else _only(stream, wanted),
                                 media_type="application/vnd.docker.raw-stream")

    @app.get("/images/json")
    async def images(request: Request) -> list[dict]:
        st = _st(request)
        await _who(request, "viewer")
        return await agents.images(st)

    @app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
    async def anything_else(request: Request, rest: str) -> JSONResponse:
        await _who(request, "viewer")
        return unsupported(request)

    app.add_middleware(StripVersion)
    return app


class _Failed(DockyardError):
    status, code = 500, "failed"


async def _only(stream: AsyncIterator[bytes], wanted: set[int]) -> AsyncIterator[bytes]:
    """The frames of the wanted streams (1 stdout, 2 stderr) of a multiplexed stream."""
    buf = b""
    async for chunk in stream:
        buf += chunk
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            frame, buf = buf[:8 + size], buf[8 + size:]
            if frame[0] in wanted:
                yield frame

