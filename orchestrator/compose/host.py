"""Host privileges: `privileged`, `cap_add`, `network_mode`, `pid` and bind-mount `volumes`.

They map one to one onto the spec fields of the same meaning. The server refuses all of them
unless its `--allow` list permits them (and an admin token applies them): the translator
only says what the file asks for, it does not judge it.

Only bind mounts of host paths exist in Dockyard: named and anonymous volumes, tmpfs and
the other mount types are warned about and skipped. A relative host path is resolved
against the compose file's directory, as `docker stack deploy` does; `~` is not expanded
(that would need the client's environment).
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from orchestrator.compose.common import Warn, boolean, extra_keys, fail, mapping

KEYS = {"privileged", "cap_add", "network_mode", "pid", "volumes"}

_MODES = {"bridge", "host", "none"}
_ONLY_BINDS = "Dockyard only bind-mounts host paths"
# short-syntax options Dockyard cannot honour: SELinux relabelling, macOS consistency, propagation, nocopy
_IGNORED_OPTIONS = {"z", "Z", "cached", "delegated", "consistent", "nocopy",
                    "shared", "rshared", "slave", "rslave", "private", "rprivate"}


def host(svc: dict, name: str, base_dir: Path, body: dict, warn: Warn) -> None:
    """Add privileged, cap_add, network_mode, pid_mode and volumes to `body`."""
    if "privileged" in svc and boolean(svc["privileged"], f"{name}.privileged"):
        body["privileged"] = True
    if svc.get("cap_add") is not None:
        if caps := _caps(svc["cap_add"], f"{name}.cap_add"):
            body["cap_add"] = caps
    if svc.get("network_mode") is not None:
        mode = svc["network_mode"]
        if mode in _MODES:
            body["network_mode"] = mode
        else:
            warn(f"{name}.network_mode: {mode!r} is not supported and was not applied; "
                 "Dockyard knows 'bridge', 'host' and 'none'")
    if svc.get("pid") is not None:
        if svc["pid"] == "host":
            body["pid_mode"] = "host"
        else:
            warn(f"{name}.pid: {svc['pid']!r} is not supported and was not applied; Dockyard knows 'host'")
    if svc.get("volumes") is not None:
        if mounts := volumes(svc["volumes"], name, base_dir, warn):
            body["volumes"] = mounts


def _caps(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise fail(where, "must be a list of capability names")
    out: list[str] = []
    for c in value:
        c = c.strip().upper().removeprefix("CAP_")
        if c not in out:
            out.append(c)
    return out


def volumes(value: Any, name: str, base_dir: Path, warn: Warn) -> list[dict]:
    where = f"{name}.volumes"
    if not isinstance(value, list):
        raise fail(where, "must be a list")
    out: list[dict] = []
    for item in value:
        if isinstance(item, str):
            mount = _short(item, where, warn)
        elif isinstance(item, dict):
            mount = _long(item, where, warn)
        else:
            raise fail(where, f"invalid volume entry {item!r}")
        if mount is not None and (source := _host_path(mount["source"], item, where, base_dir, warn)):
            out.append({**mount, "source": source})
    return out


def _kind(source: str) -> str:
    if source.startswith(("/", ".", "~")):
        return "bind"
    return "volume"


def _short(item: str, where: str, warn: Warn) -> dict | None:
    """'SOURCE:TARGET[:OPTIONS]'; a lone 'TARGET' is an anonymous volume."""
    parts = item.split(":")
    if len(parts) == 1:
        warn(f"{where}: anonymous volume {item!r} is not supported and was not applied: {_ONLY_BINDS}")
        return None
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise fail(where, f"invalid volume {item!r}: use 'HOST_PATH:TARGET' or 'HOST_PATH:TARGET:ro'")
    source, target = parts[0], parts[1]
    if _kind(source) != "bind":
        warn(f"{where}: named volume {source!r} ({item!r}) is not supported and was not applied: {_ONLY_BINDS}")
        return None
    read_only = False
    for opt in (parts[2].split(",") if len(parts) == 3 else []):
        if opt in ("ro", "rw"):
            read_only = opt == "ro"
        elif opt in _IGNORED_OPTIONS:
            warn(f"{where}: option {opt!r} in {item!r} is not supported and was ignored")
        else:
            raise fail(where, f"invalid volume option {opt!r} in {item!r}: use 'ro' or 'rw'")
    return {"source": source, "target": target, "read_only": read_only}


def _long(item: dict, where: str, warn: Warn) -> dict | None:
    """{type: bind, source, target, read_only, bind: {...}}"""
    source = item.get("source")
    kind = item.get("type") or (_kind(source) if isinstance(source, str) else "volume")
    if kind != "bind":
        what = f"named volume {source!r}" if kind == "volume" and source else f"a {kind!r} mount"
        warn(f"{where}: {what} (target {item.get('target')!r}) is not supported and was not applied: {_ONLY_BINDS}")
        return None
    extra_keys(item, {"type", "source", "target", "read_only", "bind"}, where, warn)
    for key in ("source", "target"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise fail(where, f"a bind mount needs '{key}' (a path): {item!r}")
    opts = mapping(item.get("bind"), f"{where}.bind")
    extra_keys(opts, {"create_host_path"}, f"{where}.bind", warn)
    if opts.get("create_host_path") is False:
        warn(f"{where}.bind: 'create_host_path: false' is not supported; Docker creates a missing host path")
    read_only = boolean(item.get("read_only", False), f"{where}.read_only")
    return {"source": item["source"], "target": item["target"], "read_only": read_only}


def _host_path(source: str, item: Any, where: str, base_dir: Path, warn: Warn) -> str | None:
    if source.startswith("~"):
        warn(f"{where}: {source!r} in {item!r} was not applied: '~' is not expanded; use an absolute path")
        return None
    if source.startswith("/"):
        return source
    resolved = posixpath.normpath((Path(base_dir).absolute() / source).as_posix())
    warn(f"{where}: the relative path {source!r} was resolved against the compose file's directory to "
         f"{resolved!r}, a path on the node that runs the container")
    return resolved
