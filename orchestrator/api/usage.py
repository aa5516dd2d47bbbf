"""Usage and the controllers that act on it: the agents' metrics in, a service's metrics out,
and the rebalance request (docs/autoscaling.md).

POST /v1/agent/metrics replaces the node's rows in instance_metrics and service_traffic (the
latest window only: the tables stay the size of the cluster). GET .../metrics reads them,
with the autoscaler's last evaluation from `services.automation`. POST .../rebalance asks the
leader's rebalancer (automation.py) to even out a service, or with `dry_run` prints the plan.
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from orchestrator import automation
from orchestrator import service_ops as ops
from orchestrator.api.deps import State, namespace, node_principal, role, state
from orchestrator.auth import Principal
from orchestrator.errors import Conflict
from orchestrator.events import record
from orchestrator.models import Instance, InstanceMetrics, Node, ServiceTraffic
from orchestrator.namespaces import key, split
from orchestrator.protocol import MetricsIn

agent_router = APIRouter(prefix="/v1", tags=["agent"])
# mounted at /v1 (namespace default) and at /v1/namespaces/{ns} (api/app.py)
services_router = APIRouter(tags=["services"])


def store(s: Session, node: str, body: MetricsIn, now: float) -> None:
    ids = [u.instance_id for u in body.instances]
    services = dict(s.execute(select(Instance.id, Instance.service_name).where(Instance.id.in_(ids))).tuples().all()) \
        if ids else {}
    s.execute(delete(InstanceMetrics).where(InstanceMetrics.node == node))
    s.execute(delete(ServiceTraffic).where(ServiceTraffic.node == node))
    s.add_all(InstanceMetrics(instance_id=u.instance_id, service=services[u.instance_id], node=node, cpu=u.cpu,
                              memory=u.memory, window=body.window, at=now)
              for u in body.instances if u.instance_id in services)  # an instance already forgotten: dropped
    seen: set[str] = set()
    for t in body.traffic:
        if t.service not in seen:
            seen.add(t.service)
            s.add(ServiceTraffic(node=node, service=t.service, requests=t.requests, errors=t.errors,
                                 latency_p95_ms=t.latency_p95_ms, window=body.window, at=now))


@agent_router.post("/agent/metrics", status_code=204)
def agent_metrics(body: MetricsIn, st: State = Depends(state), p: Principal = Depends(node_principal)) -> None:
    """What a node's containers used and its gateway served over its last window."""
    st.db.run(lambda s: store(s, p.name, body, time.time()))


def metrics_of(s: Session, name: str, now: float) -> dict[str, Any]:
    svc = ops.load(s, name)
    live = list(s.scalars(select(Instance).where(Instance.service_name == name, Instance.desired_state == "running")
                          .order_by(Instance.slot)))
    rows = {r.instance_id: r for r in s.scalars(select(InstanceMetrics).where(InstanceMetrics.service == name))}
    res = svc.spec.get("resources") or {}
    instances = []
    for i in live:
        r = rows.get(i.id)
        fresh = r is not None and now - r.at <= automation.FRESH * r.window + automation.EVERY
        instances.append({"id": i.id, "slot": i.slot, "node": i.node_name, "state": i.state,
                          "cpu": r.cpu if fresh else None, "memory": r.memory if fresh else None,
                          "cpu_percent": round(r.cpu / (res.get("cpus") or 1.0) * 100, 1) if fresh and r.cpu is not None
                          else None,
                          "sampled_at": ops.iso(r.at) if r is not None else None})
    traffic = [t for t in s.scalars(select(ServiceTraffic).where(ServiceTraffic.service == name).order_by(ServiceTraffic.node))
               if now - t.at <= automation.FRESH * t.window + automation.EVERY]
    cpus = [x["cpu"] for x in instances if x["cpu"] is not None]
    mems = [x["memory"] for x in instances if x["memory"] is not None]
    p95 = [t.latency_p95_ms for t in traffic if t.requests and t.latency_p95_ms is not None]
    auto = (svc.automation or {}).get("autoscale") or {}
    reb = (svc.automation or {}).get("rebalance") or {}
    ns, short = split(name)
    return {
        "service": short, "namespace": ns, "replicas": svc.replicas,
        "cpu": {"cores": round(sum(cpus), 4) if cpus else None,
                "average_percent": round(sum(cpus) / len(cpus) / (res.get("cpus") or 1.0) * 100, 1) if cpus else None},
        "memory": {"bytes": sum(mems) if mems else None,
                   "average_percent": round(sum(mems) / len(mems) / res["memory"] * 100, 1)
                   if mems and res.get("memory") else None},
        "traffic": {"rps": round(sum(t.requests / t.window for t in traffic), 2) if traffic else None,
                    "errors_per_second": round(sum(t.errors / t.window for t in traffic), 2) if traffic else None,
                    "latency_p95_ms": max(p95) if p95 else None,
                    "nodes": [{"node": t.node, "rps": round(t.requests / t.window, 2), "latency_p95_ms": t.latency_p95_ms}
                              for t in traffic]},
        "instances": instances,
        "autoscale": None if not svc.spec.get("autoscale") else {
            **svc.spec["autoscale"], "value": auto.get("value"), "ready": auto.get("ready"),
            "recommendation": auto.get("recommendation"), "evaluated_at": ops.iso(auto.get("at"))},
        "rebalance": {"mode": (svc.spec.get("placement") or {}).get("rebalance", "manual"),
                      "requested": bool(reb.get("requested")), "moves": reb.get("moves") or []},
    }


@services_router.get("/services/{name}/metrics")
def service_metrics(name: str, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                    ns: str = Depends(namespace)) -> dict:
    """CPU and memory per instance and in total, the gateways' request rate and p95 latency,
    and the autoscaler's last evaluation (figures older than three windows are left out)."""
    return st.db.run(lambda s: metrics_of(s, key(ns, name), time.time()))


def request_rebalance(s: Session, name: str, actor: str, dry_run: bool, now: float) -> dict[str, Any]:
    svc = ops.load(s, name, lock=not dry_run)
    mode = (svc.spec.get("placement") or {}).get("rebalance", "manual")
    if mode == "never":
        raise Conflict(f"service {split(name)[1]!r} has placement.rebalance 'never': set it to 'manual' or 'auto' first",
                       [{"field": "placement.rebalance", "problem": "never"}])
    live = list(s.scalars(select(Instance).where(Instance.service_name == name, Instance.desired_state == "running")))
    nodes = list(s.scalars(select(Node)))
    plan = automation.rebalance_plan(svc, live, nodes, now, max_moves=len(live))  # the whole way
    out = {"service": split(name)[1], "dry_run": dry_run, "balanced": not plan,
           "nodes": automation.eligible_nodes(svc.spec, nodes),
           "moves": [{"instance": m.instance_id, "slot": m.slot, "from": m.source, "to": m.target} for m in plan],
           "max_moves": (svc.spec.get("placement") or {}).get("rebalance_max_moves", 1)}
    if not dry_run:
        if plan:
            state = dict(svc.automation or {})
            state["rebalance"] = {**(state.get("rebalance") or {}), "requested": now}
            svc.automation = state
        record(s, "rebalance_requested", f"{len(plan)} move(s) to even out over {len(out['nodes'])} node(s), "
               f"{out['max_moves']} at a time" if plan else "already spread evenly: nothing to move",
               service=name, actor=actor, now=now)
    return out


@services_router.post("/services/{name}/rebalance")
def rebalance(name: str, dry_run: bool = Query(False, description="only show the moves"),
              st: State = Depends(state), p: Principal = Depends(role("operator")),
              ns: str = Depends(namespace)) -> dict:
    """Move instances towards an even spread over the nodes they may run on, surge-first (each
    replacement ready before the old instance stops, through the gateways' drain), at most
    `placement.rebalance_max_moves` at a time. The answer lists every move the plan takes from
    here (the rebalancer recomputes it after each batch, as instances come and go)."""
    out = st.db.run(lambda s: request_rebalance(s, key(ns, name), p.label, dry_run, time.time()))
    if not dry_run:
        st.loop.kick()
    return out


class UsageCollector:
    """The services' usage for /metrics, read from the metrics tables at scrape time, so every
    server exports the same figures (the agents post to any of them)."""

    def __init__(self, db):  # type: ignore[no-untyped-def]
        self.db = db

    def describe(self):  # type: ignore[no-untyped-def]
        return []  # figures are read at scrape time; nothing to check at registration

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.metrics_core import GaugeMetricFamily

        labels = ["service", "namespace"]
        cpu = GaugeMetricFamily("dockyard_service_cpu_cores", "CPU cores a service's instances used (latest windows)", labels=labels)
        mem = GaugeMetricFamily("dockyard_service_memory_bytes", "Memory a service's instances use", labels=labels)
        rps = GaugeMetricFamily("dockyard_service_requests_per_second", "Requests/s the gateways served for a service", labels=labels)
        p95 = GaugeMetricFamily("dockyard_service_latency_p95_seconds", "Worst gateway's p95 latency of a service", labels=labels)
        now = time.time()

        def read(s: Session):  # type: ignore[no-untyped-def]
            fresh = automation.FRESH
            per: dict[str, list[float]] = {}
            for r in s.scalars(select(InstanceMetrics)):
                if now - r.at <= fresh * r.window + automation.EVERY:
                    acc = per.setdefault(r.service, [0.0, 0.0])
                    acc[0] += r.cpu or 0.0
                    acc[1] += r.memory or 0
            traffic: dict[str, list[float]] = {}
            for t in s.scalars(select(ServiceTraffic)):
                if now - t.at <= fresh * t.window + automation.EVERY:
                    acc = traffic.setdefault(t.service, [0.0, 0.0])
                    acc[0] += t.requests / t.window
                    acc[1] = max(acc[1], (t.latency_p95_ms or 0.0) / 1000)
            return per, traffic

        try:
            per, traffic = self.db.run(read)
        except Exception:  # noqa: BLE001 - a scrape during a database outage shows the rest
            return [cpu, mem, rps, p95]
        for name, (c, m) in sorted(per.items()):
            ns, short = split(name)
            cpu.add_metric([short, ns], c)
            mem.add_metric([short, ns], m)
        for name, (r, p) in sorted(traffic.items()):
            ns, short = split(name)
            rps.add_metric([short, ns], r)
            p95.add_metric([short, ns], p)
        return [cpu, mem, rps, p95]
