"""The autoscaler and the rebalancer: the leader's controllers that change a service's count or
placement by themselves, and record why. Load, decide (core/autoscale.py, core/rebalance.py),
apply, in one transaction every EVERY seconds.

Leader-owned: only the leading server runs them, and every transaction they write is fenced
with its epoch (the lease row, as the reconcile pass). Their memory is in the database
(`services.automation`: the recommendation history the stabilisation windows need, the moves
in flight), so a new leader carries on where the old one stopped. The figures come from the
metrics tables every agent fills (POST /v1/agent/metrics).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import namespaces
from orchestrator import service_ops as ops
from orchestrator.core import autoscale, rebalance
from orchestrator.core.constraints import parse_constraint
from orchestrator.core.planner import is_ready
from orchestrator.errors import DockyardError
from orchestrator.events import record
from orchestrator.models import Instance, InstanceMetrics, Node, Service, ServiceTraffic

log = logging.getLogger("dockyard.automation")
EVERY = 5.0  # seconds between evaluations (the HPA's default is 15)
FRESH = 3.0  # a node's figures count while younger than this many of its windows (+ EVERY)
MOVE_TIMEOUT = 180.0  # seconds a rebalance move may take before it is given up


def usage(s: Session, svc: Service, ready: list[Instance], now: float) -> float | None:
    """The service's metric averaged over its ready instances (None: no fresh figures)."""
    a = svc.spec["autoscale"]
    metric, ids = a.get("metric", "cpu"), [i.id for i in ready]
    if not ids:
        return None
    if metric in ("cpu", "memory"):
        rows = [r for r in s.scalars(select(InstanceMetrics).where(InstanceMetrics.instance_id.in_(ids)))
                if now - r.at <= FRESH * r.window + EVERY]
        res = svc.spec.get("resources") or {}
        if metric == "cpu":
            vals = [r.cpu / (res.get("cpus") or 1.0) * 100 for r in rows if r.cpu is not None]
        else:
            vals = [r.memory / res["memory"] * 100 for r in rows if r.memory is not None and res.get("memory")]
        return sum(vals) / len(vals) if vals else None
    rows = [r for r in s.scalars(select(ServiceTraffic).where(ServiceTraffic.service == svc.name))
            if now - r.at <= FRESH * r.window + EVERY]
    if not rows:
        return None
    if metric == "rps":
        return sum(r.requests / r.window for r in rows) / len(ready)
    p95 = [r.latency_p95_ms for r in rows if r.requests and r.latency_p95_ms is not None]
    return max(p95) if p95 else None


def _ready(svc: Service, live: list[Instance], now: float) -> list[Instance]:
    from orchestrator.reconcile import view

    min_ready = (svc.spec.get("update") or {}).get("min_ready_seconds", 0.0)
    return [i for i in live if i.revision == svc.revision and is_ready(view(i), now, min_ready)]


def _state(svc: Service) -> dict[str, Any]:
    return dict(svc.automation or {})


def _note(s: Session, svc: Service, state: dict, key: str, kind: str, message: str, now: float) -> None:
    """An event, once per distinct message (a held scale-up would otherwise say so every 5 s)."""
    if state.get(key) != message:
        state[key] = message
        record(s, kind, message, service=svc.name, actor="autoscaler", now=now)


def autoscale_service(s: Session, svc: Service, live: list[Instance], now: float) -> bool:
    a = svc.spec["autoscale"]
    p = autoscale.Policy.of(a)
    ready = _ready(svc, live, now)
    value = usage(s, svc, ready, now)
    state = _state(svc)
    mine = dict(state.get("autoscale") or {})
    d = autoscale.decide(p, svc.replicas, len(ready), value, tuple(map(tuple, mine.get("history") or [])), now)
    mine.update(history=[list(h) for h in d.history], value=value, ready=len(ready), at=now,
                recommendation=d.recommendation)
    desired, changed = d.desired, False
    if desired > svc.replicas:
        stuck = [i for i in live if i.node_name is None and i.last_error]
        if stuck:
            _note(s, svc, mine, "held", "autoscale_held", f"{d.reason}, held: {len(stuck)} instance(s) cannot be "
                  f"placed ({stuck[0].last_error[:200]})", now)
            desired = svc.replicas
        else:
            desired = _within_quota(s, svc, desired)
            if desired < d.desired:
                _note(s, svc, mine, "held", "autoscale_held", f"{d.reason}, held at {desired}: the namespace "
                      f"quota allows no more", now)
    if desired != svc.replicas:
        reason = d.reason if desired == d.desired else d.reason.replace(f"-> {d.desired}", f"-> {desired}")
        ops.scale(s, svc.name, desired, if_match=None, actor="autoscaler", now=now, by_autoscaler=True)
        record(s, "autoscaled", reason, service=svc.name, actor="autoscaler", now=now)
        mine.pop("held", None)
        changed = True
    state["autoscale"] = mine
    svc.automation = state
    return changed


def _within_quota(s: Session, svc: Service, desired: int) -> int:
    for n in range(desired, svc.replicas, -1):
        try:
            namespaces.check_quota(s, svc.name, n, svc.spec)
            return n
        except DockyardError:
            continue
    return svc.replicas


def eligible_nodes(svc_spec: dict, nodes: list[Node]) -> list[str]:
    rules = [parse_constraint(c) for c in (svc_spec.get("placement") or {}).get("constraints") or []]
    return sorted(n.name for n in nodes if n.status == "ready" and n.availability == "active"
                  and all(r.matches(n.labels or {}, n.name) for r in rules))


def rebalance_plan(svc: Service, live: list[Instance], nodes: list[Node], now: float,
                   max_moves: int | None = None) -> list[rebalance.Move]:
    """The next moves (at most the service's rebalance_max_moves, or `max_moves`: the whole plan)."""
    ready = {i.id for i in _ready(svc, live, now)}
    placed = [rebalance.Placed(i.id, i.slot, i.node_name, i.id in ready) for i in live if i.node_name]
    if max_moves is None:
        max_moves = (svc.spec.get("placement") or {}).get("rebalance_max_moves", 1)
    return rebalance.plan(placed, eligible_nodes(svc.spec, nodes), max_moves)


def rebalance_service(s: Session, svc: Service, live: list[Instance], nodes: list[Node], now: float) -> bool:
    mode = (svc.spec.get("placement") or {}).get("rebalance", "manual")
    state = _state(svc)
    mine = dict(state.get("rebalance") or {})
    running = {i.id for i in live}
    moves = [m for m in mine.get("moves") or [] if m["instance"] in running]
    for m in moves:
        if now - m["at"] > MOVE_TIMEOUT:
            record(s, "rebalance_stalled", f"moving slot {m['slot']} off {m['source']} took over {MOVE_TIMEOUT:.0f} s "
                   "(its replacement could not be placed or become ready): left where it is", service=svc.name,
                   actor="rebalancer", now=now)
    moves = [m for m in moves if now - m["at"] <= MOVE_TIMEOUT]
    eligible = eligible_nodes(svc.spec, nodes)
    seen = set(mine.get("nodes") or [])
    if mode == "auto" and seen and set(eligible) - seen:
        mine["requested"] = now  # a node joined or came back
    mine["nodes"] = eligible
    changed = moves != (mine.get("moves") or [])
    mine["moves"] = moves
    if mode == "never":
        mine.pop("requested", None)
    if mine.get("requested") and not moves and svc.rollout_phase == "complete":
        if len(_ready(svc, live, now)) >= svc.replicas:
            plan = rebalance_plan(svc, live, nodes, now)
            if not plan:
                record(s, "rebalance_complete", f"spread over {len(eligible)} node(s)", service=svc.name,
                       actor="rebalancer", now=now)
                mine.pop("requested", None)
            for m in plan:
                record(s, "rebalance_move", m.text(svc.name.split("/")[-1]) + " (surge-first)", service=svc.name,
                       actor="rebalancer", now=now)
                moves.append({"instance": m.instance_id, "slot": m.slot, "source": m.source, "target": m.target,
                              "at": now})
            changed = changed or bool(plan)
    state["rebalance"] = mine
    if state != (svc.automation or {}):
        svc.automation = state
    return changed


def step(s: Session, now: float) -> bool:
    """One evaluation of every service that has something to do; True when a count or a move changed."""
    def wanted(spec: dict | None, auto: dict | None) -> bool:
        reb = (auto or {}).get("rebalance") or {}
        return bool((spec or {}).get("autoscale") or ((spec or {}).get("placement") or {}).get("rebalance") == "auto"
                    or reb.get("requested") or reb.get("moves"))

    # read plainly, then lock only the services with something to do (in name order, as writers do)
    names = sorted(r.name for r in s.execute(select(Service.name, Service.spec, Service.automation))
                   if wanted(r.spec, r.automation))
    if not names:
        return False
    services = list(s.scalars(select(Service).where(Service.name.in_(names)).order_by(Service.name).with_for_update()))
    live: dict[str, list[Instance]] = {n: [] for n in names}
    for i in s.scalars(select(Instance).where(Instance.service_name.in_(names), Instance.desired_state == "running")):
        live[i.service_name].append(i)
    nodes = list(s.scalars(select(Node)))
    changed = False
    for svc in services:
        if svc.spec.get("autoscale") and svc.rollout_phase != "progressing":
            changed |= autoscale_service(s, svc, live[svc.name], now)
        changed |= rebalance_service(s, svc, live[svc.name], nodes, now)
    return changed


class Automation:
    """Runs `step` every EVERY seconds while this server leads."""

    def __init__(self, db, loop, every: float = EVERY):  # type: ignore[no-untyped-def]
        self.db, self.loop, self.every = db, loop, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dockyard-automation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if not self.loop.leading:
                continue
            try:
                if self.run_once():
                    self.loop.kick()
            except Exception:  # noqa: BLE001 - the next round tries again; the loop is not harmed
                log.exception("autoscaler/rebalancer round failed")

    def run_once(self, now: float | None = None) -> bool:
        elector = self.loop.elector

        def tx(s: Session) -> bool:
            changed = step(s, time.time() if now is None else now)
            if elector is not None and (s.new or s.dirty or s.deleted):
                epoch = elector.epoch
                if epoch is None:
                    from orchestrator.coord.lease import NotLeader

                    raise NotLeader("this server stopped leading during the automation round")
                elector.lease.fence(s, epoch)
            return changed

        return self.db.run(tx)
