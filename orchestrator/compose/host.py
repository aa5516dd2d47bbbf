"""Host privileges: `privileged`, `cap_add`, `network_mode`, `pid` and bind-mount `volumes`.

They map one to one onto the spec fields of the same meaning. The server refuses all of them
unless its `--allow` list permits them (and an admin token applies them): the translator
only says what the file asks for, it does not judge it.

Only bind mounts of host paths exist in Dockyard. A named volume is therefore refused (it
usually holds data that must outlive the container), unless a volume root is given
(`compose up --volume-root DIR`): then volume NAME becomes the bind mount DIR/STACK/NAME, a
directory on whichever node runs the container (like a Swarm local volume; the server's
policy must allow `bind:DIR`). External volumes and volume drivers are refused either way.
Anonymous volumes and tmpfs mounts are warned about and skipped: their data would not outlive
the container anyway. A relative host path is resolved against the compose file's directory,
as `docker stack deploy` does; `~` is not expanded (that would need the client's environment).
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from dataclasses import dataclass, field

from orchestrator.compose.common import ComposeError, Warn, boolean, extra_keys, fail, mapping

KEYS = {"privileged", "cap_add", "network_mode", "pid", "volumes"}


@dataclass(frozen=True)
class Volumes:
    """What a service's named volumes resolve against: the top-level definitions and the root."""

    stack: str = "default"
    root: str | None = None
    defined: dict[str, str] = field(default_factory=dict)  # compose name -> directory name


def definitions(compose: dict, stack: str, root: str | None, warn: Warn) -> Volumes:
    raw = compose.get("volumes")
    if raw is not None and not isinstance(raw, dict):
        raise ComposeError("top-level 'volumes' must be a mapping of volume name to definition")
    if root is not None and (not root.startswith("/") or ".." in root.split("/")):
        raise ComposeError(f"the volume root {root!r} must be an absolute path without '..'")
    defined: dict[str, str] = {}
    for vol, spec in (raw or {}).items():
        where = f"volumes.{vol}"
        spec = mapping(spec, where)
        extra_keys(spec, {"external", "driver", "driver_opts", "name", "labels"}, where, warn)
        if spec.get("external"):
            raise fail(f"{where}.external", "an external volume is an existing Docker volume, which Dockyard cannot "
                       "mount; use a bind mount of a host path ('/srv/data:/target')")
        if spec.get("driver") not in (None, "local") or spec.get("driver_opts"):
            raise fail(f"{where}.driver", "volume drivers and driver options are not supported; use a bind mount "
                       "of a host path (e.g. an NFS mount on the node)")
        dirname = str(spec.get("name") or vol)
        if not dirname or "/" in dirname or dirname in (".", ".."):
            raise fail(f"{where}.name", f"{dirname!r} cannot name a directory")
        defined[str(vol)] = dirname
    return Volumes(stack, root.rstrip("/") or "/" if root else None, defined)

_MODES = {"bridge", "host", "none"}
_ONLY_BINDS = "Dockyard only bind-mounts host paths"
# short-syntax options Dockyard cannot honour: SELinux relabelling, macOS consistency, propagation, nocopy
_IGNORED_OPTIONS = {"z", "Z", "cached", "delegated", "consistent", "nocopy",
                    "shared", "rshared", "slave", "rslave", "private", "rprivate"}


def host(svc: dict, name: str, base_dir: Path, body: dict, warn: Warn, vols: Volumes = Volumes()) -> None:
    """Add privileged, cap_add, network_mode, pid_mode and volumes to `body`."""
    if "privileged" in svc and boolean(svc["privileged"], f"{name}.privileged"):
        body["privileged"] = True
    if svc.get("cap_add") is not None:
        if caps := _caps(svc["cap_add"], f"{name}.cap_add"):
            body["cap_add"] = caps
    if svc.get("network_mode") is not None:
        mode = svc["network_mode"]
        if not isinstance(mode, str):
            raise fail(f"{name}.network_mode", "must be 'bridge', 'host' or 'none'")
        if mode in _MODES:
            body["network_mode"] = mode
        elif mode.startswith(("service:", "container:")):
            raise fail(f"{name}.network_mode", f"{mode!r} shares another container's network namespace, which "
                       "Dockyard cannot do (it places each service's containers on their own); "
                       "Dockyard knows 'bridge', 'host' and 'none'")
        else:
            raise fail(f"{name}.network_mode", f"{mode!r} is not supported; Dockyard knows 'bridge', 'host' and 'none'")
    if svc.get("pid") is not None:
        if svc["pid"] == "host":
            body["pid_mode"] = "host"
        else:
            warn(f"{name}.pid: {svc['pid']!r} is not supported and was not applied; Dockyard knows 'host'")
    if svc.get("volumes") is not None:
        if mounts := volumes(svc["volumes"], name, base_dir, warn, vols):
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


def volumes(value: Any, name: str, base_dir: Path, warn: Warn, vols: Volumes = Volumes()) -> list[dict]:
    where = f"{name}.volumes"
    if not isinstance(value, list):
        raise fail(where, "must be a list")
    out: list[dict] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            mount = _short(item, where, warn)
        elif isinstance(item, dict):
            mount = _long(item, where, warn)
        else:
            raise fail(where, f"invalid volume entry {item!r}")
        if mount is None:
            continue
        if mount.pop("named", False):
            out.append({**mount, "source": _named(mount["source"], item, f"{where}[{i}]", vols)})
        elif source := _host_path(mount["source"], item, where, base_dir, warn):
            out.append({**mount, "source": source})
    return out


def _named(vol: str, item: Any, where: str, vols: Volumes) -> str:
    if vol not in vols.defined:
        raise fail(where, f"named volume {vol!r} is not defined under the top-level 'volumes'")
    if vols.root is None:
        raise fail(where, f"named volume {vol!r} ({item!r}): Dockyard only bind-mounts host paths, and a named "
                   "volume's data must outlive the container; pass --volume-root DIR to bind it to "
                   f"DIR/{vols.stack}/{vols.defined[vol]} on the node (the server must --allow bind:DIR), "
                   "or write a host path ('/srv/data:/target')")
    return posixpath.join(vols.root, vols.stack, vols.defined[vol])


def _kind(source: str) -> str:
    if source.startswith(("/", ".", "~")):
        return "bind"
    return "volume"


def _short(item: str, where: str, warn: Warn) -> dict | None:
    """'SOURCE:TARGET[:OPTIONS]'; a lone 'TARGET' is an anonymous volume."""
    parts = item.split(":")
    if len(parts) == 1:
        warn(f"{where}: anonymous volume {item!r} is not supported and was not applied: {_ONLY_BINDS}; "
             "its data would not outlive the container anyway")
        return None
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise fail(where, f"invalid volume {item!r}: use 'HOST_PATH:TARGET' or 'HOST_PATH:TARGET:ro'")
    source, target = parts[0], parts[1]
    read_only = False
    for opt in (parts[2].split(",") if len(parts) == 3 else []):
        if opt in ("ro", "rw"):
            read_only = opt == "ro"
        elif opt in _IGNORED_OPTIONS:
            warn(f"{where}: option {opt!r} in {item!r} is not supported and was ignored")
        else:
            raise fail(where, f"invalid volume option {opt!r} in {item!r}: use 'ro' or 'rw'")
    return {"source": source, "target": target, "read_only": read_only, "named": _kind(source) != "bind"}


def _long(item: dict, where: str, warn: Warn) -> dict | None:
    """{type: bind, source, target, read_only, bind: {...}}"""
    source = item.get("source")
    kind = item.get("type") or (_kind(source) if isinstance(source, str) else "volume")
    if kind == "volume" and source:
        extra_keys(item, {"type", "source", "target", "read_only", "volume"}, where, warn)
        if not isinstance(item.get("target"), str) or not item["target"]:
            raise fail(where, f"a volume mount needs 'target' (a path): {item!r}")
        if mapping(item.get("volume"), f"{where}.volume").get("nocopy"):
            warn(f"{where}.volume.nocopy: not applied; a bind mount never copies the image's files")
        read_only = boolean(item.get("read_only", False), f"{where}.read_only")
        return {"source": source, "target": item["target"], "read_only": read_only, "named": True}
    if kind != "bind":
        what = "an anonymous volume" if kind == "volume" else f"a {kind!r} mount"
        warn(f"{where}: {what} (target {item.get('target')!r}) is not supported and was not applied: {_ONLY_BINDS}; "
             "its data would not outlive the container anyway")
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
