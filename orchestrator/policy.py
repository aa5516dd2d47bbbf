"""Host-privilege policy: which escapes from the container sandbox a spec may ask for.

A service spec can ask for things that amount to root on the node: privileged mode, the
host's network or PID namespace, added Linux capabilities, bind mounts of host paths.
All of them are refused unless the server was started with an explicit allow-list
(`--allow` / DOCKYARD_ALLOW), and even then only an admin token may write a spec that uses
them. The policy is checked when a spec is written (create, a change, a rollback to it):
scaling a service whose spec is unchanged needs no check.

Allow-list entries (comma separated):
  privileged         privileged: true
  host-network       network_mode: host
  host-pid           pid_mode: host
  cap:NAME           cap_add: [NAME]   (cap:ALL allows every capability)
  bind:/host/path    volumes: bind mounts whose source is /host/path or below it
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

from orchestrator.errors import Forbidden

CAP = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")


def normalise_cap(name: str) -> str:
    n = str(name).strip().upper()
    return n[4:] if n.startswith("CAP_") else n


@dataclass(frozen=True)
class Allow:
    privileged: bool = False
    host_network: bool = False
    host_pid: bool = False
    caps: frozenset[str] = frozenset()  # "ALL" allows any
    binds: tuple[str, ...] = ()  # host path prefixes
    entries: tuple[str, ...] = field(default=())

    def allows(self, kind: str, value: str = "") -> bool:
        if kind == "privileged":
            return self.privileged
        if kind == "host-network":
            return self.host_network
        if kind == "host-pid":
            return self.host_pid
        if kind == "cap":
            return "ALL" in self.caps or value in self.caps
        if kind == "bind":
            return any(under(value, prefix) for prefix in self.binds)
        return False


def under(path: str, prefix: str) -> bool:
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def parse(items: Iterable[str] | str | None) -> Allow:
    """An Allow from the --allow entries (a list, or one comma-separated string). Raises ValueError."""
    if items is None:
        return Allow()
    if isinstance(items, str):
        items = [items]
    flat = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    privileged = host_network = host_pid = False
    caps: set[str] = set()
    binds: list[str] = []
    for e in flat:
        kind, sep, value = e.partition(":")
        kind = kind.strip().lower()
        if kind == "privileged" and not sep:
            privileged = True
        elif kind in ("host-network", "host-net") and not sep:
            host_network = True
        elif kind == "host-pid" and not sep:
            host_pid = True
        elif kind == "cap" and sep:
            cap = normalise_cap(value)
            if not CAP.fullmatch(cap):
                raise ValueError(f"--allow {e!r}: {value!r} is not a capability name (e.g. cap:NET_ADMIN)")
            caps.add(cap)
        elif kind == "bind" and sep:
            path = value.strip()
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"--allow {e!r}: a bind prefix must be an absolute host path without '..'")
            binds.append(posixpath.normpath(path))
        else:
            raise ValueError(
                f"--allow {e!r} is not understood: use privileged, host-network, host-pid, cap:NAME or bind:/path")
    return Allow(privileged, host_network, host_pid, frozenset(caps), tuple(binds), tuple(flat))


def requests(spec: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """What the spec asks for beyond the sandbox: (kind, value, field, words)."""
    out: list[tuple[str, str, str, str]] = []
    if spec.get("privileged"):
        out.append(("privileged", "", "privileged", "privileged mode"))
    if spec.get("network_mode") == "host":
        out.append(("host-network", "", "network_mode", "the host's network namespace"))
    if spec.get("pid_mode") == "host":
        out.append(("host-pid", "", "pid_mode", "the host's PID namespace"))
    for n, cap in enumerate(spec.get("cap_add") or []):
        c = normalise_cap(cap)
        out.append(("cap", c, f"cap_add.{n}", f"the capability {c}"))
    for n, v in enumerate(spec.get("volumes") or []):
        src = v.get("source", "") if isinstance(v, dict) else ""
        out.append(("bind", src, f"volumes.{n}.source", f"a bind mount of the host path {src}"))
    return out


def _flag(kind: str, value: str) -> str:
    return f"{kind}:{value}" if kind in ("cap", "bind") else kind


def check(spec: dict[str, Any], allow: Allow, role: str, who: str) -> None:
    """Raise Forbidden (403) unless every host privilege the spec asks for is allowed and `role` is admin."""
    refused, admin_only = [], []
    for kind, value, fld, words in requests(spec):
        if not allow.allows(kind, value):
            refused.append({"field": fld, "problem": f"{words} is not allowed on this server "
                                                     f"(allow it with --allow {_flag(kind, value)})"})
        elif role != "admin":
            admin_only.append({"field": fld, "problem": f"{words} is allowed for admin tokens only"})
    if refused:
        raise Forbidden(
            "the spec asks for host privileges this server does not allow: "
            + "; ".join(d["problem"] for d in refused),
            refused + admin_only, reason="policy")
    if admin_only:
        raise Forbidden(
            f"the spec asks for host privileges, which only admin tokens may use; {who} has the {role!r} role",
            admin_only, reason="policy")


@lru_cache(maxsize=16)
def _parsed(items: tuple[str, ...]) -> Allow:
    return parse(items)


def checker(settings: Any, principal: Any) -> Callable[[dict], None]:
    """The check for specs written by `principal` on a server with `settings.allow`."""
    allow = _parsed(tuple(getattr(settings, "allow", ()) or ()))
    return lambda spec: check(spec, allow, principal.role, f"token {principal.name!r}")
