"""One compose service -> one Dockyard service body; `translate()` does every service of a file."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.compose import deploy, depends, fields, files, host, networks, ports
from orchestrator.compose.common import (
    ComposeError, Translation, Warn, boolean, extra_keys, fail, label, mapping, str_value,
)
from orchestrator.compose.interpolate import interpolate
from orchestrator.spec import DNS_LABEL, ServiceApply

# Top-level keys with a meaning here; 'name' is the project name, i.e. the stack. 'version'
# is obsolete in Compose itself (it ignores it too).
_TOP_KNOWN = {"services", "name", "networks", "volumes", "secrets", "configs", "version"}
_SERVICE_KNOWN = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "deploy",
    "scale", "healthcheck", "labels", "restart", "stop_grace_period", "init", "pull_policy",
    "cpus", "mem_limit", "mem_reservation", "memswap_limit", "depends_on", "links", "expose",
    "container_name", "stop_signal", "networks", "secrets", "configs", "profiles", *host.KEYS,
}
# Dockyard's agent stops a container the way `docker stop` does: the image's STOPSIGNAL, else SIGTERM.
_TERM = {"SIGTERM", "TERM", "15"}


def health(value: Any, name: str, warn: Warn) -> dict | None:
    where = f"{name}.healthcheck"
    hc = mapping(value, where)
    if hc.get("disable") is True:
        return None
    extra_keys(hc, {"test", "interval", "timeout", "retries", "start_period", "disable"}, where, warn)
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
            raise fail(f"{where}.test", "a list must be ['CMD', arg, ...], ['CMD-SHELL', 'command'] or ['NONE']")
    else:
        raise fail(f"{where}.test", "must be a string or a list of strings")
    # Docker's defaults, not Dockyard's: the compose author tuned against these.
    return {
        "type": "exec", "command": command,
        "interval": fields.parse_duration(hc.get("interval", "30s"), f"{where}.interval"),
        "timeout": fields.parse_duration(hc.get("timeout", "30s"), f"{where}.timeout"),
        "retries": hc.get("retries", 3),
        "start_period": fields.parse_duration(hc.get("start_period", 0), f"{where}.start_period"),
    }


def _labels(svc: dict, name: str, warn: Warn) -> dict[str, str]:
    labels = fields.pairs(svc.get("labels") or {}, f"{name}.labels", warn, bare_ok=True)
    dep = mapping(svc.get("deploy"), f"{name}.deploy")
    labels.update(fields.pairs(dep.get("labels") or {}, f"{name}.deploy.labels", warn, bare_ok=True))
    for key in [k for k in labels if k.startswith("dockyard.")]:
        warn(f"{name}: label '{key}' uses the reserved prefix 'dockyard.' and was skipped")
        del labels[key]
    return labels


def _expose(value: Any, name: str) -> None:
    """`expose` only documents ports for other containers (Docker publishes nothing for it), and every
    container port is reachable on the node's bridge network anyway: checked, nothing to apply."""
    if not isinstance(value, list):
        raise fail(f"{name}.expose", "must be a list of ports")
    for item in value:
        text = str(item) if isinstance(item, (str, int)) and not isinstance(item, bool) else ""
        if not re.fullmatch(r"\d{1,5}(-\d{1,5})?(/(tcp|udp|sctp))?", text):
            raise fail(f"{name}.expose", f"invalid port {item!r}: use 'PORT', 'PORT/PROTO' or 'FROM-TO'")


def _stop_signal(value: Any, name: str) -> None:
    sig = str(value).strip().upper() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if sig not in _TERM:
        raise fail(f"{name}.stop_signal", f"{value!r} is not supported: Dockyard stops a container with its image's "
                   "STOPSIGNAL, else SIGTERM; set STOPSIGNAL in the image, or remove stop_signal")


def service(svc: dict, name: str, stack: str, base_dir: Path, warn: Warn,
            vols: host.Volumes = host.Volumes(), environ: dict[str, str] | None = None,
            defined_files: dict[str, dict[str, str]] | None = None) -> dict:
    if not svc.get("image"):
        if "build" in svc:
            raise fail(f"{name}.build", "Dockyard does not build images: build it on a node (docker build -t "
                       f"NAME .) or push it to a registry the nodes can pull from, then set '{name}.image: NAME'")
        raise fail(f"{name}.image", "is required")
    if "build" in svc:
        warn(f"{name}: 'build' is not supported and was not applied; the image {svc['image']!r} is used as is")
    body: dict = {"image": str_value(svc["image"], f"{name}.image")}
    for key in ("command", "entrypoint"):
        if svc.get(key) is not None:
            body[key] = fields.command(svc[key], f"{name}.{key}")
    if env := fields.env(svc, name, base_dir, warn, environ or {}):
        body["env"] = env
    if svc.get("ports"):
        body["ports"] = ports.ports(svc["ports"], name, warn)
    if labels := _labels(svc, name, warn):
        body["labels"] = labels
    if "stop_grace_period" in svc:  # Docker counts whole seconds; round up, never cut short
        body["stop_timeout"] = math.ceil(fields.parse_duration(svc["stop_grace_period"], f"{name}.stop_grace_period"))
    if "init" in svc:
        body["init"] = boolean(svc["init"], f"{name}.init")
    if "pull_policy" in svc:
        pull = {"missing": "if-not-present", "if_not_present": "if-not-present",
                "always": "always", "never": "never"}.get(svc["pull_policy"]) if isinstance(svc["pull_policy"], str) else None
        if pull:
            body["pull"] = pull
        else:
            warn(f"{name}: pull_policy {svc['pull_policy']!r} is not supported; images are pulled if not present")
    if "stop_signal" in svc:
        _stop_signal(svc["stop_signal"], name)
    if "expose" in svc:
        _expose(svc["expose"], name)
    if svc.get("container_name") is not None:
        warn(f"{name}.container_name: not applied; Dockyard names the containers dy-{name}-<slot>-<id> "
             "(several replicas cannot share one name)")
    host.host(svc, name, base_dir, body, warn, vols)
    if extra := files.mounts(svc, name, defined_files or {k: {} for k in files.KINDS}, warn):
        body["volumes"] = [*body.get("volumes", []), *extra]
    if "healthcheck" in svc and (hc := health(svc["healthcheck"], name, warn)):
        body["health"] = hc
    deploy.deploy(svc, name, body, warn)
    body["stack"] = stack
    extra_keys(svc, _SERVICE_KNOWN, name, warn)
    return body


def _service_name(raw: Any, warn: Warn) -> str:
    name = str(raw).replace("_", "-").lower()
    if not DNS_LABEL.fullmatch(name):
        raise ComposeError(f"service {raw!r}: the name cannot be made into a DNS label "
                           "(1-63 letters, digits or '-', starting and ending with a letter or digit)")
    if name != raw:
        warn(f"service '{raw}' was renamed to '{name}' (Dockyard names are DNS labels)")
    return name


def _inactive(services: dict, profiles: set[str]) -> dict[str, list[str]]:
    """Services whose `profiles` are not enabled, with their profiles: Compose leaves them out."""
    out: dict[str, list[str]] = {}
    for raw, svc in services.items():
        wanted = svc.get("profiles") if isinstance(svc, dict) else None
        if wanted is None:
            continue
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            raise fail(f"{raw}.profiles", "must be a list of profile names")
        if wanted and "*" not in profiles and not profiles & set(wanted):
            out[raw] = wanted
    return out


def translate(compose: dict, *, stack: str, base_dir: Path = Path("."), environ: dict[str, str] | None = None,
              volume_root: str | None = None, profiles: list[str] | None = None) -> Translation:
    """Compose mapping -> service bodies, dependencies and warnings; ComposeError if it cannot be done.

    `environ` holds the variables to interpolate (the caller's environment over the `.env`
    file; none by default, so the function stays pure); `volume_root` is where named volumes
    become bind mounts (None: they are refused); `profiles` are the enabled ones ('*': all)."""
    if not isinstance(compose, dict):
        raise ComposeError("a compose file must be a mapping at the top level")
    if not isinstance(stack, str) or not DNS_LABEL.fullmatch(stack):
        raise ComposeError(f"stack {stack!r} must be a DNS label")
    result = Translation()
    warn = result.warnings.append
    environ = dict(environ or {})
    compose = interpolate(compose, environ, warn)
    for key in compose:
        if key not in _TOP_KNOWN and not str(key).startswith("x-"):
            warn(f"top-level '{key}' is not supported and was not applied")
    if compose.get("name") is not None and label(str(compose["name"])) != stack:
        warn(f"top-level 'name' {compose['name']!r} was ignored; the stack is {stack!r}")
    services = compose.get("services")
    if not isinstance(services, dict) or not services:
        raise ComposeError("'services' must be a non-empty mapping of service name to definition")
    nets = networks.definitions(compose, warn)
    vols = host.definitions(compose, stack, volume_root, warn)
    defined_files = files.definitions(compose, Path(base_dir), warn)
    skipped = _inactive(services, set(profiles or []))
    if len(skipped) == len(services):
        raise ComposeError(f"no service is enabled: every one is in a profile ({', '.join(map(str, skipped))}); "
                           "pass --profile NAME")
    rename: dict[str, str] = {}
    for raw in services:
        name = _service_name(raw, warn)
        if name in rename.values():
            raise ComposeError(f"service {raw!r}: its name {name!r} is already used by another service")
        rename[raw] = name
    attached = False
    for raw, svc in services.items():
        name = rename[raw]
        if raw in skipped:
            warn(f"{name}: not applied; it is in profile(s) {', '.join(skipped[raw])}, which --profile did not enable")
            continue
        if not isinstance(svc, dict):
            raise ComposeError(f"service {raw!r}: its definition must be a mapping")
        attached |= bool(networks.attach(svc, name, nets, warn))
        result.depends_on[name] = depends.depends_on(svc, name, rename, warn, skipped)
        body = service(svc, name, stack, Path(base_dir), warn, vols, environ, defined_files)
        try:
            ServiceApply.model_validate(body)
        except ValidationError as e:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors())
            raise ComposeError(f"service {name!r} does not make a valid Dockyard service: {details}") from None
        result.services[name] = body
    depends.check_completions(result.depends_on, result.services)
    result.levels = depends.levels(result.depends_on)
    if attached or len(nets) > 1:
        warn("networks: not separate; every container runs on its node's default bridge network")
    if len(result.services) > 1:
        warn(f"services: containers cannot look each other up by service name ({', '.join(result.services)}): "
             "there is no DNS between them; an HTTP service given Dockyard `expose` routes is reached through the "
             "node's gateway ($DOCKYARD_GATEWAY, Host <service>.localhost; docs/gateway.md), any other by its "
             "published host port on the node's address")
    return result
