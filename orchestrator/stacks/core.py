"""The pure core of releases: diffs between releases and the decision about a rolling release.

A release records, for each service of a stack, its revision, replicas and spec, plus the
values used. While a release rolls out, the leader calls `decide` on every pass with what the
database says about the stack's services; `decide` answers whether the release is deployed,
still rolling, or failed (and then, with `atomic`, which release to return to). No I/O, no
clock: `now` is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.core import planner
from orchestrator.revisions import diff as spec_diff

DEFAULT_DEADLINE = 600.0


def service_changes(old: dict[str, dict], new: dict[str, dict]) -> list[dict[str, Any]]:
    """What changes from one release's services to another's ({name: {spec, replicas, revision?}}):
    one entry per service, sorted by name, with action created | updated | scaled | deleted |
    unchanged, the spec's field changes and replicas from -> to."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None:
            entry = {"service": name, "action": "created", "changes": spec_diff({}, b["spec"]),
                     "replicas": {"from": None, "to": b.get("replicas")}}
        elif b is None:
            entry = {"service": name, "action": "deleted", "changes": [],
                     "replicas": {"from": a.get("replicas"), "to": None}}
        else:
            changes = spec_diff(a["spec"], b["spec"])
            scaled = a.get("replicas") != b.get("replicas")
            action = "updated" if changes else "scaled" if scaled else "unchanged"
            entry = {"service": name, "action": action, "changes": changes,
                     "replicas": {"from": a.get("replicas"), "to": b.get("replicas")}}
            if "revision" in a or "revision" in b:
                entry["revision"] = {"from": a.get("revision"), "to": b.get("revision")}
        out.append(entry)
    return out


def values_changes(old: dict | None, new: dict | None) -> list[dict[str, Any]]:
    """The values' changes, dotted paths (as service spec diffs)."""
    return spec_diff(old or {}, new or {})


def changed(entries: list[dict]) -> bool:
    return any(e["action"] != "unchanged" for e in entries)


@dataclass(frozen=True)
class Member:
    """One service of a rolling stack as the database has it now."""

    name: str
    revision: int
    replicas: int
    phase: str
    reason: str = ""
    instances: tuple[planner.InstanceView, ...] = ()
    min_ready_seconds: float = 0.0
    progress_deadline: float = DEFAULT_DEADLINE


@dataclass(frozen=True)
class Rolling:
    """A stack whose release is rolling out: `expect` maps each service to the revision it should
    run and whether this rollout changed it (only changed services must become ready anew)."""

    release: int
    expect: dict[str, dict]  # name -> {"revision": int, "changed": bool}
    started_at: float
    atomic: bool = True
    rollout_from: int | None = None


@dataclass
class Decision:
    outcome: str  # wait | deployed | failed
    reason: str = ""
    rollback_to: int | None = None  # failed with atomic: the release to return to
    problems: list[str] = field(default_factory=list)


def _failures(name: str, want: dict, m: Member | None) -> str | None:
    rev = want["revision"]
    if m is None:
        return f"service {name} was deleted"
    if m.revision != rev:
        return f"service {name}: " + (m.reason or f"runs revision {m.revision}, not {rev}")
    if m.phase in ("rolled_back", "paused") and want.get("changed"):
        return f"service {name}: " + (m.reason or m.phase)
    if not want.get("changed"):
        return None
    failed = sorted((i for i in m.instances if i.revision == rev and planner.is_failed(i)), key=lambda i: i.slot)
    if failed:
        i = failed[0]
        why = i.last_error or ("health check failing" if i.healthy is False else
                               "failed" if i.state == "failed" else f"restarted {i.restart_count} times")
        return f"service {name}: {len(failed)} instance(s) of revision {rev} failed (e.g. slot {i.slot}: {why})"
    return None


def _done(want: dict, m: Member, now: float) -> bool:
    if m.revision != want["revision"]:
        return False
    if not want.get("changed"):
        return True
    if m.phase not in ("complete",):
        return False
    live = [i for i in m.instances]
    ready = [i for i in live if i.revision == m.revision and planner.is_ready(i, now, m.min_ready_seconds)]
    return len(ready) >= m.replicas and all(i.revision == m.revision for i in live)


def decide(r: Rolling, members: dict[str, Member], now: float) -> Decision:
    """Deployed when every changed service runs its expected revision with all replicas ready and
    no other revision left; failed as soon as one service fails (it rolled itself back or paused,
    an instance of the new revision failed, or it runs another revision than expected) or when
    nothing completed within the slowest changed service's progress deadline; else wait."""
    problems = [p for name in sorted(r.expect) if (p := _failures(name, r.expect[name], members.get(name)))]
    if not problems:
        if all(_done(r.expect[n], members[n], now) for n in r.expect):
            return Decision("deployed", f"release {r.release} is deployed")
        deadlines = [members[n].progress_deadline for n, w in r.expect.items() if w.get("changed")]
        limit = max(deadlines, default=DEFAULT_DEADLINE)
        if now - r.started_at <= limit:
            return Decision("wait")
        waiting = sorted(n for n in r.expect if not _done(r.expect[n], members[n], now))
        problems = [f"not ready within the {limit:g}s progress deadline: {', '.join(waiting)}"]
    back = r.rollout_from if r.atomic and r.rollout_from is not None and r.rollout_from != r.release else None
    why = "; ".join(problems)
    if back is not None:
        reason = f"release {r.release} failed ({why}); rolled back to release {back}"
    else:
        reason = f"release {r.release} failed: {why}"
    return Decision("failed", reason, back, problems)


def rollback_source(state: str, release: int, rollout_from: int | None) -> int | None:
    """The release a new rollout would return to if it fails: the current one, unless the current
    one itself failed (then the one it came from)."""
    return rollout_from if state == "failed" else release


def previous_release(numbers: list[int], current: int, state: str, rollout_from: int | None) -> int | None:
    """`rollback` without a number: the release before the current one (after a failed release,
    the one it came from)."""
    if state == "failed" and rollout_from is not None:
        return rollout_from
    older = [n for n in numbers if n < current]
    return max(older) if older else None
