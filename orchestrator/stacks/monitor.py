"""The leader's watch over rolling releases: one step at the end of each reconcile pass.

Leader-owned and derived from the database only: a rolling stack is a row with state
'rolling' and the revisions it expects, so a new leader (or a restarted server) carries on
exactly where the last one stopped. The step runs inside the pass's transaction, so what it
writes is fenced by the leader's epoch with the rest of the pass (reconcile.py). It decides
with core.decide (pure) and then either marks the release deployed, marks it failed, or
(atomic) points every service back at the release the stack came from.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from orchestrator.core import planner
from orchestrator.models import Instance, Service, Stack
from orchestrator.namespaces import key
from orchestrator.stacks import core

log = logging.getLogger("dockyard.stacks")
HISTORY_LIMIT = 10  # revisions kept when the rollback must make a new one (the server's default)


def _loaded_version(svc: Service) -> int:
    """The version this pass read (the planner may have bumped it in memory since)."""
    h = inspect(svc).attrs.version.history
    return h.deleted[0] if h.deleted else svc.version


def _view(i: Instance) -> planner.InstanceView:
    return planner.InstanceView(id=i.id, slot=i.slot, revision=i.revision, state=i.state, healthy=i.healthy,
                                ready_since=i.ready_since, restart_count=i.restart_count, last_error=i.last_error)


def step(s: Session, services: dict[str, Service], instances: list[Instance], now: float) -> set[str]:
    """Decide every rolling stack; returns the nodes whose assignments changed."""
    rolling = list(s.scalars(select(Stack).where(Stack.state == "rolling").order_by(Stack.key)))
    if not rolling:
        return set()
    views: dict[str, list[planner.InstanceView]] = defaultdict(list)
    for i in instances:
        if i.desired_state == "running":
            views[i.service_name].append(_view(i))
    touched: set[str] = set()
    for st in rolling:
        # the pass read the services before it read this stack: if an apply changed them since,
        # this pass's picture is older than the stack's, and the next pass decides instead
        fresh = dict(s.execute(select(Service.name, Service.version).where(
            Service.namespace == st.namespace, Service.stack == st.name)).all())
        mine = {k: svc for k, svc in services.items() if svc.namespace == st.namespace and svc.stack == st.name}
        if fresh.keys() != mine.keys() or any(_loaded_version(mine[k]) != v for k, v in fresh.items()):
            continue
        members = {}
        for short in st.expect:
            svc = mine.get(key(st.namespace, short))
            if svc is None:
                continue
            upd = svc.spec.get("update") or {}
            members[short] = core.Member(
                short, svc.revision, svc.replicas, svc.rollout_phase, svc.rollout_reason, tuple(views[svc.name]),
                upd.get("min_ready_seconds", 0.0), upd.get("progress_deadline", core.DEFAULT_DEADLINE))
        d = core.decide(core.Rolling(st.release, st.expect, st.started_at, st.atomic, st.rollout_from), members, now)
        if d.outcome == "wait":
            continue
        touched |= _apply(s, st, d, now)
    return touched


def _apply(s: Session, st: Stack, d: core.Decision, now: float) -> set[str]:
    from orchestrator.stacks import store  # store -> service_ops -> reconcile -> this module

    rel = store.release(s, st.key, st.release)
    st.version += 1
    st.updated_at = now
    if d.outcome == "deployed":
        rel.status, rel.reason = "deployed", ""
        st.state, st.reason = "deployed", d.reason
        store.event(s, "stack_deployed", st, st.namespace, f"stack {st.name}: {d.reason}", actor=None, now=now)
        return set()
    rel.status, rel.reason = "failed", d.reason
    if d.rollback_to is None:
        st.state, st.reason = "failed", d.reason
        store.event(s, "stack_failed", st, st.namespace, f"stack {st.name}: {d.reason}", actor=None, now=now)
        log.warning("stack %s: %s", st.key, d.reason)
        return set()
    back = store.release(s, st.key, d.rollback_to)
    r = store.retarget(s, st, back.services, auto=True, reason=f"stack {st.name}: {d.reason}", actor=None, now=now,
                       history_limit=HISTORY_LIMIT)
    back.status, back.reason = "deployed", ""
    reason = d.reason + (f" (could not restore: {'; '.join(r.problems)})" if r.problems else "")
    st.release, st.rollout_from, st.expect, st.started_at = back.number, None, r.expect, now
    st.state, st.reason = "rolled_back", reason
    store.event(s, "stack_rolled_back", st, st.namespace, f"stack {st.name}: {reason}", actor=None, now=now)
    log.warning("stack %s: %s", st.key, reason)
    return r.nodes
