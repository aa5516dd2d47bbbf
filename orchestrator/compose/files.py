"""`secrets` and `configs`: files a service expects to find, mounted read-only.

Compose (without Swarm) mounts a `file:` secret at /run/secrets/NAME and a `file:` config at
/NAME (or the entry's `target`) as a read-only bind mount; Dockyard does the same, so the
path on the node is the file's path resolved against the compose file's directory (the
server's policy must allow bind mounts there). A secret or config that is not a file
(`external`, `environment`, `content`) is refused: ignoring it would leave a service that
cannot find what it reads (e.g. POSTGRES_PASSWORD_FILE).
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from orchestrator.compose.common import ComposeError, Warn, extra_keys, fail, mapping

KINDS = {"secrets": "/run/secrets", "configs": ""}


def definitions(compose: dict, base_dir: Path, warn: Warn) -> dict[str, dict[str, str]]:
    """{'secrets': {name: absolute host path}, 'configs': {...}} from the top level."""
    out: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        raw = compose.get(kind)
        if raw is not None and not isinstance(raw, dict):
            raise ComposeError(f"top-level '{kind}' must be a mapping of name to definition")
        found: dict[str, str] = {}
        for name, spec in (raw or {}).items():
            where = f"{kind}.{name}"
            spec = mapping(spec, where)
            extra_keys(spec, {"file", "external", "environment", "content", "name", "labels"}, where, warn)
            if not isinstance(spec.get("file"), str) or not spec["file"]:
                what = next((k for k in ("external", "environment", "content") if spec.get(k)), None)
                raise fail(where, (f"'{what}' is not supported" if what else "needs 'file'") +
                           f": Dockyard mounts {kind} from files only ('file: ./path')")
            path = spec["file"]
            if path.startswith("~"):
                raise fail(f"{where}.file", f"{path!r}: '~' is not expanded; use an absolute or relative path")
            found[str(name)] = posixpath.normpath((Path(base_dir).absolute() / path).as_posix())
        out[kind] = found
    return out


def mounts(svc: dict, name: str, defined: dict[str, dict[str, str]], warn: Warn) -> list[dict]:
    """The read-only bind mounts for the service's `secrets` and `configs` entries."""
    out: list[dict] = []
    for kind, base in KINDS.items():
        raw: Any = svc.get(kind)
        if raw is None:
            continue
        where = f"{name}.{kind}"
        if not isinstance(raw, list):
            raise fail(where, "must be a list of names or of {source, target}")
        for item in raw:
            if isinstance(item, str):
                source, target = item, None
            elif isinstance(item, dict):
                extra_keys(item, {"source", "target", "uid", "gid", "mode"}, where, warn)
                for key in ("uid", "gid", "mode"):
                    if key in item:
                        warn(f"{where}: '{key}' of {item.get('source')!r} was not applied; the file keeps its "
                             "owner and mode on the node")
                source, target = item.get("source"), item.get("target")
            else:
                raise fail(where, f"invalid entry {item!r}")
            if not isinstance(source, str) or source not in defined[kind]:
                raise fail(where, f"{source!r} is not defined under the top-level '{kind}'")
            target = target if isinstance(target, str) and target else source
            if not target.startswith("/"):
                target = posixpath.join(base or "/", target)
            out.append({"source": defined[kind][source], "target": target, "read_only": True})
    return out
