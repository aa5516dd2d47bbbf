"""Service discovery over the API: a service's ready endpoints, and the gateways' routing table."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from orchestrator import service_ops as ops
from orchestrator.api.deps import State, namespace, role, state
from orchestrator.auth import Principal
from orchestrator.core import routes as core
from orchestrator.models import Instance, Node
from orchestrator.namespaces import key, split

router = APIRouter(prefix="/v1", tags=["gateway"])
# mounted at /v1 (namespace default) and at /v1/namespaces/{ns} (api/app.py)
services_router = APIRouter(tags=["gateway"])


def endpoints(s, name: str) -> dict:  # type: ignore[no-untyped-def]
    svc = ops.load(s, name)
    rows = s.execute(select(Instance.id, Instance.node_name, Instance.desired_state, Instance.state,
                            Instance.healthy, Instance.host_ports)
                     .where(Instance.service_name == name, Instance.desired_state == "running")
                     .order_by(Instance.slot, Instance.id)).all()
    nodes = {r.name: (r.address, r.status) for r in s.execute(select(Node.name, Node.address, Node.status))}
    out = []
    for r in rows:
        i = core.Endpointable(r.id, name, r.node_name, r.desired_state, r.state, r.healthy, core.host_ports(r.host_ports))
        address, status = nodes.get(r.node_name or "", ("", "down"))
        if core.is_endpoint(i, status == "ready"):
            out.append({"instance_id": r.id, "node": r.node_name, "address": address or "127.0.0.1",
                        "ports": [{"container_port": c, "host_port": h} for c, h in i.host_ports]})
    routes = [{"host": h, "path_prefix": p, "port": port, "url": f"http://{h}{'' if p == '/' else p}"}
              for h, p, port in core.keys(name, svc.spec)]
    ns, short = split(name)
    return {"service": short, "namespace": ns, "endpoints": out, "routes": routes}


@services_router.get("/services/{name}/endpoints")
def service_endpoints(name: str, st: State = Depends(state), _: Principal = Depends(role("viewer")),
                      ns: str = Depends(namespace)) -> dict:
    """The service's ready instances (node address and host ports), for clients that balance
    themselves, and the routes its spec exposes through the gateways (docs/gateway.md)."""
    return st.db.run(lambda s: endpoints(s, key(ns, name)))


@router.get("/routes")
async def routing_table(st: State = Depends(state), p: Principal = Depends(role("viewer"))) -> dict:
    """The routing table as this server hands it to the gateways, its version, and the spaces
    map (each namespace's parent) the gateways fall back through."""
    version, table, spaces = st.routes.snapshot()  # type: ignore[attr-defined]
    if p.namespaces is not None:  # a scoped token sees its namespaces' routes only
        table = [r for r in table if p.sees(r.get("namespace", "default"))]
        spaces = {n: par for n, par in spaces.items() if p.sees(n)}
    gateways = await run_in_threadpool(st.db.run, lambda s: [
        {"node": r.name, "listen": r.gateway} for r in s.execute(
            select(Node.name, Node.gateway).where(Node.gateway != "", Node.status == "ready").order_by(Node.name))])
    return {"version": version, "routes": table, "spaces": spaces, "gateways": gateways}
