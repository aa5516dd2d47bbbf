"""The gateways' routing table, decided from plain data: which (host, path prefix) goes to
which service, and which of its instances are ready endpoints. Pure: no database, no clock.

The server computes the table (orchestrator/routebook.py) and hands it to every agent with
its sync; each node's gateway (agent/gateway/) matches requests against it. An instance is an
endpoint only while it should run (desired running), runs, is not unhealthy, and its node is
ready: an instance about to be stopped leaves every route first (the ordered drain).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from orchestrator.namespaces import split

RUNNING = ("running", "healthy")


_split = split  # (namespace, name) of a service key: `web`, `alice/web`


def default_host(service: str) -> str:
    """`web` -> `web.localhost`: curl and browsers resolve `*.localhost` to loopback without DNS.
    The same in every namespace: a space's `web` overrides its parent's under the same host."""
    return f"{service}.localhost"


def keys(service: str, spec: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(host, path_prefix, port) of each route a service's spec declares (service: its key)."""
    out = []
    for e in spec.get("expose") or []:
        out.append((e.get("host") or default_host(_split(service)[1]), e.get("path_prefix") or "/", int(e["port"])))
    return out


def conflict(service: str, spec: Mapping[str, Any], others: Mapping[str, Mapping[str, Any]],
             parents: Mapping[str, str | None] | None = None) -> str | None:
    """Why `service` may not take its routes, or None. `others`: every other service's spec, by
    key; `parents`: each namespace's parent (None: a root; absent: every namespace a root).

    A (host, path prefix) belongs to one service in a namespace, and to one service among all
    root namespaces (a request that names no space goes to the roots). A space may expose what
    its ancestors or its siblings expose: that is how it overrides them for its own requests."""
    mine = {(h, p) for h, p, _ in keys(service, spec)}
    if not mine:
        return None
    parents = parents or {}
    my_ns = _split(service)[0]
    for other in sorted(others):
        if other == service:
            continue
        ns = _split(other)[0]
        if ns != my_ns and (parents.get(my_ns) is not None or parents.get(ns) is not None):
            continue
        for h, p, _ in keys(other, others[other]):
            if (h, p) in mine:
                where = "" if ns == "default" and my_ns == "default" else f" in namespace {ns}"
                return f"host {h} with path_prefix {p} is already exposed by service {_split(other)[1]!r}{where}"
    return None


@dataclass(frozen=True)
class Endpointable:
    """What the table needs of an instance (a row of the instances table)."""

    id: str
    service: str
    node: str | None
    desired_state: str
    state: str
    healthy: bool | None
    host_ports: tuple[tuple[int, int], ...]  # (container port, host port), tcp only


def host_ports(raw: Iterable[Mapping[str, Any]] | None) -> tuple[tuple[int, int], ...]:
    out = []
    for p in raw or ():
        if (p.get("protocol") or "tcp") == "tcp" and p.get("host_port"):
            out.append((int(p["container_port"]), int(p["host_port"])))
    return tuple(sorted(out))


def is_endpoint(i: Endpointable, node_ready: bool) -> bool:
    return (i.desired_state == "running" and i.state in RUNNING and i.healthy is not False
            and i.node is not None and node_ready)


def table(services: Mapping[str, Mapping[str, Any]], instances: Iterable[Endpointable],
          nodes: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """The routing table in its wire form, sorted (so equal tables have equal digests).

    services: name -> spec; nodes: name -> (address, status). A node without an address is
    reached on 127.0.0.1 (agents on one host)."""
    by_service: dict[str, list[Endpointable]] = {}
    for i in instances:
        by_service.setdefault(i.service, []).append(i)
    out = []
    for name in sorted(services):
        for host, prefix, port in keys(name, services[name]):
            endpoints = []
            for i in by_service.get(name, ()):
                address, status = nodes.get(i.node or "", ("", "down"))
                hp = port if services[name].get("network_mode") == "host" else \
                    next((h for c, h in i.host_ports if c == port), None)
                if hp is None or not is_endpoint(i, status == "ready"):
                    continue
                endpoints.append({"instance_id": i.id, "node": i.node, "address": address or "127.0.0.1",
                                  "port": hp})
            endpoints.sort(key=lambda e: e["instance_id"])
            ns, short = _split(name)
            out.append({"service": short, "namespace": ns, "host": host, "path_prefix": prefix,
                        "port": port, "endpoints": endpoints})
    out.sort(key=lambda r: (r["host"], r["path_prefix"], r["namespace"], r["service"]))
    return out


def digest(routes: list[dict[str, Any]], spaces: Mapping[str, str | None] | None = None) -> str:
    """A short content hash of a table (and the spaces map): equal on every server that
    computed the same."""
    blob = json.dumps([routes, dict(spaces or {})], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def endpoints_of(routes: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    """Ready endpoints of one service (by key), once each (a service exposed twice lists them twice)."""
    ns, short = _split(service)
    seen, out = set(), []
    for r in routes:
        if r["service"] != short or r.get("namespace", "default") != ns:
            continue
        for e in r["endpoints"]:
            key = (e["instance_id"], r["port"])
            if key not in seen:
                seen.add(key)
                out.append({**e, "container_port": r["port"]})
    return out
