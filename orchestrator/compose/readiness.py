"""When a dependency counts as ready for `compose up` to go on, judged from what the API answers.

Pure: the CLI fetches `GET /v1/services/{name}` (and, for service_completed_successfully, its
instances) and asks `check()`, which says "ready", "waiting" or "failed" and why. Only the
current revision counts, so an update of a dependency is waited for, not its old containers.
"""
from __future__ import annotations

from typing import Literal

Verdict = Literal["ready", "waiting", "failed"]
_STOPPED = ("paused", "rolled_back", "failed")


def check(condition: str, svc: dict, instances: list[dict] | None = None) -> tuple[Verdict, str]:
    status, want = svc.get("status") or {}, int(svc.get("replicas") or 0)
    phase = (svc.get("rollout") or {}).get("phase") or "complete"
    if condition == "service_completed_successfully":  # a one-shot never becomes ready: its rollout says nothing
        return _completed(svc, want, instances or [])
    if phase in _STOPPED:
        reason = (svc.get("rollout") or {}).get("reason") or status.get("message") or ""
        return "failed", f"its rollout is {phase.replace('_', ' ')}" + (f": {reason}" if reason else "")
    running, ready, updated = (int(status.get(k) or 0) for k in ("running", "ready", "updated"))
    if condition == "service_started":
        if running >= want and updated >= want:
            return "ready", f"{running}/{want} running"
        return "waiting", f"{running}/{want} running" + _why(status)
    if ready >= want and updated >= want and phase == "complete":
        return "ready", f"{ready}/{want} ready"
    return "waiting", f"{ready}/{want} ready" + _why(status)


def _completed(svc: dict, want: int, instances: list[dict]) -> tuple[Verdict, str]:
    current = [i for i in instances if i.get("revision") == svc.get("revision")]
    done = [i for i in current if i.get("state") == "exited" and i.get("exit_code") == 0]
    policy = ((svc.get("spec") or {}).get("restart") or {}).get("policy", "always")
    bad = [i for i in current if i.get("state") in ("exited", "failed") and i.get("exit_code") not in (0, None)]
    if bad and policy == "never":
        i = bad[0]
        return "failed", f"instance {svc.get('name')}.{i.get('slot')} exited with code {i.get('exit_code')}"
    if len(done) >= want:
        return "ready", f"{len(done)}/{want} completed"
    return "waiting", f"{len(done)}/{want} completed successfully"


def _why(status: dict) -> str:
    msg = status.get("message") or ""
    return f" ({msg})" if msg else ""
