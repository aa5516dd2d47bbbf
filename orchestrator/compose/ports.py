"""`ports`: the short ('[IP:]HOST:CONTAINER/PROTO', ranges) and the long syntax -> spec ports."""
from __future__ import annotations

import re
from typing import Any

from orchestrator.compose.common import Warn, extra_keys, fail


def _port_range(text: str, where: str) -> list[int]:
    m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text.strip(), re.ASCII)
    lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
    if not m or hi < lo or hi - lo >= 1024:
        raise fail(where, f"invalid port or port range {text!r}")
    return list(range(lo, hi + 1))


def _pair_ports(host: list[int] | None, targets: list[int], proto: str, where: str, warn: Warn) -> list[dict]:
    if host is not None and len(host) != len(targets):
        if len(targets) != 1:
            raise fail(where, "host and container port ranges have different lengths")
        warn(f"{where}: a host port range for one container port cannot be fixed; any free host port will do")
        host = None
    return [
        {"container_port": t, **({"host_port": host[i]} if host else {}), "protocol": proto}
        for i, t in enumerate(targets)
    ]


def _short_port(item: str, where: str, warn: Warn) -> list[dict]:
    spec, _, proto = item.strip().partition("/")
    ip = ""
    if spec.startswith("["):  # bracketed IPv6 host address
        ip, _, spec = spec[1:].partition("]")
        spec = spec.removeprefix(":")
    parts = spec.split(":")
    if len(parts) == 3 and not ip:
        ip = parts.pop(0)
    if len(parts) > 2 or not parts[-1]:
        raise fail(where, f"invalid port {item!r}: use 'CONTAINER', 'HOST:CONTAINER' or 'IP:HOST:CONTAINER'")
    if ip:
        warn(f"{where}: host address {ip} in {item!r} is ignored; Dockyard publishes on all addresses")
    host = _port_range(parts[0], where) if len(parts) == 2 and parts[0] else None
    return _pair_ports(host, _port_range(parts[-1], where), (proto or "tcp").lower(), where, warn)


def _long_port(item: dict, where: str, warn: Warn) -> list[dict]:
    extra_keys(item, {"target", "published", "protocol", "mode", "host_ip"}, where, warn)
    if "target" not in item:
        raise fail(where, f"long-syntax port {item!r} needs 'target'")
    if item.get("host_ip"):
        warn(f"{where}: host_ip {item['host_ip']} is ignored; Dockyard publishes on all addresses")
    if item.get("mode") == "ingress":
        warn(f"{where}: mode 'ingress' has no routing mesh here; the port is published on each node running a replica")
    published = item.get("published")
    host = _port_range(str(published), where) if published not in (None, "") else None
    return _pair_ports(host, _port_range(str(item["target"]), where), item.get("protocol", "tcp"), where, warn)


def ports(value: Any, name: str, warn: Warn) -> list[dict]:
    where = f"{name}.ports"
    if not isinstance(value, list):
        raise fail(where, "must be a list")
    out: list[dict] = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if isinstance(item, str):
            found = _short_port(item, where, warn)
        elif isinstance(item, dict):
            found = _long_port(item, where, warn)
        else:
            raise fail(where, f"invalid port entry {item!r}")
        for p in found:
            if p["protocol"] not in ("tcp", "udp"):
                warn(f"{where}: protocol {p['protocol']!r} is not supported; port {p['container_port']} was skipped")
            else:
                out.append(p)
    return out
