"""The agent's local diff: assigned instances vs labelled containers -> what to start, restart, remove.

Pure: no Docker, no clock (`now` is passed in), no server. The shell in agent/main.py
executes the actions and keeps the small restart bookkeeping this function reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from agent.types import Assignment, Observed

# a container that stayed up this long before dying starts its back-off from scratch
STABLE_SECONDS = 10.0
FIRST_RETRY = 0.5  # seconds before the second consecutive restart; the first one is immediate
ALIVE = {"running", "restarting", "paused", "removing"}


@dataclass
class RestartInfo:
    count: int = 0  # restarts of this instance, ever (reported to the server)
    consecutive: int = 0  # restarts without a stable run in between (drives the back-off)
    last_at: float = 0.0


@dataclass
class Actions:
    run: list[Assignment] = field(default_factory=list)
    restart: list[tuple[Assignment, str]] = field(default_factory=list)  # (assignment, container id)
    remove: list[tuple[str, int | None]] = field(default_factory=list)  # (container id, stop timeout or None)
    recycle: list[tuple[Assignment, str]] = field(default_factory=list)  # unhealthy: stop and start in place
    wake_at: float | None = None  # earliest time a backed-off restart becomes due


def backoff(consecutive: int, cap: float) -> float:
    if consecutive <= 0:
        return 0.0
    return min(cap, FIRST_RETRY * 2 ** (consecutive - 1))


def should_restart(policy: str, exit_code: int | None, unhealthy: bool = False) -> bool:
    if policy == "never":
        return False
    if policy == "on-failure":
        return unhealthy or exit_code not in (0, None)
    return True


def _rank(o: Observed) -> tuple[int, str]:
    # which container of an instance to keep when there are several: running beats the rest
    return (0 if o.state == "running" else 1 if o.state in ALIVE else 2, o.container_id)


def diff(
    assigned: list[Assignment],
    observed: list[Observed],
    restarts: dict[str, RestartInfo],
    now: float,
    busy: frozenset[str] = frozenset(),
    run_backoff: dict[str, float] | None = None,
    draining: dict[str, float] | None = None,
) -> Actions:
    """`busy`: instance ids with an action still in flight (left alone this pass).
    `run_backoff`: instance id -> time before which a failed start must not be retried.
    `draining`: instance id -> time until which a container that is no longer assigned keeps
    running: it has left every gateway's routes and finishes what it was sent (ordered drain)."""
    out = Actions()
    wanted = {a.instance_id: a for a in assigned}
    by_instance: dict[str, list[Observed]] = {}
    for o in observed:
        by_instance.setdefault(o.instance_id, []).append(o)

    for iid, containers in by_instance.items():
        a = wanted.get(iid)
        if a is None:
            until = (draining or {}).get(iid, 0.0)
            if now < until and any(o.state == "running" for o in containers):
                out.wake_at = until if out.wake_at is None else min(out.wake_at, until)
                continue
            # not ours to run any more (deleted, scaled down, re-placed after node loss): remove
            out.remove += [(o.container_id, None) for o in containers if o.state != "removing"]
            continue
        keep, *extra = sorted(containers, key=_rank)
        out.remove += [(o.container_id, a.spec.get("stop_timeout")) for o in extra if o.state != "removing"]
        if iid in busy:
            continue
        if keep.state == "created":
            # left over by a crash between create and start: start it like a restart
            out.restart.append((a, keep.container_id))
        elif keep.state in ("exited", "dead") or (keep.state == "running" and keep.health == "unhealthy"):
            # a crash, or a health check failed past its retries: both restart per the policy
            unhealthy = keep.state == "running"
            policy = (a.spec.get("restart") or {}).get("policy", "always")
            if not should_restart(policy, keep.exit_code, unhealthy=unhealthy):
                continue
            info = restarts.get(iid, RestartInfo())
            due = info.last_at + backoff(info.consecutive, (a.spec.get("restart") or {}).get("backoff_cap", 30.0))
            if now >= due:
                (out.recycle if unhealthy else out.restart).append((a, keep.container_id))
            else:
                out.wake_at = due if out.wake_at is None else min(out.wake_at, due)

    for iid, a in wanted.items():
        if iid in by_instance or iid in busy:
            continue
        not_before = (run_backoff or {}).get(iid, 0.0)
        if now >= not_before:
            out.run.append(a)
        else:
            out.wake_at = not_before if out.wake_at is None else min(out.wake_at, not_before)
    return out


def report_state(o: Observed, policy: str) -> tuple[str, bool | None]:
    """(state, healthy) the server should see for one container."""
    healthy = {"healthy": True, "unhealthy": False}.get(o.health or "")
    if o.state == "running":
        if o.health == "starting":
            return "starting", None
        return "running", healthy
    if o.state in ("created", "restarting"):
        return "starting", None
    if o.state in ("exited", "dead"):
        if not should_restart(policy, o.exit_code):
            return ("exited" if o.exit_code == 0 else "failed"), healthy
        return "exited", healthy
    return o.state, healthy
