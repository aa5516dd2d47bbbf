"""`depends_on` and `links`: which service waits for which, and the order to apply a stack in.

Like `docker compose up`, the waiting is done by the client: `levels()` groups the services
so that each one comes after everything it depends on, and `Translation.depends_on` says,
per service, what "ready" means for each dependency:
  service_started                 every replica running
  service_healthy                 every replica ready (running and healthy)
  service_completed_successfully  every replica of the current revision exited with code 0; the
                                  dependency must not restart on success (restart 'no' or
                                  'on-failure'), else it would never complete: that is refused
A cycle, or a dependency on a service the file does not have, is refused.
"""
from __future__ import annotations

from typing import Any

from orchestrator.compose.common import ComposeError, Warn, extra_keys, fail

CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def depends_on(svc: dict, name: str, rename: dict[str, str], warn: Warn,
               skipped: dict[str, list[str]] | None = None) -> dict[str, str]:
    """{dependency: condition} from `depends_on` (list or map form) and `links`; `skipped` are
    the services left out because their profiles are not enabled."""
    skipped = skipped or {}
    where = f"{name}.depends_on"
    raw = svc.get("depends_on")
    out: dict[str, str] = {}
    if isinstance(raw, list):
        items: list[tuple[Any, dict]] = [(d, {}) for d in raw]
    elif isinstance(raw, dict):
        items = [(d, opts if isinstance(opts, dict) else None) for d, opts in raw.items()]  # type: ignore[misc]
    elif raw is None:
        items = []
    else:
        raise fail(where, "must be a list of service names or a mapping of service name to {condition}")
    for dep, opts in items:
        if not isinstance(dep, str) or opts is None:
            raise fail(where, f"invalid entry {dep!r}: use a service name, or 'NAME: {{condition: service_healthy}}'")
        extra_keys(opts, {"condition", "required", "restart"}, f"{where}.{dep}", warn)
        if opts.get("restart"):
            warn(f"{where}.{dep}.restart: dependents are not restarted when {dep!r} changes")
        if dep not in rename or dep in skipped:
            if opts.get("required", True) is False:
                continue  # Compose skips an optional dependency the project does not have
            if dep in skipped:
                raise fail(where, f"{dep!r} is in profile(s) {', '.join(skipped[dep])}, which is not enabled: "
                                  f"pass --profile {skipped[dep][0]}")
            raise fail(where, f"{dep!r} is not a service of this file")
        cond = opts.get("condition", "service_started")
        if cond not in CONDITIONS:
            raise fail(f"{where}.{dep}.condition", f"must be one of {', '.join(CONDITIONS)}, not {cond!r}")
        out[rename[dep]] = cond
    links = svc.get("links")
    if links is not None:
        if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
            raise fail(f"{name}.links", "must be a list of 'SERVICE' or 'SERVICE:ALIAS'")
        for link in links:
            dep = link.split(":", 1)[0]
            if dep not in rename or dep in skipped:
                raise fail(f"{name}.links", f"{dep!r} is not a service of this file")
            out.setdefault(rename[dep], "service_started")
    if name in out:
        raise fail(where, "a service cannot depend on itself")
    return out


def check_completions(deps: dict[str, dict[str, str]], bodies: dict[str, dict]) -> None:
    """A dependency awaited with service_completed_successfully must stop once it succeeded."""
    for name, wanted in deps.items():
        for dep, cond in wanted.items():
            policy = (bodies[dep].get("restart") or {}).get("policy", "always")
            if cond == "service_completed_successfully" and policy == "always":
                raise ComposeError(
                    f"{name}.depends_on.{dep}.condition: {dep!r} would never complete: it restarts always; "
                    f"give {dep!r} restart: 'no' or 'on-failure' (or deploy.restart_policy.condition: none)")


def levels(deps: dict[str, dict[str, str]]) -> list[list[str]]:
    """Services grouped so that every one comes after all it depends on (file order within a
    level); ComposeError naming the cycle if there is one."""
    done: set[str] = set()
    out: list[list[str]] = []
    left = list(deps)
    while left:
        level = [s for s in left if all(d in done for d in deps[s])]
        if not level:
            raise ComposeError(f"depends_on has a cycle: {' -> '.join(_cycle(deps, left))}")
        out.append(level)
        done.update(level)
        left = [s for s in left if s not in done]
    return out


def _cycle(deps: dict[str, dict[str, str]], left: list[str]) -> list[str]:
    """One cycle among the services `left` (each of which still waits for another of them)."""
    path, node = [], left[0]
    while node not in path:
        path.append(node)
        node = next(d for d in deps[node] if d in left)
    return path[path.index(node):] + [node]
