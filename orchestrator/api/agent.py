"""The agent protocol: join with the join token, then sync (report + long-poll assignments).

Agents pull; the server never pushes state. A sync records what the agent reports, counts
as its heartbeat, and answers with the full list of instances the node should run, waiting
up to `wait` seconds for that list to change when the agent already has the current one.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, NamedTuple

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from pydantic import TypeAdapter
from sqlalchemy.orm import object_session
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from orchestrator import agent_keys, assignments, gcpause, join as joining, metrics, node_loss
from orchestrator.api.deps import State, YamlRoute, node_principal, state
from orchestrator.auth import Principal, check_join_token, hash_secret, new_secret
from orchestrator.batching import Batcher
from orchestrator.coord import lease
from orchestrator.errors import Conflict
from orchestrator.events import record
from orchestrator.models import Event, Instance, Node
from orchestrator.protocol import JoinIn, ReportItem, SyncIn, SyncOut


class AgentRoute(YamlRoute):
    """The agent routes; a long poll whose agent closed the connection before the server read its
    body (FastAPI answers 400 to nobody) is a dropped agent too (node_loss.unread)."""

    def get_route_handler(self):  # type: ignore[no-untyped-def]
        handler = super().get_route_handler()
        if not self.path.endswith("/sync"):
            return handler

        async def route(request):  # type: ignore[no-untyped-def]
            try:
                return await handler(request)
            except HTTPException as exc:
                if isinstance(exc.__cause__, ClientDisconnect):
                    await node_loss.unread(request)
                raise

        return route


router = APIRouter(prefix="/v1/agent", tags=["agent"], route_class=AgentRoute)


@router.post("/join", responses={409: {"description": "the name belongs to a node that is alive"}})
def join(body: JoinIn, st: State = Depends(state)) -> dict:
    now = time.time()
    ttl = st.hub.node_ttl(st.settings.node_ttl)

    def write(s):  # type: ignore[no-untyped-def]
        check_join_token(s, body.join_token)
        n = s.get(Node, body.node_name)
        known = None if n is None else joining.Known(n.status, st.hub.last_seen(n.name, n.last_heartbeat),
                                                     n.credential_hash)
        verdict = joining.decide(body.node_name, known, hash_secret(body.credential) if body.credential else None,
                                 now, ttl)
        if not verdict.allowed:
            raise Conflict(verdict.reason)
        # the node's own agent keeps its credential (a crash between our commit and its saving
        # a new one would lock it out); anyone else gets a fresh one
        credential = body.credential if verdict.kind == "own" else new_secret("dyn")
        replaced = n is not None and n.credential_hash != hash_secret(credential)
        if n is None:
            n = Node(name=body.node_name, created_at=now, status="ready", availability="active")
            s.add(n)
            record(s, "node_joined", verdict.reason, node=body.node_name, now=now)
        elif n.status == "down":
            record(s, "node_ready", verdict.reason, node=body.node_name, now=now)
        else:  # its agent restarted (own credential), or it was silent past the TTL
            record(s, "node_rejoined", verdict.reason, node=body.node_name, now=now)
        n.address, n.agent_url, n.labels, n.gateway = body.address, body.agent_url, body.labels, body.gateway
        n.cpus, n.memory = body.cpus, body.memory
        n.agent_version, n.engine_version = body.agent_version, body.engine_version
        n.credential_hash, n.status, n.last_heartbeat = hash_secret(credential), "ready", now
        agent_keys.set_cert(s, body.node_name, body.agent_cert)  # pinned for the server's calls to the agent
        # (the key: for the server's calls to the agent's API, logs)
        return credential, agent_keys.issue(s, body.node_name), replaced

    try:
        credential, agent_key, replaced = st.db.run(write)
    except Conflict as exc:
        logging.getLogger("dockyard.join").warning("join as %s refused: %s", body.node_name, exc.message)
        raise
    if replaced:
        # its previous credential no longer works. Only then: every forget moves the credential
        # epoch on every server, and no credential check in flight is cached meanwhile, so a
        # forget per join made each sync of a join storm (5,000 agents) a database read
        st.hub.forget_node(body.node_name)
    st.hub.beat(body.node_name, now)
    st.hub.bump([body.node_name])
    st.loop.kick()
    return {"node": body.node_name, "credential": credential, "agent_key": agent_key,
            "heartbeat_interval": st.hub.heartbeat_interval()}


def _write_reports(st: State, batch: list[tuple[str, list[ReportItem] | None, float]]) -> list[object]:
    """Apply a batch of reports in one transaction (one result per report: kick the loop?);
    if that fails, report by report, so one bad report does not fail the others."""
    evented: list[bool] = []
    routed: list[bool] = []

    def write(s, items):  # type: ignore[no-untyped-def]
        # Most of a report says again what the database has (a node starting hundreds of
        # containers reports all of them every time one more runs): compare plain rows first,
        # and load as objects only the instances the report changes.
        nodes = sorted({n for n, r, _ in items if r is not None})
        stored: dict[str, list[Any]] = defaultdict(list)
        for chunk in assignments.chunks(nodes):
            for row in s.execute(select(*REPORTED).where(Instance.node_name.in_(chunk))):
                stored[row.node_name].append(row)
        changing = sorted({row.id for n, r, _ in items if r is not None for row in _changing(stored.get(n, []), r)})
        by_node: dict[str, list[Instance]] = defaultdict(list)
        for chunk in assignments.chunks(changing):
            for i in s.scalars(select(Instance).where(Instance.id.in_(chunk))):
                by_node[i.node_name].append(i)
        # the batch's nodes in one read: a Session.get per report was a query each, and each
        # flushed the reports before it (autoflush), ~60 % of a 500-report batch at 5,000 nodes
        rows: dict[str, Node] = {}
        for chunk in assignments.chunks(sorted({n for n, _r, _t in items})):
            rows.update((n.name, n) for n in s.scalars(select(Node).where(Node.name.in_(chunk))))
        return [_write_report(s, st, rows.get(n), n, r, t, by_node.get(n, []), evented, routed) for n, r, t in items]

    try:
        with gcpause.paused():  # thousands of instance objects live until the batch commits
            results: list[object] = st.db.run(lambda s: write(s, batch))
    except Exception:
        results = []
        for item in batch:
            try:
                results += st.db.run(lambda s: write(s, [item]))
            except Exception as exc:
                results.append(exc)
    if evented:
        st.hub.events_changed()
    if routed:
        st.routes.changed()
    return results


class SyncBatchers(NamedTuple):
    reports: Batcher
    assignments: Batcher


def _batchers(st: State) -> SyncBatchers:
    """This server's report writer and assignment reader, made on first use."""
    b = getattr(st, "sync_batchers", None)
    if b is None:
        b = st.sync_batchers = SyncBatchers(  # type: ignore[attr-defined]
            Batcher("reports", lambda batch: _write_reports(st, batch), REPORT_BATCH_MAX),
            Batcher("assignments", lambda nodes: _read_assignments(st, nodes), ASSIGNMENT_BATCH_MAX),
        )
    return b


def _read_assignments(st: State, nodes: list[str]) -> list[object]:
    """(assignments, epoch) per node; the epoch read in the same transaction."""
    found, epoch = st.db.run(lambda s: (assignments.read(s, nodes), lease.current_epoch(s)))
    return [(found[n], epoch) for n in nodes]


# what a report can change in an instance row (and what tells which rows it changes)
REPORTED = (Instance.id, Instance.node_name, Instance.desired_state, Instance.state, Instance.healthy,
            Instance.restart_count, Instance.container_id, Instance.exit_code, Instance.host_ports,
            Instance.last_error, Instance.ready_since)


def _changing(rows: list[Any], report: list[ReportItem]) -> list[Any]:
    """The rows (REPORTED columns) of one node's instances that applying its report would change:
    everything _write_report (and _observe) would write, and nothing else."""
    seen = {r.instance_id: r for r in report}
    out = []
    for row in rows:
        r = seen.get(row.id)
        if r is None:
            if row.desired_state == "stopped" or row.state not in ("assigned", "pending"):
                out.append(row)
            continue
        if row.desired_state == "stopped" and row.state == "lost":
            continue  # fenced: _observe keeps it as it is
        ready = r.state == "running" and r.healthy is not False
        if ((row.state, row.healthy, row.container_id, row.exit_code, row.last_error)
                != (r.state, r.healthy, r.container_id, r.exit_code, r.error)
                or row.host_ports != r.host_ports or r.restart_count > row.restart_count
                or ready != (row.ready_since is not None)):
            out.append(row)
    return out


def _write_report(s, st: State, n: Node | None, node: str, report: list[ReportItem] | None,  # type: ignore[no-untyped-def]
                  now: float, instances: list[Instance], evented: list[bool], routed: list[bool]) -> bool:
    """Apply one node's report in the caller's transaction; True when the loop should look soon.
    `n`: the node's row (None: removed); `instances`: those of the node's instances the report
    changes (_changing); the others are left as they are."""
    kick = False
    if n is not None and n.status == "down":
        n.status, n.last_heartbeat = "ready", now
        record(s, "node_ready", f"node {node} is back", node=node, now=now)
        kick = True
    if report is None:
        return kick
    seen = {r.instance_id: r for r in report}
    watched = st.hub.watched  # services the loop waits on (a rollout, a drain); None: all
    for i in instances:
        r = seen.get(i.id)
        if r is None:
            if i.desired_state == "stopped":
                s.delete(i)  # its container is gone: the instance is finished
                kick = True
            elif i.state not in ("assigned", "pending"):
                i.state, i.ready_since, i.updated_at = "assigned", None, now
                kick |= watched is None or i.service_name in watched
                routed.append(True)
            continue
        # what a gateway routes on (orchestrator/core/routes.py): an endpoint came or went
        routing = (i.state, i.healthy is False, i.host_ports)
        # a state change matters to the loop at once only where it waits on it; the next
        # interval's pass sees the others (its fingerprint includes updated_at)
        kick |= _observe(i, r, now) and (watched is None or i.service_name in watched)
        if i.desired_state == "running" and routing != (i.state, i.healthy is False, i.host_ports):
            routed.append(True)
    if not kick and any(isinstance(o, Event) and o.node == node for o in s.new):
        evented.append(True)  # events recorded (unhealthy, restarted): wake their watchers
    return kick


def _observe(i: Instance, r: ReportItem, now: float) -> bool:
    if i.desired_state == "stopped" and i.state == "lost":
        return False  # fenced: keep saying lost until the agent removes the container
    before = (i.state, i.healthy, i.restart_count, i.container_id, i.last_error)
    prev_exit = i.exit_code
    i.container_id, i.exit_code, i.host_ports = r.container_id, r.exit_code, r.host_ports
    i.state, i.healthy, i.last_error = r.state, r.healthy, r.error
    i.restart_count = max(i.restart_count, r.restart_count)
    ready = r.state == "running" and r.healthy is not False
    if ready and i.ready_since is None:
        i.ready_since = now
    elif not ready:
        i.ready_since = None
    changed = before != (i.state, i.healthy, i.restart_count, i.container_id, i.last_error)
    _instance_events(i, before, prev_exit, now)
    if changed:
        i.updated_at = now
    return changed


def _instance_events(i: Instance, before: tuple, prev_exit: int | None, now: float) -> None:
    """Events for what the agent saw happen to an instance: health check failed, restarted."""
    s = object_session(i)
    if s is None:
        return
    where = f"instance {i.id} (slot {i.slot}, revision {i.revision}) on {i.node_name}"
    if i.healthy is False and before[1] is not False:
        record(s, "instance_unhealthy", f"{where} is unhealthy: {i.last_error or 'health check failed'}",
               service=i.service_name, node=i.node_name, instance=i.id, now=now)
    elif i.healthy is True and before[1] is False:
        record(s, "instance_healthy", f"{where} is healthy again", service=i.service_name, node=i.node_name,
               instance=i.id, now=now)
    if i.restart_count > before[2]:
        code = i.exit_code if i.exit_code is not None else prev_exit
        why = "it was unhealthy" if False in (before[1], i.healthy) else (
            f"it exited with code {code}" if code is not None else "it stopped")
        record(s, "instance_restarted", f"{where} restarted (restart #{i.restart_count}): {why}",
               service=i.service_name, node=i.node_name, instance=i.id, now=now)


@router.post("/leave", status_code=204)
async def leave(p: Principal = Depends(node_principal), st: State = Depends(state)) -> Response:
    """The agent stops on purpose (SIGTERM: a restart, an upgrade): its containers keep
    running, so its long poll closing must not make the node suspect. It goes down after the
    TTL if it does not come back (as a silent host does). On the event loop, as the polls are."""
    st.hub.forget_poll(p.name)
    return Response(status_code=204)


REPORT_REAPPLY_SECONDS = 60.0
# a report's digest: pydantic's repr of 50 items cost 1.2 ms of the event loop per sync, its JSON 0.1 ms
REPORT_JSON = TypeAdapter(list[ReportItem])
REPORT_BATCH_MAX = 500  # reports written in one transaction at most
ASSIGNMENT_BATCH_MAX = 1000  # nodes whose assignments are read in one transaction at most


@router.post("/sync", response_model=SyncOut)
async def sync(body: SyncIn, request: Request, st: State = Depends(state),
               p: Principal = Depends(node_principal)) -> Response:
    now = time.time()
    if body.wait <= 0:  # a report: only long polls tell whether an agent is there
        return await _sync(body, st, p, now, None)
    # While the long poll runs, watch its connection: the body is read, so the next ASGI
    # message is http.disconnect, which uvicorn sends only when the connection is lost while the
    # request runs (the peer closed it; its own graceful shutdown lets running requests finish,
    # then cancels them). If it was the node's newest poll here, the node is suspect.
    token = st.hub.poll_started(p.name)
    watch = asyncio.ensure_future(request.receive())
    try:
        answer = await _sync(body, st, p, now, watch)
    finally:
        newest = st.hub.poll_ended(p.name, token)
        if not watch.done():
            watch.cancel()
    if not (watch.done() and not watch.cancelled() and watch.exception() is None
            and watch.result().get("type") == "http.disconnect"):
        return answer
    if newest:
        await node_loss.dropped(st, p.name, now)
    return Response(status_code=499)  # nobody reads it


async def _sync(body: SyncIn, st: State, p: Principal, now: float, gone: "asyncio.Future | None") -> Response:
    previous = st.hub.heartbeats.get(p.name)
    st.hub.beat(p.name, now)
    # A bare heartbeat from a node that beat recently needs no database: the loop can hardly
    # have declared it down in between (it needs node_ttl of silence, or a dropped long poll
    # and node_grace), and if it did, it marks a node with fresh heartbeats ready again
    # (reconcile._liveness).
    recent = previous is not None and now - previous < st.hub.node_ttl(st.settings.node_ttl) / 2
    # Agents re-send an unchanged report every few seconds (level-triggered). If the node's
    # generation has not moved either, nothing server-side touched its instances since the
    # same report was applied, so applying it again would change nothing: skip the database
    # (but not for longer than REPORT_REAPPLY_SECONDS).
    key = None if body.report is None else (st.hub.generation(p.name), hash(REPORT_JSON.dump_json(body.report)))
    last = st.hub.reports.get(p.name)
    if key is not None and last is not None and last[0] == key and now - last[1] < REPORT_REAPPLY_SECONDS:
        pass
    elif (body.report is not None or not recent) and await _batchers(st).reports.submit((p.name, body.report, now)):
        st.loop.kick()
        st.hub.events_changed()  # a report may have recorded events (unhealthy, restarted)
    if key is not None and (last is None or last[0] != key or now - last[1] >= REPORT_REAPPLY_SECONDS):
        st.hub.reports[p.name] = (key, now)
    # done with the report: a long poll waits up to a heartbeat interval (25 s at 5,000 nodes) and
    # agents re-send their report on it, so every waiting poll held its parsed report (~44 objects
    # the garbage collector scans for 10 containers) in this frame and its callers'
    body.report = None
    await st.hub.wait(p.name, body.known, min(body.wait, 30.0), body.routes_known, gone)
    if gone is not None and gone.done():
        return Response(status_code=499)  # the agent went away (see sync)
    generation = st.hub.generation(p.name)
    routes_version, routes, spaces = st.routes.snapshot()
    if body.routes_known is None or body.routes_known == routes_version:
        routes = spaces = None
    # The agent already has this generation (a timed-out long poll, a report): say so
    # instead of reading and sending every assignment again.
    todo, epoch = (None, None) if generation == body.known else await _batchers(st).assignments.submit(p.name)
    metrics.SYNCS.inc()
    # built by hand: validating thousands of assignment specs through the response model
    # on every sync costs more than the rest of the request
    return JSONResponse({"node": p.name, "generation": generation, "assignments": todo, "epoch": epoch,
                         "heartbeat_interval": st.hub.heartbeat_interval(), "routes": routes,
                         "routes_version": routes_version, "spaces": spaces})
