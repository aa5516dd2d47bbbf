"""GET /v1/summary: the whole cluster in one compact answer, and its live stream (`watch=true`).

What the dashboard (/ui) shows in its lists, one row per service and per node: counts,
rollout state, the node's requested CPU and memory against its capacity, and who the token
is (so the dashboard offers only what the role may do). With `watch=true` it is a
text/event-stream: one `snapshot` message, then a `changes` message with only the rows that
changed (and the keys that went away) whenever something did, at most once a second.

Memory: one `Feed` per server process reads the summary from the database only while somebody
watches: soon after this server writes anything (at most every MIN_GAP seconds, and spending
at most a quarter of a core on it) and else every TICK seconds (or ten times the time a read
takes, if longer), which also catches other servers' writes. Between reads it keeps the rows
(`Cache`), and a read computes again only the rows whose fingerprint in the database moved:
derived from the database, checked on every read; a watcher on another server has that
server's own feed. Every watcher gets the rows its token may see. The pure parts
(`service_row`, `node_rows`, `stale`, `diff`) are tested without a database.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Numeric, cast, func, select

from orchestrator import service_ops as ops
from orchestrator.api.deps import State, role, state
from orchestrator.auth import Principal
from orchestrator.core import status as status_core
from orchestrator.models import Instance, Node, Service
from orchestrator.namespaces import split

router = APIRouter(prefix="/v1", tags=["cluster"])


class You(BaseModel):
    name: str
    role: str
    namespaces: list[str] | None = Field(description="the only namespaces the token sees; null: all")


class SummaryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    you: You
    services: list[dict[str, Any]] = Field(description="key, namespace, name, stack, replicas, ready, running, updated, "
                                                       "pending, revision, rollout, health (healthy, degraded, "
                                                       "rolling), message, image")
    nodes: list[dict[str, Any]] = Field(description="key, name, status, availability, labels, address, cpus, memory, "
                                                    "used_cpus, used_memory (what placed instances request), instances")
    time: float
TICK = 1.0  # seconds between recomputations while watched and nothing was written here
MIN_GAP = 0.2  # seconds between recomputations at the most (more when a recomputation takes long)
POLL = 0.05  # seconds between looks at this server's write counter
KEEPALIVE = 15.0


def service_row(svc: Any, live: list, now: float) -> dict:
    st = status_core.summarise(svc.replicas, svc.revision, live, now, svc.status_message)
    ns, name = split(svc.name)
    health = ("rolling" if svc.rollout_phase not in ("complete", "") else
              "healthy" if st.ready >= svc.replicas and not any(i.healthy is False for i in live) else "degraded")
    return {"key": svc.name, "namespace": ns, "name": name, "stack": svc.stack, "replicas": svc.replicas,
            "ready": st.ready, "running": st.running, "updated": st.updated, "pending": st.pending,
            "revision": svc.revision, "rollout": svc.rollout_phase, "health": health, "message": st.message,
            "image": (svc.spec or {}).get("image")}


def node_rows(nodes: list[Any], placed: list[tuple[str, str, int, int]], specs: dict[tuple[str, int], dict]) -> list[dict]:
    """Nodes with what their running instances request (the scheduler's view of use); `placed`
    is (node, service, revision, how many)."""
    cpus: dict[str, float] = defaultdict(float)
    mem: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for node, service, revision, n in placed:
        res = specs.get((service, revision), {}).get("resources") or {}
        cpus[node] += (res.get("cpus") or 0.0) * n
        mem[node] += (res.get("memory") or 0) * n
        count[node] += n
    return [{"key": n.name, "name": n.name, "status": n.status, "availability": n.availability,
             "labels": n.labels or {}, "address": n.address, "cpus": n.cpus, "memory": n.memory,
             "used_cpus": round(cpus[n.name], 3), "used_memory": mem[n.name], "instances": count[n.name]}
            for n in nodes]


def stale(fingerprints: dict[str, Any], cached: dict[str, Any], timed: set[str]) -> list[str]:
    """Services whose row must be computed again: new, changed, or ready only after a while."""
    return [k for k, fp in fingerprints.items() if k in timed or cached.get(k) != fp]


@dataclass
class Cache:
    """Rows kept between recomputations: derived from the database and checked against its
    fingerprints on every read (a service's row and counters, the sum of its instances'
    updated_at, which every change that matters sets: orchestrator/reconcile.py relies on it too)."""

    services: dict[str, tuple[Any, dict, dict]] = field(default_factory=dict)  # key -> (fingerprint, row, spec)
    nodes_fp: Any = None
    nodes: dict[str, dict] = field(default_factory=dict)


def diff(old: dict[str, dict], new: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """Rows of `new` that are not in `old` as they are, and keys of `old` gone from `new`."""
    return [r for k, r in new.items() if old.get(k) != r], [k for k in old if k not in new]


def _read(st: State, cache: Cache | None = None) -> dict:
    cache = cache if cache is not None else Cache()

    def read(s):  # type: ignore[no-untyped-def]
        now = time.time()
        meta = {r[0]: tuple(r) for r in s.execute(select(
            Service.name, Service.version, Service.revision, Service.replicas, Service.rollout_phase,
            Service.status_message, Service.stack))}
        running = Instance.desired_state == "running"
        agg = {r[0]: tuple(r[1:]) for r in s.execute(
            select(Instance.service_name, func.count(Instance.id), func.sum(cast(Instance.updated_at, Numeric)),
                   func.sum(Instance.restart_count)).where(running).group_by(Instance.service_name))}
        fps = {k: (m, agg.get(k)) for k, m in meta.items()}
        timed = {k for k, (_, _, spec) in cache.services.items()
                 if ((spec.get("update") or {}).get("min_ready_seconds") or 0) > 0}
        todo = stale(fps, {k: v[0] for k, v in cache.services.items()}, timed)
        fresh: dict[str, tuple[Any, dict, dict]] = {}
        for at in range(0, len(todo), 500):
            svcs = list(s.scalars(select(Service).where(Service.name.in_(todo[at:at + 500]))))
            live = ops.live_instances(s, [x.name for x in svcs])
            fresh.update({x.name: (fps[x.name], service_row(x, live[x.name], now), x.spec) for x in svcs})
        cache.services = {k: fresh.get(k) or cache.services[k] for k in fps if k in fresh or k in cache.services}
        nodes = s.execute(select(Node.name, Node.status, Node.availability, Node.labels, Node.address, Node.cpus,
                                 Node.memory).order_by(Node.name)).all()
        nodes_fp = (repr(nodes), hash(tuple(sorted(fps.items(), key=lambda kv: kv[0]))))
        if nodes_fp != cache.nodes_fp:
            placed = s.execute(select(Instance.node_name, Instance.service_name, Instance.revision, func.count())
                               .where(running, Instance.node_name.is_not(None))
                               .group_by(Instance.node_name, Instance.service_name, Instance.revision)).all()
            specs = {(k, row["revision"]): spec for k, (_, row, spec) in cache.services.items()}
            cache.nodes = {r["key"]: r for r in node_rows(nodes, [tuple(p) for p in placed], specs)}
            cache.nodes_fp = nodes_fp
        return {"services": {k: v[1] for k, v in cache.services.items()}, "nodes": cache.nodes}

    return st.db.run(read)


def _visible(snap: dict, p: Principal) -> dict:
    if p.namespaces is None:
        return snap
    return {"services": {k: r for k, r in snap["services"].items() if p.sees(r["namespace"])}, "nodes": snap["nodes"]}


def _body(snap: dict, p: Principal) -> dict:
    return {"you": {"name": p.name, "role": p.role, "namespaces": list(p.namespaces) if p.namespaces else None},
            "services": list(snap["services"].values()), "nodes": list(snap["nodes"].values()),
            "time": time.time()}


class Feed:
    """The per-process summary, recomputed at most every TICK seconds while watched."""

    def __init__(self) -> None:
        self.snap: dict | None = None
        self.cache = Cache()  # only the feed's task reads with it, one read at a time
        self.version = 0
        self.watchers = 0
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Condition()

    async def _run(self, st: State) -> None:
        last, took, seen = -1e9, 0.0, None
        while self.watchers > 0:
            # soon after this server writes (at most a third of the time spent reading), else
            # every TICK or ten times the reading time (other servers' writes, readiness that
            # moves with time alone): a big cluster is read less often, never more than ~1/3 core
            wrote = st.db.writes != seen
            due = last + (max(MIN_GAP, 3 * took) if wrote else max(TICK, 10 * took))
            now = time.monotonic()
            if now < due:
                await asyncio.sleep(min(POLL, due - now))
                continue
            seen, last = st.db.writes, now
            try:
                snap = await run_in_threadpool(_read, st, self.cache)
            except Exception:  # noqa: BLE001 - a database hiccup: try again next tick
                snap, self.cache = None, Cache()
            took = time.monotonic() - now
            if snap is not None and snap != self.snap:
                async with self._changed:
                    self.snap, self.version = snap, self.version + 1
                    self._changed.notify_all()
        self._task = None

    def join(self, st: State) -> None:
        self.watchers += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(st))

    def leave(self) -> None:
        self.watchers -= 1

    async def wait(self, version: int, timeout: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version != version), timeout)
            except asyncio.TimeoutError:
                pass


def _feed(request: Request) -> Feed:
    app_state = request.app.state
    if getattr(app_state, "summary_feed", None) is None:
        app_state.summary_feed = Feed()
    return app_state.summary_feed


@router.get("/summary", response_model=SummaryOut, responses={200: {
    "description": "every service's and node's row, and who the token is; with `watch=true` a text/event-stream "
                   "of `event: snapshot` (that answer) then `event: changes` (`services`, `nodes`: changed rows; "
                   "`removed_services`, `removed_nodes`: keys) messages",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def summary(request: Request, watch: bool = False, st: State = Depends(state),
                  p: Principal = Depends(role("viewer"))):
    if not watch:
        return JSONResponse(_body(_visible(await run_in_threadpool(_read, st), p), p))
    feed = _feed(request)

    async def stream():  # type: ignore[no-untyped-def]
        feed.join(st)
        try:
            seen, version = None, 0  # the feed's version is 0 until its first snapshot
            while not await request.is_disconnected():
                if feed.snap is None or feed.version == version:
                    await feed.wait(version, KEEPALIVE)
                    if feed.snap is None or feed.version == version:
                        yield ": keep-alive\n\n"
                        continue
                version, snap = feed.version, _visible(feed.snap, p)
                if seen is None:
                    yield f"event: snapshot\ndata: {json.dumps(_body(snap, p))}\n\n"
                else:
                    services, gone_s = diff(seen["services"], snap["services"])
                    nodes, gone_n = diff(seen["nodes"], snap["nodes"])
                    if services or nodes or gone_s or gone_n:
                        msg = {"services": services, "nodes": nodes, "removed_services": gone_s,
                               "removed_nodes": gone_n, "time": time.time()}
                        yield f"event: changes\ndata: {json.dumps(msg)}\n\n"
                seen = snap
        finally:
            feed.leave()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
