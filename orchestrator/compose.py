"""Translate a Docker Compose file into Dockyard service bodies.

`translate()` turns a parsed compose mapping into one `PUT /v1/services/{name}` body per
service (each checked against `ServiceApply`) plus a list of warnings, one human line per
key that Dockyard cannot honour. Nothing is dropped silently: a key is either applied,
warned about, or refused with a `ComposeError` naming the service and key. The only I/O
is reading `env_file` files relative to `base_dir`; `load()` adds reading the YAML.

Semantics follow Compose/Swarm where Dockyard has an equivalent:
- Compose sizes ('512M', '1g') are binary, Dockyard's bare 'M' is decimal, so sizes are
  rewritten with an explicit binary unit ('512Mi').
- Swarm's update `parallelism` + `order` become max_surge / max_unavailable.
- Health check timings default to Docker's (30s interval and timeout, 3 retries), not
  Dockyard's, because that is what the compose author saw run.
- Variables (`${VAR}`) are not interpolated: the module must not depend on os.environ.
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from orchestrator.spec import DNS_LABEL, ServiceApply

__all__ = ["ComposeError", "Translation", "translate", "load", "stack_name", "parse_duration", "convert_memory"]

Warn = Callable[[str], None]


class ComposeError(ValueError):
    """The compose input is malformed or cannot be expressed; the message says where."""


@dataclass
class Translation:
    services: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# Top-level keys with a meaning here; 'name' is the project name, i.e. the stack.
_TOP_KNOWN = {"services", "name"}
_SERVICE_KNOWN = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "deploy",
    "scale", "healthcheck", "labels", "restart", "stop_grace_period", "init", "pull_policy",
    "cpus", "mem_limit",
}


def _fail(where: str, msg: str) -> ComposeError:
    return ComposeError(f"{where}: {msg}")


# ---------------------------------------------------------------- scalar helpers

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
        raise _fail(where, f"invalid duration {value!r}: use forms like '30s', '1m30s', '500ms'")
    return sum(float(n) * _DURATION_UNIT[u] for n, u in parts)


# go-units RAMInBytes: every unit is binary, with optional 'i' and 'b' ('512M', '1gb', '2GiB').
_COMPOSE_MEM = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", re.I)


def convert_memory(value: Any, where: str) -> int | str:
    """Compose size -> Dockyard size with the same number of bytes ('512M' -> '512Mi')."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    m = _COMPOSE_MEM.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if not m:
        raise _fail(where, f"invalid size {value!r}: use bytes or forms like '512M', '1G'")
    number, unit = m.group(1), (m.group(2) or "").lower()
    if not unit:
        return int(float(number))
    if unit in "kmg":
        return f"{number}{unit.upper()}i"
    return int(float(number) * 1024 ** "kmgtp".index(unit) * 1024)  # t, p: no Dockyard unit


def _str_value(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # Compose writes booleans the way YAML spells them
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _fail(where, f"value must be a string or a number, not {type(value).__name__}")


def _pairs(value: Any, where: str, warn: Warn, *, bare_ok: bool) -> dict[str, str]:
    """A 'K=V' list or a mapping -> dict. A bare 'K' is '' for labels; for environment
    Compose would read it from the host environment, which we refuse to do, so it is skipped."""
    out: dict[str, str] = {}
    if value is None:  # an empty `environment:` key
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out[str(k)] = _str_value(v, f"{where}.{k}")
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise _fail(where, f"list items must be 'KEY=VALUE' strings, got {item!r}")
            key, sep, val = item.partition("=")
            if not sep and not bare_ok:
                warn(f"{where}: '{key}' has no value (Compose would take it from the host environment); it was skipped")
                continue
            out[key.strip()] = val
    else:
        raise _fail(where, "must be a list of 'KEY=VALUE' strings or a mapping")
    return out


def _command(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise _fail(where, f"cannot split {value!r}: {e}") from None
    if isinstance(value, list) and all(isinstance(x, (str, int, float)) for x in value):
        return [str(x) for x in value]
    raise _fail(where, "must be a string or a list of strings")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, f"must be a mapping, not {type(value).__name__}")
    return value


def _extra_keys(d: dict, known: set[str], where: str, warn: Warn) -> None:
    for key in d:
        if key not in known and not str(key).startswith("x-"):
            warn(f"{where}: '{key}' is not supported and was not applied")


def _replicas(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(where, f"must be a non-negative integer, not {value!r}")
    return value


# ---------------------------------------------------------------- environment

def _read_env_file(path: Path, where: str, warn: Warn) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _fail(where, f"cannot read {path}: {e.strerror or e}") from None
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


def _env(svc: dict, name: str, base_dir: Path, warn: Warn) -> dict[str, str]:
    env: dict[str, str] = {}
    files = svc.get("env_file")
    if files is not None and not isinstance(files, (str, dict, list)):
        raise _fail(f"{name}.env_file", "must be a path, a list of paths or {path, required}")
    for entry in [files] if isinstance(files, (str, dict)) else (files or []):
        required = True
        if isinstance(entry, dict):  # long syntax {path, required}
            required = entry.get("required", True) is not False
            entry = entry.get("path")
        if not isinstance(entry, str):
            raise _fail(f"{name}.env_file", "must be a path, a list of paths or {path, required}")
        path = base_dir / entry
        if not required and not path.exists():
            continue
        env.update(_read_env_file(path, f"{name}.env_file", warn))
    if "environment" in svc:  # environment wins over env_file, as in Compose
        env.update(_pairs(svc["environment"], f"{name}.environment", warn, bare_ok=False))
    return env


# ---------------------------------------------------------------- ports

def _port_range(text: str, where: str) -> list[int]:
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
    if not m or hi < lo or hi - lo >= 1024:
        raise _fail(where, f"invalid port or port range {text!r}")
    return list(range(lo, hi + 1))


def _pair_ports(host: list[int] | None, targets: list[int], proto: str, where: str, warn: Warn) -> list[dict]:
    if host is not None and len(host) != len(targets):
        if len(targets) != 1:
            raise _fail(where, "host and container port ranges have different lengths")
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
        raise _fail(where, f"invalid port {item!r}: use 'CONTAINER', 'HOST:CONTAINER' or 'IP:HOST:CONTAINER'")
    if ip:
        warn(f"{where}: host address {ip} in {item!r} is ignored; Dockyard publishes on all addresses")
    host = _port_range(parts[0], where) if len(parts) == 2 and parts[0] else None
    return _pair_ports(host, _port_range(parts[-1], where), (proto or "tcp").lower(), where, warn)


def _long_port(item: dict, where: str, warn: Warn) -> list[dict]:
    _extra_keys(item, {"target", "published", "protocol", "mode", "host_ip"}, where, warn)
    if "target" not in item:
        raise _fail(where, f"long-syntax port {item!r} needs 'target'")
    if item.get("host_ip"):
        warn(f"{where}: host_ip {item['host_ip']} is ignored; Dockyard publishes on all addresses")
    if item.get("mode") == "ingress":
        warn(f"{where}: mode 'ingress' has no routing mesh here; the port is published on each node running a replica")
    published = item.get("published")
    host = _port_range(str(published), where) if published not in (None, "") else None
    return _pair_ports(host, _port_range(str(item["target"]), where), item.get("protocol", "tcp"), where, warn)


def _ports(value: Any, name: str, warn: Warn) -> list[dict]:
    where = f"{name}.ports"
    if not isinstance(value, list):
        raise _fail(where, "must be a list")
    out: list[dict] = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if isinstance(item, str):
            ports = _short_port(item, where, warn)
        elif isinstance(item, dict):
            ports = _long_port(item, where, warn)
        else:
            raise _fail(where, f"invalid port entry {item!r}")
        for p in ports:
            if p["protocol"] not in ("tcp", "udp"):
                warn(f"{where}: protocol {p['protocol']!r} is not supported; port {p['container_port']} was skipped")
            else:
                out.append(p)
    return out


# ---------------------------------------------------------------- healthcheck

def _health(value: Any, name: str, warn: Warn) -> dict | None:
    where = f"{name}.healthcheck"
    hc = _mapping(value, where)
    if hc.get("disable") is True:
        return None
    _extra_keys(hc, {"test", "interval", "timeout", "retries", "start_period", "disable"}, where, warn)
    test = hc.get("test")
    if test is None:
        warn(f"{where}: no 'test' means the image's HEALTHCHECK, which Dockyard does not read; no health check was applied")
        return None
    if isinstance(test, str):  # a plain string runs in a shell, like CMD-SHELL
        command = ["/bin/sh", "-c", test]
    elif isinstance(test, list) and test and all(isinstance(x, str) for x in test):
        kind, args = test[0], test[1:]
        if kind == "NONE":
            return None
        if kind == "CMD" and args:
            command = args
        elif kind == "CMD-SHELL" and args:
            command = ["/bin/sh", "-c", " ".join(args)]
        else:
            raise _fail(f"{where}.test", "a list must be ['CMD', arg, ...], ['CMD-SHELL', 'command'] or ['NONE']")
    else:
        raise _fail(f"{where}.test", "must be a string or a list of strings")
    # Docker's defaults, not Dockyard's: the compose author tuned against these.
    return {
        "type": "exec", "command": command,
        "interval": parse_duration(hc.get("interval", "30s"), f"{where}.interval"),
        "timeout": parse_duration(hc.get("timeout", "30s"), f"{where}.timeout"),
        "retries": hc.get("retries", 3),
        "start_period": parse_duration(hc.get("start_period", 0), f"{where}.start_period"),
    }


# ---------------------------------------------------------------- deploy

_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=)\s*(\S+)\s*$")
_RESTART = {"any": "always", "always": "always", "unless-stopped": "always",
            "on-failure": "on-failure", "none": "never", "no": "never"}


def _constraints(value: Any, where: str, warn: Warn) -> list[str]:
    out: list[str] = []
    for c in value if isinstance(value, list) else [value]:
        m = _CONSTRAINT.match(c) if isinstance(c, str) else None
        if not m:
            raise _fail(where, f"invalid constraint {c!r}: use 'node.labels.KEY == VALUE' or '!='")
        key, op, val = m.groups()
        if key.startswith("node.labels.") and len(key) > len("node.labels."):
            out.append(f"{key[len('node.labels.'):]}{op}{val}")
        elif key == "node.hostname":
            out.append(f"node.name{op}{val}")
        else:
            warn(f"{where}: constraint {c.strip()!r} has no Dockyard equivalent and was skipped")
    return out


def _resources(res: dict, svc: dict, name: str, warn: Warn) -> dict:
    where = f"{name}.deploy.resources"
    _extra_keys(res, {"limits", "reservations"}, where, warn)
    limits, reserv = _mapping(res.get("limits"), f"{where}.limits"), _mapping(res.get("reservations"), f"{where}.reservations")
    _extra_keys(limits, {"cpus", "memory"}, f"{where}.limits", warn)
    _extra_keys(reserv, {"cpus", "memory"}, f"{where}.reservations", warn)
    # Dockyard has one number per resource, both to place and to cap: the limit if
    # there is one, else the reservation, else the plain-compose 'cpus' / 'mem_limit'.
    out: dict = {}
    for key, legacy in (("cpus", "cpus"), ("memory", "mem_limit")):
        for src, label in ((limits, "limits"), (reserv, "reservations"), (svc, None)):
            raw = src.get(legacy if label is None else key)
            if raw is None:
                continue
            at = f"{name}.{legacy}" if label is None else f"{where}.{label}.{key}"
            if key == "memory":
                out[key] = convert_memory(raw, at)
            else:
                try:
                    out[key] = float(raw)
                except (TypeError, ValueError):
                    raise _fail(at, f"invalid cpus {raw!r}") from None
            if label == "limits" and key in reserv and reserv[key] != limits[key]:
                warn(f"{where}.reservations.{key}: ignored; the limit is used both to place and to cap")
            if label is not None and svc.get(legacy) is not None:
                warn(f"{name}: '{legacy}' is overridden by deploy.resources")
            break
    return out


def _update(uc: dict, name: str, warn: Warn) -> dict:
    where = f"{name}.deploy.update_config"
    _extra_keys(uc, {"parallelism", "order", "failure_action", "monitor"}, where, warn)
    n = _replicas(uc.get("parallelism", 1), f"{where}.parallelism")  # Swarm's default is 1
    step: int | str = "100%" if n == 0 else n  # 0 means all at once
    order = uc.get("order", "stop-first")
    if order == "start-first":
        out: dict = {"max_surge": step, "max_unavailable": 0}
    elif order == "stop-first":
        out = {"max_surge": 0, "max_unavailable": step}
    else:
        raise _fail(f"{where}.order", f"must be 'start-first' or 'stop-first', not {order!r}")
    action = uc.get("failure_action")
    if action in ("rollback", "pause"):
        out["failure_action"] = action
    elif action == "continue":
        warn(f"{where}.failure_action: 'continue' is not supported; Dockyard's default (rollback) applies")
    elif action is not None:
        raise _fail(f"{where}.failure_action", f"must be rollback, pause or continue, not {action!r}")
    if "monitor" in uc:
        out["min_ready_seconds"] = parse_duration(uc["monitor"], f"{where}.monitor")
    return out


def _restart(svc: dict, deploy: dict, name: str, warn: Warn) -> dict | None:
    rp = _mapping(deploy.get("restart_policy"), f"{name}.deploy.restart_policy")
    if rp:
        where = f"{name}.deploy.restart_policy"
        _extra_keys(rp, {"condition"}, where, warn)
        if "restart" in svc:
            warn(f"{name}: 'restart' is overridden by deploy.restart_policy")
        cond = rp.get("condition", "any")
        if cond not in ("any", "on-failure", "none"):
            raise _fail(f"{where}.condition", f"must be any, on-failure or none, not {cond!r}")
        return {"policy": _RESTART[cond]}
    if "restart" not in svc:
        return None
    raw = svc["restart"]
    value = "no" if raw is False else str(raw)  # YAML 1.1 reads a bare `no` as false
    base, _, retries = value.partition(":")
    if base not in ("no", "always", "on-failure", "unless-stopped") or (retries and base != "on-failure"):
        raise _fail(f"{name}.restart", f"must be no, always, on-failure[:N] or unless-stopped, not {raw!r}")
    if retries:
        warn(f"{name}.restart: the retry limit in {value!r} is not supported; restarts are unlimited with back-off")
    return {"policy": _RESTART[base]}


def _deploy(svc: dict, name: str, body: dict, warn: Warn) -> None:
    deploy = _mapping(svc.get("deploy"), f"{name}.deploy")
    _extra_keys(deploy, {"replicas", "resources", "placement", "update_config", "restart_policy",
                         "labels", "mode"}, f"{name}.deploy", warn)
    mode = deploy.get("mode", "replicated")
    if mode != "replicated":
        warn(f"{name}.deploy.mode: {mode!r} is not supported; the service runs as a replicated one")
    replicas = _replicas(deploy.get("replicas", 1), f"{name}.deploy.replicas")
    if "scale" in svc:
        scale = _replicas(svc["scale"], f"{name}.scale")
        if "replicas" in deploy and scale != replicas:
            raise _fail(f"{name}.scale", f"{scale} conflicts with deploy.replicas {replicas}")
        replicas = scale
    if res := _resources(_mapping(deploy.get("resources"), f"{name}.deploy.resources"), svc, name, warn):
        body["resources"] = res
    if restart := _restart(svc, deploy, name, warn):
        body["restart"] = restart
    placement = _mapping(deploy.get("placement"), f"{name}.deploy.placement")
    _extra_keys(placement, {"constraints", "max_replicas_per_node"}, f"{name}.deploy.placement", warn)
    pl: dict = {}
    if constraints := _constraints(placement.get("constraints") or [], f"{name}.deploy.placement.constraints", warn):
        pl["constraints"] = constraints
    if "max_replicas_per_node" in placement:
        pl["max_per_node"] = placement["max_replicas_per_node"]
    if pl:
        body["placement"] = pl
    if "update_config" in deploy:
        body["update"] = _update(_mapping(deploy["update_config"], f"{name}.deploy.update_config"), name, warn)
    body["replicas"] = replicas


# ---------------------------------------------------------------- services

def _service(svc: dict, name: str, stack: str, base_dir: Path, warn: Warn) -> dict:
    if not svc.get("image"):
        if "build" in svc:
            raise _fail(name, "has 'build' but no 'image': Dockyard does not build images; "
                              "build and push it, then set 'image'")
        raise _fail(name, "'image' is required")
    if "build" in svc:
        warn(f"{name}: 'build' is not supported and was not applied; the image {svc['image']!r} is used as is")
    body: dict = {"image": _str_value(svc["image"], f"{name}.image")}
    for key in ("command", "entrypoint"):
        if svc.get(key) is not None:
            body[key] = _command(svc[key], f"{name}.{key}")
    if env := _env(svc, name, base_dir, warn):
        body["env"] = env
    if svc.get("ports"):
        body["ports"] = _ports(svc["ports"], name, warn)
    labels = _pairs(svc.get("labels") or {}, f"{name}.labels", warn, bare_ok=True)
    deploy = _mapping(svc.get("deploy"), f"{name}.deploy")
    labels.update(_pairs(deploy.get("labels") or {}, f"{name}.deploy.labels", warn, bare_ok=True))
    for key in [k for k in labels if k.startswith("dockyard.")]:
        warn(f"{name}: label '{key}' uses the reserved prefix 'dockyard.' and was skipped")
        del labels[key]
    if labels:
        body["labels"] = labels
    if "stop_grace_period" in svc:  # Docker counts whole seconds; round up, never cut short
        body["stop_timeout"] = math.ceil(parse_duration(svc["stop_grace_period"], f"{name}.stop_grace_period"))
    if "init" in svc:
        if not isinstance(svc["init"], bool):
            raise _fail(f"{name}.init", "must be true or false")
        body["init"] = svc["init"]
    if "pull_policy" in svc:
        pull = {"missing": "if-not-present", "if_not_present": "if-not-present",
                "always": "always", "never": "never"}.get(svc["pull_policy"])
        if pull:
            body["pull"] = pull
        else:
            warn(f"{name}: pull_policy {svc['pull_policy']!r} is not supported; images are pulled if not present")
    if "healthcheck" in svc and (health := _health(svc["healthcheck"], name, warn)):
        body["health"] = health
    _deploy(svc, name, body, warn)
    body["stack"] = stack
    _extra_keys(svc, _SERVICE_KNOWN, name, warn)
    return body


_VARIABLE = re.compile(r"\$\$|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")


def _unescape(value: Any, found: list[str]) -> Any:
    """Compose's '$$' is a literal '$' (commonly in healthcheck shell commands); undo it.
    Real references ('${TAG}', '$HOME') are kept verbatim and collected for a warning:
    interpolating them would need the host environment."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group() == "$$":
                return "$"
            found.append(m.group())
            return m.group()
        return _VARIABLE.sub(sub, value)
    if isinstance(value, dict):
        return {k: _unescape(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape(v, found) for v in value]
    return value


def _service_name(raw: Any, warn: Warn) -> str:
    name = str(raw).replace("_", "-").lower()
    if not DNS_LABEL.fullmatch(name):
        raise ComposeError(f"service {raw!r}: the name cannot be made into a DNS label "
                           "(1-63 letters, digits or '-', starting and ending with a letter or digit)")
    if name != raw:
        warn(f"service '{raw}' was renamed to '{name}' (Dockyard names are DNS labels)")
    return name


def translate(compose: dict, *, stack: str, base_dir: Path = Path(".")) -> Translation:
    """Compose mapping -> service bodies and warnings; ComposeError if it cannot be done."""
    if not isinstance(compose, dict):
        raise ComposeError("a compose file must be a mapping at the top level")
    if not isinstance(stack, str) or not DNS_LABEL.fullmatch(stack):
        raise ComposeError(f"stack {stack!r} must be a DNS label")
    result = Translation()
    warn = result.warnings.append
    for key in compose:
        if key not in _TOP_KNOWN and not str(key).startswith("x-"):
            warn(f"top-level '{key}' is not supported and was not applied")
    if compose.get("name") is not None and _label(str(compose["name"])) != stack:
        warn(f"top-level 'name' {compose['name']!r} was ignored; the stack is {stack!r}")
    services = compose.get("services")
    if not isinstance(services, dict) or not services:
        raise ComposeError("'services' must be a non-empty mapping of service name to definition")
    for raw, svc in services.items():
        name = _service_name(raw, warn)
        if name in result.services:
            raise ComposeError(f"service {raw!r}: its name {name!r} is already used by another service")
        if not isinstance(svc, dict):
            raise ComposeError(f"service {raw!r}: its definition must be a mapping")
        variables: list[str] = []
        svc = _unescape(svc, variables)
        if variables:
            refs = ", ".join(dict.fromkeys(variables))
            warn(f"{name}: {refs} was kept verbatim; variables are not interpolated")
        body = _service(svc, name, stack, Path(base_dir), warn)
        try:
            ServiceApply.model_validate(body)
        except ValidationError as e:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors())
            raise ComposeError(f"service {name!r} does not make a valid Dockyard service: {details}") from None
        result.services[name] = body
    return result


# ---------------------------------------------------------------- files

class _Yaml12Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 core-schema scalars, as Compose (Go) reads them: `no`,
    `yes`, `on` stay strings, `22:22` is not the base-60 integer 1342, `010` is ten and
    `2024-06-01` is a string, not a date."""


_Y = "tag:yaml.org,2002:"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_Y + "bool", _Y + "int", _Y + "float", _Y + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Order matters: the first matching resolver wins, and the float pattern also matches '1'.
_Yaml12Loader.add_implicit_resolver(_Y + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(_Y + "int", re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    _Y + "float", re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Yaml12Loader.add_constructor(
    _Y + "int", lambda loader, node: int(loader.construct_scalar(node), 0 if "x" in node.value else 10))


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")


def stack_name(text: str) -> str:
    """Any text (a directory or project name) made into a DNS label."""
    label = _label(text)
    if not label:
        raise ComposeError(f"cannot make a stack name from {text!r}; pass stack= explicitly")
    return label


def load(path: str | Path, *, stack: str | None = None) -> Translation:
    """Read a compose file and translate it. The stack defaults, as Compose's project name
    does, to the top-level 'name', else to the file's directory name, made into a DNS label."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506 - safe loader
    except OSError as e:
        raise ComposeError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: a compose file must be a mapping at the top level")
    if stack is None:
        project = data.get("name")
        stack = stack_name(project if isinstance(project, str) and project else path.resolve().parent.name)
    return translate(data, stack=stack, base_dir=path.parent)
