"""`deploy` (replicas, resources, placement, update_config, restart_policy), `scale` and `restart`."""
from __future__ import annotations

import re
from typing import Any

from orchestrator.compose.common import Warn, extra_keys, fail, mapping, non_negative_int
from orchestrator.compose.fields import convert_memory, parse_duration

_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=)\s*(\S+)\s*$")
_RESTART = {"any": "always", "always": "always", "unless-stopped": "always",
            "on-failure": "on-failure", "none": "never", "no": "never"}


def constraints(value: Any, where: str, warn: Warn) -> list[str]:
    out: list[str] = []
    for c in value if isinstance(value, list) else [value]:
        m = _CONSTRAINT.match(c) if isinstance(c, str) else None
        if not m:
            raise fail(where, f"invalid constraint {c!r}: use 'node.labels.KEY == VALUE' or '!='")
        key, op, val = m.groups()
        if key.startswith("node.labels.") and len(key) > len("node.labels."):
            out.append(f"{key[len('node.labels.'):]}{op}{val}")
        elif key == "node.hostname":
            out.append(f"node.name{op}{val}")
        else:
            warn(f"{where}: constraint {c.strip()!r} has no Dockyard equivalent and was skipped")
    return out


def resources(res: dict, svc: dict, name: str, warn: Warn) -> dict:
    where = f"{name}.deploy.resources"
    extra_keys(res, {"limits", "reservations"}, where, warn)
    limits, reserv = mapping(res.get("limits"), f"{where}.limits"), mapping(res.get("reservations"), f"{where}.reservations")
    extra_keys(limits, {"cpus", "memory", "pids"}, f"{where}.limits", warn)
    extra_keys(reserv, {"cpus", "memory", "devices"}, f"{where}.reservations", warn)
    for key, src in (("pids", limits), ("devices", reserv)):
        if src.get(key) is not None:
            warn(f"{where}: '{key}' is not supported and was not applied")
    # Dockyard has one number per resource, both to place and to cap: the limit if there is
    # one, else the reservation, else the plain-compose keys (limit before reservation).
    sources = {
        "cpus": [(limits, "cpus", f"{where}.limits.cpus"), (reserv, "cpus", f"{where}.reservations.cpus"),
                 (svc, "cpus", f"{name}.cpus")],
        "memory": [(limits, "memory", f"{where}.limits.memory"), (reserv, "memory", f"{where}.reservations.memory"),
                   (svc, "mem_limit", f"{name}.mem_limit"), (svc, "mem_reservation", f"{name}.mem_reservation")],
    }
    out: dict = {}
    for key, chain in sources.items():
        found = [(raw, at) for src, k, at in chain if (raw := src.get(k)) is not None]
        if not found:
            continue
        values = [convert_memory(raw, at) if key == "memory" else _cpus(raw, at) for raw, at in found]
        out[key] = values[0]
        for (_, at), v in zip(found[1:], values[1:]):
            if v != values[0]:
                warn(f"{at}: not applied; {found[0][1]} is used both to place and to cap")
    swap = svc.get("memswap_limit")
    if swap is not None and str(swap) != "0" and (str(swap) == "-1" or convert_memory(swap, f"{name}.memswap_limit")
                                                 != out.get("memory")):
        warn(f"{name}.memswap_limit: not applied; a Dockyard container gets no swap beyond its memory limit")
    return out


def _cpus(raw: Any, at: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise fail(at, f"invalid cpus {raw!r}") from None


def update(uc: dict, name: str, warn: Warn) -> dict:
    where = f"{name}.deploy.update_config"
    extra_keys(uc, {"parallelism", "order", "failure_action", "monitor"}, where, warn)
    n = non_negative_int(uc.get("parallelism", 1), f"{where}.parallelism")  # Swarm's default is 1
    step: int | str = "100%" if n == 0 else n  # 0 means all at once
    order = uc.get("order", "stop-first")
    if order == "start-first":
        out: dict = {"max_surge": step, "max_unavailable": 0}
    elif order == "stop-first":
        out = {"max_surge": 0, "max_unavailable": step}
    else:
        raise fail(f"{where}.order", f"must be 'start-first' or 'stop-first', not {order!r}")
    action = uc.get("failure_action")
    if action in ("rollback", "pause"):
        out["failure_action"] = action
    elif action == "continue":
        warn(f"{where}.failure_action: 'continue' is not supported; Dockyard's default (rollback) applies")
    elif action is not None:
        raise fail(f"{where}.failure_action", f"must be rollback, pause or continue, not {action!r}")
    if "monitor" in uc:
        out["min_ready_seconds"] = parse_duration(uc["monitor"], f"{where}.monitor")
    return out


def restart(svc: dict, deploy: dict, name: str, warn: Warn) -> dict | None:
    rp = mapping(deploy.get("restart_policy"), f"{name}.deploy.restart_policy")
    if rp:
        where = f"{name}.deploy.restart_policy"
        extra_keys(rp, {"condition"}, where, warn)
        if "restart" in svc:
            warn(f"{name}: 'restart' is overridden by deploy.restart_policy")
        cond = rp.get("condition", "any")
        if cond not in ("any", "on-failure", "none"):
            raise fail(f"{where}.condition", f"must be any, on-failure or none, not {cond!r}")
        return {"policy": _RESTART[cond]}
    if "restart" not in svc:
        return None
    raw = svc["restart"]
    value = "no" if raw is False else str(raw)  # YAML 1.1 reads a bare `no` as false
    base, _, retries = value.partition(":")
    if base not in ("no", "always", "on-failure", "unless-stopped") or (retries and base != "on-failure"):
        raise fail(f"{name}.restart", f"must be no, always, on-failure[:N] or unless-stopped, not {raw!r}")
    if retries:
        warn(f"{name}.restart: the retry limit in {value!r} is not supported; restarts are unlimited with back-off")
    return {"policy": _RESTART[base]}


def deploy(svc: dict, name: str, body: dict, warn: Warn) -> None:
    """Add replicas, resources, restart, placement and update to `body`."""
    dep = mapping(svc.get("deploy"), f"{name}.deploy")
    extra_keys(dep, {"replicas", "resources", "placement", "update_config", "restart_policy",
                     "labels", "mode"}, f"{name}.deploy", warn)
    mode = dep.get("mode", "replicated")
    if mode != "replicated":
        warn(f"{name}.deploy.mode: {mode!r} is not supported; the service runs as a replicated one")
    replicas = non_negative_int(dep.get("replicas", 1), f"{name}.deploy.replicas")
    if "scale" in svc:
        scale = non_negative_int(svc["scale"], f"{name}.scale")
        if "replicas" in dep and scale != replicas:
            raise fail(f"{name}.scale", f"{scale} conflicts with deploy.replicas {replicas}")
        replicas = scale
    if res := resources(mapping(dep.get("resources"), f"{name}.deploy.resources"), svc, name, warn):
        body["resources"] = res
    if policy := restart(svc, dep, name, warn):
        body["restart"] = policy
    placement = mapping(dep.get("placement"), f"{name}.deploy.placement")
    extra_keys(placement, {"constraints", "max_replicas_per_node"}, f"{name}.deploy.placement", warn)
    pl: dict = {}
    if found := constraints(placement.get("constraints") or [], f"{name}.deploy.placement.constraints", warn):
        pl["constraints"] = found
    if "max_replicas_per_node" in placement:
        pl["max_per_node"] = placement["max_replicas_per_node"]
    if pl:
        body["placement"] = pl
    if "update_config" in dep:
        body["update"] = update(mapping(dep["update_config"], f"{name}.deploy.update_config"), name, warn)
    body["replicas"] = replicas
