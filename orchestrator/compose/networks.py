"""`networks` (top level and per service): what Dockyard can honour, and what it must refuse.

Dockyard runs every container on its node's default bridge network. So:
- a plain network (driver bridge or overlay, no fixed addresses) is accepted: the services
  that share it can still reach each other, by container address or through published host
  ports. What is lost is said once, as a warning: networks are not separate from each other,
  and containers cannot look each other up by service name or alias (no DNS between them; HTTP
  services are reached through the node's gateway, see docs/gateway.md).
- what would leave a stack broken or less isolated than its author wrote is refused, naming
  the service or network and the key: `external` networks (a Docker network Dockyard cannot
  attach to), `internal` (isolation it cannot give), other drivers (macvlan, ipvlan ...),
  fixed `ipv4_address` / `ipv6_address`, and a network the file does not define.
"""
from __future__ import annotations

from typing import Any

from orchestrator.compose.common import ComposeError, Warn, extra_keys, fail, mapping

_DRIVERS = (None, "bridge", "overlay")
_TOP_KEYS = {"driver", "driver_opts", "external", "internal", "attachable", "ipam", "labels", "name", "enable_ipv6"}


def definitions(compose: dict, warn: Warn) -> set[str]:
    """The names of the top-level networks, each checked; 'default' always exists."""
    raw = compose.get("networks")
    if raw is not None and not isinstance(raw, dict):
        raise ComposeError("top-level 'networks' must be a mapping of network name to definition")
    for net, spec in (raw or {}).items():
        where = f"networks.{net}"
        spec = mapping(spec, where)
        extra_keys(spec, _TOP_KEYS, where, warn)
        if spec.get("external"):
            raise fail(f"{where}.external", "an external network is an existing Docker network, which Dockyard "
                       "cannot attach its containers to; remove the network (every container runs on its node's "
                       "default bridge network)")
        if spec.get("internal"):
            raise fail(f"{where}.internal", "Dockyard cannot cut a network off from the outside: its containers "
                       "run on the node's default bridge network; remove 'internal' to accept that")
        if spec.get("driver") not in _DRIVERS:
            raise fail(f"{where}.driver", f"driver {spec['driver']!r} is not supported: Dockyard runs containers on "
                       "the node's default bridge network (bridge and overlay networks are accepted as that)")
        for key in ("driver_opts", "ipam", "enable_ipv6", "attachable"):
            if spec.get(key):
                warn(f"{where}.{key} was not applied: containers run on the node's default bridge network")
    return {"default", *(raw or {})}


def attach(svc: dict, name: str, defined: set[str], warn: Warn) -> list[str]:
    """The networks `svc` asks for (validated); refuses fixed addresses and unknown networks."""
    where = f"{name}.networks"
    raw: Any = svc.get("networks")
    if raw is None:
        return []
    if isinstance(raw, list):
        if not all(isinstance(n, str) for n in raw):
            raise fail(where, "must be a list of network names or a mapping of network name to options")
        items = {n: None for n in raw}
    elif isinstance(raw, dict):
        items = raw
    else:
        raise fail(where, "must be a list of network names or a mapping of network name to options")
    for net, opts in items.items():
        if not isinstance(net, str) or net not in defined:
            raise fail(where, f"network {net!r} is not defined under the top-level 'networks'")
        opts = mapping(opts, f"{where}.{net}")
        extra_keys(opts, {"aliases", "ipv4_address", "ipv6_address", "priority", "link_local_ips"}, f"{where}.{net}", warn)
        for key in ("ipv4_address", "ipv6_address", "link_local_ips"):
            if opts.get(key):
                raise fail(f"{where}.{net}.{key}", "fixed container addresses are not supported: Docker gives each "
                           "container an address on its node's bridge network")
        if opts.get("aliases"):
            warn(f"{where}.{net}.aliases: not applied; containers cannot look each other up by name or alias yet")
    return list(items)
