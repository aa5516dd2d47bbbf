"""The Docker Engine API's database side: each call one transaction over services and instances.

Nothing here is kept in memory: every container the Engine API shows is derived from the
database on each request, so any server answers the same (several servers on PostgreSQL).
A docker-api container is a service of one replica with `source = 'docker-api'`;
`source_info` keeps what Docker users expect to survive a stop: the last container id (a
stopped container keeps its id in `docker ps -a`) and when it was created.
"""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import service_ops as ops
from orchestrator.auth import Principal
from orchestrator.dockerapi import translate
from orchestrator.dockerapi.translate import SOURCE, Refused, Row
from orchestrator.errors import Conflict, NotFound
from orchestrator.events import record
from orchestrator.models import Instance, Node, Service
from orchestrator.namespaces import DEFAULT, split
from orchestrator.spec import ServiceApply


def _display(key: str, source: str, slot: int) -> str:
    ns, name = split(key)
    base = name if ns == DEFAULT else f"{ns}.{name}"
    return base if source == SOURCE else f"{base}.{slot}"


def rows(s: Session, p: Principal) -> list[Row]:
    """Every container the principal may see: the live instances of every service, and the
    stopped docker-api containers (a service at 0 replicas)."""
    services = {svc.name: svc for svc in s.scalars(select(Service)) if p.sees(svc.namespace)}
    nodes = {n.name: n.address for n in s.execute(select(Node.name, Node.address))}
    out: list[Row] = []
    seen: set[str] = set()
    for i in s.scalars(select(Instance).where(Instance.desired_state == "running").order_by(Instance.created_at)):
        svc = services.get(i.service_name)
        if svc is None:
            continue
        seen.add(svc.name)
        out.append(_row(svc, i.container_id or i.id, i.node_name, nodes.get(i.node_name or "", ""), i.state,
                        i.exit_code, i.host_ports or [], i.created_at, i.updated_at, i.id, i.slot))
    for svc in services.values():
        info = svc.source_info or {}
        if svc.source == SOURCE and svc.name not in seen and info.get("container_id"):
            out.append(_row(svc, info["container_id"], info.get("node"), nodes.get(info.get("node") or "", ""),
                            "exited", info.get("exit_code"), [], info.get("created", svc.created_at),
                            svc.updated_at, None, 0))
    return out


def _row(svc: Service, cid: str, node: str | None, address: str, state: str, exit_code: int | None,
         host_ports: list, created: float, updated: float, instance: str | None, slot: int) -> Row:
    spec = svc.spec or {}
    return Row(container_id=cid, name=svc.name, display=_display(svc.name, svc.source, slot), node=node,
               node_address=address, image=spec.get("image", ""),
               command=list(spec.get("entrypoint") or []) + list(spec.get("command") or []),
               labels=dict(spec.get("labels") or {}), state=state, exit_code=exit_code, host_ports=host_ports,
               ports=list(spec.get("ports") or []), created=created, updated=updated, source=svc.source,
               instance=instance, restart=(spec.get("restart") or {}).get("policy", "always"),
               env=dict(spec.get("env") or {}))


def find(s: Session, p: Principal, ref: str) -> Row:
    try:
        r = translate.resolve(rows(s, p), ref)
    except Refused as exc:
        raise NotFound(str(exc)) from None
    if r is None:
        raise NotFound(f"No such container: {ref}")
    return r


def nodes_of(s: Session, names: set[str]) -> dict[str, set[str]]:
    """The nodes each named container (docker-api name, or a /v1 service's name) runs on."""
    out: dict[str, set[str]] = {}
    for key, node in s.execute(select(Instance.service_name, Instance.node_name).where(
            Instance.service_name.in_(names), Instance.desired_state == "running", Instance.node_name.is_not(None))):
        out.setdefault(key, set()).add(node)
    return out


def create(s: Session, plan: translate.CreatePlan, p: Principal, *, check: Callable[[dict], None],
           now: float, history_limit: int) -> str:
    """The service behind a new container; its key. 409 if the name is taken, as Docker does."""
    if not p.sees(DEFAULT):
        raise NotFound("the Docker API makes containers in the default namespace, which this token cannot use")
    if s.get(Service, plan.name) is not None:
        raise Conflict(f'Conflict. The container name "/{plan.name}" is already in use. '
                       "You have to remove (or rename) that container to be able to reuse that name.")
    body = dict(plan.body)
    extra = translate.affinity_constraints(plan.affinities, nodes_of(s, {a for _, a in plan.affinities}))
    if extra:
        body["placement"] = {**body.get("placement", {}), "constraints": body["placement"]["constraints"] + extra}
    svc, _ = ops.apply(s, plan.name, ServiceApply.model_validate(body), if_match=None, actor=p.label, now=now,
                       history_limit=history_limit, check=check)
    svc.source, svc.source_info = SOURCE, {"created": now}
    return svc.name


def started(s: Session, key: str) -> tuple[str | None, str]:
    """(container id, '') once the service's instance has a container; (None, why) if it cannot
    start (unschedulable, the image missing...); (None, '') while it is on its way."""
    svc = s.get(Service, key)
    if svc is None:
        return None, "the container was removed"
    for i in s.scalars(select(Instance).where(Instance.service_name == key, Instance.desired_state == "running")):
        if i.container_id:
            return i.container_id, ""
        if i.last_error and i.node_name is None:
            return None, i.last_error
        if i.last_error and i.state in ("failed", "exited", "dead"):
            return None, i.last_error
    if svc.status_message and "unschedulable" in svc.status_message.lower():
        return None, svc.status_message
    return None, ""


def remember(s: Session, key: str, cid: str, node: str | None) -> None:
    svc = s.get(Service, key)
    if svc is not None and svc.source == SOURCE:
        svc.source_info = {**(svc.source_info or {}), "container_id": cid, "node": node}


def _docker_api_service(s: Session, r: Row, verb: str) -> Service:
    svc = ops.load(s, r.name, lock=True)
    if svc.source != SOURCE:
        raise Conflict(f"container {r.container_id[:12]} is an instance of service {split(r.name)[1]!r}, made through "
                       f"Dockyard's API: {verb} it there (dockyard scale/delete {split(r.name)[1]}), not through docker")
    return svc


def stop(s: Session, p: Principal, r: Row, now: float) -> bool:
    """Scale the container's service to 0 (its agent stops and removes the container; `docker
    ps -a` keeps showing it, exited, under its last id). False if it was stopped already."""
    svc = _docker_api_service(s, r, "stop")
    if svc.replicas == 0:
        return False
    svc.source_info = {**(svc.source_info or {}), "container_id": r.container_id, "node": r.node,
                       "exit_code": r.exit_code or 0}
    ops.scale(s, svc.name, 0, if_match=None, actor=p.label, now=now)
    return True


def start(s: Session, p: Principal, r: Row, now: float) -> str:
    """'started' (scaled back to 1), 'running' (nothing to do) or 'exited': the container ran
    and exited under restart policy 'no'; the caller stops it, then starts it again."""
    svc = _docker_api_service(s, r, "start")
    if svc.replicas == 0:
        ops.scale(s, svc.name, 1, if_match=None, actor=p.label, now=now)
        return "started"
    return "exited" if translate.docker_state(r.state) in ("exited", "dead") else "running"


def replace(s: Session, p: Principal, r: Row, now: float) -> None:
    """Restart an instance of a /v1 service: the planner replaces a stopped instance."""
    svc = ops.load(s, r.name, lock=True)
    if r.instance is not None and (i := s.get(Instance, r.instance)) is not None and i.desired_state == "running":
        i.desired_state, i.updated_at = "stopped", now
    record(s, "instance_restarted", f"docker restart {r.container_id[:12]}", service=svc.name, actor=p.label, now=now)


def is_docker_api(s: Session, r: Row) -> bool:
    svc = s.get(Service, r.name)
    return svc is not None and svc.source == SOURCE


def remove(s: Session, p: Principal, r: Row, force: bool, now: float) -> set[str]:
    svc = _docker_api_service(s, r, "delete")
    if svc.replicas and translate.docker_state(r.state) == "running" and not force:
        raise Conflict(f"You cannot remove a running container {r.container_id}. "
                       "Stop the container before attempting removal or force remove")
    return ops.delete(s, svc.name, if_match=None, actor=p.label, now=now)


def gone(s: Session, r: Row) -> bool:
    """The instance's container is gone (its row goes once its agent removed the container)."""
    return r.instance is None or s.get(Instance, r.instance) is None


def exit_status(s: Session, p: Principal, ref: str) -> int | None:
    """The container's exit code once it is not running (`docker wait`), else None."""
    try:
        r = find(s, p, ref)
    except NotFound:
        return 0  # removed: what `docker wait` on a removed container ends with
    return (r.exit_code or 0) if translate.docker_state(r.state) in ("exited", "dead") else None


def node_lost(s: Session, lost: list[Instance], now: float) -> None:
    """Lost with its node: a docker-api container whose restart policy is 'no' is not started
    again elsewhere (as Docker would not restart it); it shows exited in `docker ps -a`."""
    for i in lost:
        svc = s.get(Service, i.service_name)
        if svc is None or svc.source != SOURCE or svc.replicas == 0:
            continue
        if (svc.spec.get("restart") or {}).get("policy") != "never":
            continue
        svc.source_info = {**(svc.source_info or {}), "container_id": i.container_id or i.id, "node": i.node_name,
                           "exit_code": 137}
        ops.scale(s, svc.name, 0, if_match=None, actor="dockyard", now=now)
        record(s, "container_lost", f"container {(i.container_id or i.id)[:12]} was lost with node {i.node_name}; "
               "its restart policy is 'no', so it is not started elsewhere", service=svc.name, now=now)


def info(s: Session, p: Principal) -> dict[str, Any]:
    nodes = list(s.scalars(select(Node).order_by(Node.name)))
    rs = rows(s, p)
    running = sum(translate.docker_state(r.state) == "running" for r in rs)
    return {"nodes": [(n.name, n.address, n.status, n.availability, n.cpus, n.memory, n.labels or {}) for n in nodes],
            "containers": len(rs), "running": running, "cpus": sum(n.cpus for n in nodes if n.status == "ready"),
            "memory": sum(n.memory for n in nodes if n.status == "ready")}


def node(s: Session, name: str | None) -> dict[str, Any]:
    n = s.get(Node, name) if name else None
    if n is None:
        return translate.node_view(name, "")
    return translate.node_view(n.name, n.address, n.cpus, n.memory, n.labels)
