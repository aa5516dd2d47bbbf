"""Scalar fields: durations, sizes, commands, 'K=V' pairs and the environment (env_file + environment)."""
from __future__ import annotations

import re
import shlex
from fractions import Fraction
from pathlib import Path
from typing import Any

from orchestrator.compose.common import Warn, fail, str_value

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a Go-style duration ('1m30s', '500ms'); a bare number is seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    text = str(value).strip() if isinstance(value, str) else ""
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise fail(where, f"invalid duration {value!r}: use forms like '30s', '1m30s', '500ms'")
    return sum(float(n) * _DURATION_UNIT[u] for n, u in parts)


# go-units RAMInBytes (what Docker and Compose use for mem_limit and deploy.resources): every unit is
# binary and case-insensitive, with an optional 'i' and 'b' ('512M' = '512m' = '512MiB' = 512 * 2^20).
_COMPOSE_MEM = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", re.I)
_MAX_BYTES = 2**63 - 1


def convert_memory(value: Any, where: str) -> int:
    """A Compose size ('128m', '1g', '1.5GiB', 1073741824) -> bytes, by Docker's rules (binary units)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
        n = int(value)
    else:
        m = _COMPOSE_MEM.fullmatch(value.strip()) if isinstance(value, str) and len(value) <= 64 else None
        if not m:
            raise fail(where, f"invalid size {value!r}: use bytes or a number with b, k, m, g, t or p "
                              "(binary, as in Docker: '128m' is 128 MiB)")
        unit = (m.group(2) or "").lower()
        # exact arithmetic, then truncated like Docker's int64(float * unit)
        n = int(Fraction(m.group(1)) * 1024 ** (" kmgtp".index(unit) if unit else 0))
    if n > _MAX_BYTES:
        raise fail(where, f"size {value!r} is too large: at most {_MAX_BYTES} bytes")
    return n


def command(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise fail(where, f"cannot split {value!r}: {e}") from None
    if isinstance(value, list) and all(isinstance(x, (str, int, float)) for x in value):
        return [str(x) for x in value]
    raise fail(where, "must be a string or a list of strings")


def pairs(value: Any, where: str, warn: Warn, *, bare_ok: bool, environ: dict[str, str] | None = None) -> dict[str, str]:
    """A 'K=V' list or a mapping -> dict. A bare 'K' (or 'K:' with no value) is '' for labels;
    for environment Compose takes it from the environment (`environ`), and skips it when unset."""
    out: dict[str, str] = {}
    if value is None:  # an empty `environment:` key
        return out
    if isinstance(value, dict):
        items = [(str(k), v, v is None) for k, v in value.items()]
    elif isinstance(value, list):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise fail(where, f"list items must be 'KEY=VALUE' strings, got {item!r}")
            key, sep, val = item.partition("=")
            items.append((key.strip(), val, not sep))
    else:
        raise fail(where, "must be a list of 'KEY=VALUE' strings or a mapping")
    for key, val, bare in items:
        if bare and not bare_ok:
            if environ is not None and key in environ:
                out[key] = environ[key]
            else:
                warn(f"{where}: '{key}' has no value and is not set in the environment or .env; it was skipped")
            continue
        out[key] = str_value(val, f"{where}.{key}")
    return out


def read_env_file(path: Path, where: str, warn: Warn) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise fail(where, f"cannot read {path}: {e.strerror or e}") from None
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, val = line.partition("=")
        key, val = key.strip(), val.strip()
        if not sep:
            warn(f"{where}: {path.name} line {n}: '{key}' has no value and was skipped")
            continue
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            quote, val = val[0], val[1:-1]  # quotes delimit the value, as in Compose's dotenv
            if quote == '"':  # only double quotes process escapes
                val = val.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in val:
            val = val.split(" #", 1)[0].rstrip()  # inline comment after an unquoted value
        out[key] = val
    return out


def env(svc: dict, name: str, base_dir: Path, warn: Warn, environ: dict[str, str] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    files = svc.get("env_file")
    if files is not None and not isinstance(files, (str, dict, list)):
        raise fail(f"{name}.env_file", "must be a path, a list of paths or {path, required}")
    for entry in [files] if isinstance(files, (str, dict)) else (files or []):
        required = True
        if isinstance(entry, dict):  # long syntax {path, required}
            required = entry.get("required", True) is not False
            entry = entry.get("path")
        if not isinstance(entry, str):
            raise fail(f"{name}.env_file", "must be a path, a list of paths or {path, required}")
        path = base_dir / entry
        if not required and not path.exists():
            continue
        out.update(read_env_file(path, f"{name}.env_file", warn))
    if "environment" in svc:  # environment wins over env_file, as in Compose
        out.update(pairs(svc["environment"], f"{name}.environment", warn, bare_ok=False, environ=environ or {}))
    return out
