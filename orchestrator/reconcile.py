"""The reconcile loop: one pass turns desired state plus observed state into instance records.

A pass (run by APScheduler every `interval` seconds, or sooner when kicked) does, in one
transaction: node liveness, per-service planning (replicas and rollouts), placement of
pending instances, and clean-up of instances whose containers are gone. The decisions
are made by the pure core (core/liveness.py, core/scope.py, core/planner.py, core/drain.py,
core/scheduler.py); this module only loads, applies and notifies.

A pass is incremental: it plans only the services whose rows or instances changed since they
were last planned, those time alone moves, and a few more as a safety net (core/scope.py),
within a budget of instances, and reads the rest of the cluster as SQL aggregates
(pass_state.py). A pass over 50,000 instances took 4 s: a stall for the API and the agents.

Only the leader runs passes (coord/leader.py). A pass loads the snapshot and decides with
nothing written (no autoflush); its changes are flushed at commit, after the fence
(coord/lease.py) as the transaction's first write: a server that lost the lease meanwhile
commits nothing, and steps down. Everything this class keeps between passes (fingerprint,
kick bookkeeping, the last unschedulable reasons) is leader-only, and reset on takeover.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, load_only
from sqlalchemy.orm.attributes import set_committed_value

from orchestrator import db_writes, gcpause, metrics, new_instances, pass_state, priority
from orchestrator.coord import base as signals
from orchestrator.coord.lease import NotLeader
from orchestrator.core import drain, liveness, planner, rebalance, scheduler, scope
from orchestrator.db import Database
from orchestrator.events import record
from orchestrator.hub import Hub
from orchestrator.models import Instance, Node, Service, Stack
from orchestrator.pass_state import NodeRow, node_infos, request_for, revision_specs  # noqa: F401 (re-exported)
from orchestrator.stacks import monitor as stack_monitor

log = logging.getLogger("dockyard.loop")
# Kicks (API writes, agent reports) bring the next pass forward, but passes start at least
# this far apart: a burst of 1,000 reports makes a few passes, not 1,000.
MIN_PASS_GAP = 0.1
# ... and at least this many times the last pass's duration apart: a burst of writes on a big
# cluster (a pass of 10,000 instances takes a few hundred ms) leaves the API and the agents
# most of the CPU instead of back-to-back passes.
PASS_GAP_FACTOR = 2.0
# ... but only this many times while a backlog is worked off (passes over their budget): those
# passes yield to API requests (priority.Slices) and their nodes are not woken yet (HOLD_MAX),
# so little else competes for the CPU, and 50,000 new instances wait on the passes alone.
BACKLOG_GAP_FACTOR = 0.5
# While passes leave services with instances to create or place over their budget, the nodes they
# assigned work to are woken together when that backlog is done (not the re-planning of rollouts
# that follows as their instances report running), or this many seconds after the first of
# them: a node's long poll, the read of its assignments and its agent's report then come once
# for a whole rollout of 50,000 instances instead of once per pass (25 at 5,000 nodes: 135 s of
# a server's CPU for 50,000).
HOLD_MAX = 3.0
# On a large cluster (past 200 nodes, where hub.py stretches the heartbeat interval), the same
# while API writes keep coming (a script applying 500 services one by one: an API write arrived
# while the last pass ran), and both for up to a heartbeat interval, as long as an agent that
# only polled would wait (25 s at 5,000 nodes): each service's pass woke its 100 nodes, each of
# 5,000 nodes was woken ~8 times in such a run, and those ~40,000 syncs and reports took the
# event loop the PUTs were queued on (placement 117 s, the server at one core). A single write,
# writes slower than the passes, and any write on a small cluster are woken at once.
HOLD_HEARTBEATS = 1.0
# A node is woken at most once per this share of the heartbeat interval (hub.py stretches it past
# 200 nodes so that agents' syncs stay ~200/s): a woken node costs what a sync does, and while
# 500 services are applied one by one each node of a 5,000-node cluster was woken ~10 times in
# a minute. Under 200 nodes: 0.2 s; at 5,000: 5 s. Later changes wait, then go together.
WAKE_SPACING = 0.2
# A kick waits until kicks have been quiet this long (but never more than KICK_MAX_DELAY):
# a script applying 100 services gets them placed in one or two passes, so every node gets
# its new assignments once, not once per service.
KICK_QUIET = 0.05
KICK_MAX_DELAY = 1.0
# A pass that would find nothing to do is skipped (see Reconciler.run_pass); one still runs
# this often, and re-plans the services planned longest ago, as a level-triggered safety net.
SWEEP_EVERY = 10.0
# How many instances' worth of services a pass plans at most (core/scope.py): about 0.1-0.2 s
# of a pass; what does not fit is planned by the passes that follow at once.
PASS_BUDGET = 2000
# ... times this while a backlog of instances to create or place is worked off and no API write
# came during the last pass (a script's burst of PUTs is over): nothing is woken until the
# backlog is done (HOLD_MAX), so nothing else waits on these passes, and each pass's fixed cost
# (~0.1 s at 5,000 nodes, more on a busy server) is paid 5x less often. During a burst the
# plain budget keeps passes short: the PUTs waited behind 4x longer passes (docs/performance.md).
BACKLOG_BUDGET_FACTOR = 5
# ... and the safety net's sweep at most this many (a pass planning 500 unchanged instances
# costs ~10 ms; at 50,000 instances the sweep then comes round in ~17 minutes)
SWEEP_BUDGET = 500


# The instance columns a pass reads or writes; the others (host ports: JSON to decode for
# every row; container id, exit code) load only if touched. A fifth of a 10,000-instance pass.
PASS_COLUMNS = (Instance.id, Instance.service_name, Instance.slot, Instance.revision, Instance.node_name,
                Instance.desired_state, Instance.state, Instance.healthy, Instance.ready_since,
                Instance.restart_count, Instance.last_error, Instance.updated_at)


def new_instance_id() -> str:
    return secrets.token_hex(5)


def view(i: Instance) -> planner.InstanceView:
    return planner.InstanceView(
        id=i.id, slot=i.slot, revision=i.revision, state=i.state, healthy=i.healthy,
        ready_since=i.ready_since, restart_count=i.restart_count, last_error=i.last_error,
    )


def service_view(svc: Service) -> planner.ServiceView:
    upd = svc.spec.get("update", {})
    return planner.ServiceView(
        name=svc.name, replicas=svc.replicas, revision=svc.revision,
        max_surge=upd.get("max_surge", "25%"), max_unavailable=upd.get("max_unavailable", "25%"),
        min_ready_seconds=upd.get("min_ready_seconds", 0.0), progress_deadline=upd.get("progress_deadline", 600.0),
        phase=svc.rollout_phase, rollout_started_at=svc.rollout_started_at,
    )


# a pass woken for a liveness deadline comes this long after it (the decision is strict: `>`)
WAKE_MARGIN = 0.01
# a server that does not lead forwards kicks to the leader at most this often
KICK_FORWARD_GAP = 0.05


def _quiet_overlap(record: logging.LogRecord) -> bool:
    """A pass still running when the interval comes round is normal in a large cluster (a full
    pass over 50,000 instances takes seconds; the next one starts when it ends): APScheduler's
    warning about each skipped tick goes to debug instead of filling the log every second."""
    if record.levelno == logging.WARNING and "maximum number of running instances" in record.getMessage():
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
    return True


class Reconciler:
    def __init__(self, db: Database, hub: Hub, *, interval: float = 1.0, node_ttl: float = 5.0,  # type: ignore[no-untyped-def]
                 node_grace: float = 1.0, elector=None):
        self.db, self.hub = db, hub
        self.elector = elector  # None: always leads (one server, tests)
        self._forwarded = 0.0
        hub.coord.on(signals.KICK, lambda v: self._kick_local(api="api" in v) if self.leading else None)
        self.interval, self.node_ttl, self.node_grace = interval, node_ttl, node_grace
        self.last_pass_at = 0.0
        self.passes = 0
        self.unschedulable: dict[str, str] = {}  # service -> last reason, to log each reason once
        self._sched = BackgroundScheduler(timezone=timezone.utc)
        self._job = None
        self._lock = threading.Lock()
        # kick bookkeeping (guarded by _flags): asked for a pass / pass running / one scheduled
        self._flags = threading.Lock()
        self._dirty = True
        self._running = False
        self._scheduled = False
        self._first_kick: float | None = None  # first kick since the last pass started
        self._last_start = 0.0
        self._last_duration = 0.0
        # skip bookkeeping: what the last pass saw, and whether time alone can change it
        self._fingerprint: tuple | None = None
        self._waiting = True
        self._last_full = 0.0
        self.skipped = 0
        self._pass_no = 0
        self._book: tuple = (None, {}, {}, {}, False, False)
        # incremental bookkeeping (core/scope.py): each service's fingerprint when last planned,
        # the pass that planned it, each node's key; dirty services left over; the last sweep
        self._seen: dict[str, tuple] = {}
        self._planned_at: dict[str, int] = {}
        self._node_seen: dict[str, tuple] = {}
        self._deferred = False
        self._placing = False  # ... and some of those have instances to create or place (the hold)
        self._last_sweep = 0.0
        self._sweep = False
        self.budget = PASS_BUDGET
        # when a node's liveness next changes unless it is heard from (core/liveness.py
        # next_deadline): the pass that ends schedules the next one for then, if sooner
        self._wake: float | None = None
        # nodes with committed changes not yet woken (HOLD_MAX, WAKE_SPACING), since when;
        # leader-only: woken when this server steps down or stops, and if it dies with them, the
        # next leader's first pass wakes every node (reconcile)
        self._held: set[str] = set()
        self._held_since = 0.0
        # leader-only, like the rest of the kick bookkeeping (a follower forwards the API flag
        # with its kick): when an API write last kicked, and whether one came during the last
        # pass (a burst of them holds wake-ups); a new leader starts with neither
        self._api_kick = 0.0
        self._burst = False
        self._usage = pass_state.UsageCache()  # what the services a pass does not plan hold
        self._woken: dict[str, float] = {}  # node -> when its long polls were last woken (WAKE_SPACING)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        logging.getLogger("apscheduler.scheduler").addFilter(_quiet_overlap)
        # counts as a pass for /readyz: the first real one follows at once, and a probe racing it
        # should not see a freshly started server as broken
        self.last_pass_at = time.time()
        self._job = self._sched.add_job(
            self.run_pass, "interval", seconds=self.interval, max_instances=1, coalesce=True,
            next_run_time=datetime.now(timezone.utc), misfire_grace_time=None,
        )
        self._sched.start()

    def stop(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=True)
        self._wake_held()

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def elected(self, _epoch: int) -> None:
        """Took the lease: forget what an earlier term of this server saw, and look at once."""
        with self._flags:
            self._fingerprint, self._waiting, self._last_full = None, True, 0.0
            self._seen, self._planned_at, self._node_seen, self._last_sweep = {}, {}, {}, 0.0
            self._usage.clear()
        self.unschedulable = {}
        self.hub.watched = None
        self._kick_local()

    def deposed(self, _epoch: int) -> None:
        self._wake_held()  # committed by this term: the next leader may never touch these nodes
        self.hub.watched = None  # reports on this server now kick the (other) leader

    def kick(self) -> None:
        """Make the next pass come now, on whichever server leads. Called in a client's API
        request (priority.API_WRITER), it counts towards a burst of API writes (HOLD_MAX)."""
        api = priority.API_WRITER.get()
        if self.leading:
            self._kick_local(api)
            return
        now = time.monotonic()
        if now - self._forwarded >= KICK_FORWARD_GAP:
            self._forwarded = now
            self.hub.coord.publish(signals.KICK, ["api"] if api else [])

    def _kick_local(self, api: bool = False) -> None:
        """Make the next pass come now (an edge trigger; the loop stays level-triggered).

        A kick during a pass makes another one follow it; kicks in a burst are taken
        together (KICK_QUIET, KICK_MAX_DELAY); passes start at least MIN_PASS_GAP (and
        PASS_GAP_FACTOR x the last full pass's duration) apart."""
        with self._flags:
            self._dirty = True
            if api:
                self._api_kick = time.time()
            if self._running:
                return  # the pass schedules the next one when it ends
            now = time.time()
            if self._first_kick is None:
                self._first_kick = now
            when = max(min(now + KICK_QUIET, self._first_kick + KICK_MAX_DELAY), self._next_allowed())
            self._scheduled = True
        self._schedule(when)

    def _next_allowed(self) -> float:
        factor = BACKLOG_GAP_FACTOR if self._deferred else PASS_GAP_FACTOR
        return self._last_start + max(MIN_PASS_GAP, factor * self._last_duration)

    def _schedule(self, when: float) -> None:
        if self._job is not None and self._sched.running:
            try:
                self._job.modify(next_run_time=datetime.fromtimestamp(when, timezone.utc))
            except Exception:  # job gone during shutdown
                pass

    @property
    def healthy(self) -> bool:
        if not self._sched.running:
            return False
        if not self.leading:
            return True  # following: the elector keeps trying; the leader's loop is its own
        return time.time() - self.last_pass_at < max(10.0, self.interval * 10)

    # -- one pass --------------------------------------------------------------------
    def run_pass(self) -> None:
        with self._flags:
            self._running, self._scheduled = True, False
            self._dirty, self._first_kick = False, None
            self._last_start = time.time()
        try:
            with self._lock:
                self._pass()
        finally:
            with self._flags:
                self._running = False
                again = self._dirty and not self._scheduled
                if again:
                    self._scheduled = True
                # a node's grace or TTL ends before the next interval: look then, not up to an
                # interval late (a dead agent's node goes down at its deadline)
                wake, self._wake = self._wake, None
                early = not again and not self._scheduled and wake is not None and wake < time.time() + self.interval
            if again:
                self._schedule(max(time.time(), self._next_allowed()))
            elif early:
                self._schedule(max(wake + WAKE_MARGIN, self._next_allowed()))  # type: ignore[operator]

    def _pass(self) -> None:
        if not self.leading:
            self.last_pass_at = time.time()
            return
        start = time.perf_counter()
        try:
            # Skip the pass when neither the database nor the heartbeats changed since the
            # last one (a kick is only a hint: a no-op apply kicks too), unless that one left
            # something waiting on time and an interval has passed, or left services for the
            # next (over its budget), or the safety net's sweep is due. The check is a few
            # aggregate queries.
            now = time.time()
            since = now - self._last_full
            self._sweep = now - self._last_sweep >= SWEEP_EVERY
            due = self._sweep or self._deferred or (self._waiting and since >= self.interval * 0.9)
            if not due and not self.db.run(self._changed):
                self.last_pass_at = time.time()
                self.skipped += 1
                self._burst = self._api_kick >= now
                self._wake_nodes(set(), time.time())  # nodes held back by WAKE_SPACING or a burst
                return
            self._last_full = now
            with gcpause.paused():  # see gcpause.py
                touched = self.db.run(self._full_pass)
            # committed: what it planned counts as seen (reconcile)
            (self._fingerprint, self._seen, self._planned_at, self._node_seen, self._deferred,
             self._placing) = self._book
            self._last_duration = time.time() - self._last_full
            if self._sweep:
                self._last_sweep = now
            if touched:
                self._waiting = True  # look again next interval: did what we asked for happen?
            if self._deferred:
                with self._flags:
                    self._dirty = True  # the services over budget: the next pass comes at once
        except NotLeader as exc:
            metrics.FENCED.inc()
            self._waiting = True
            if self.elector is not None:
                self.elector.lost(self.elector.epoch or 0, str(exc))
            log.warning("reconcile pass discarded: %s", exc)
            return
        except Exception:
            self._waiting = True
            log.exception("reconcile pass failed; the next pass retries")
            return
        self.last_pass_at = time.time()
        self.passes += 1
        metrics.LOOP_SECONDS.observe(time.perf_counter() - start)
        if touched:
            self.hub.events_changed()
        self._burst = self._api_kick >= now
        self._wake_nodes(touched, time.time())

    def _wake_nodes(self, touched: set[str], now: float) -> None:
        """Wake the long polls of nodes whose assignments changed: while a backlog is worked
        off, up to HOLD_MAX later, together, and on a large cluster while a backlog or a burst of
        API writes lasts, up to a heartbeat interval later;
        a node woken less than WAKE_SPACING ago, when that has passed (a pass is scheduled for
        then)."""
        if touched and not self._held:
            self._held_since = now
        self._held |= touched
        if not self._held:
            return
        if self._placing or self._burst:
            limit = HOLD_MAX if self._placing else 0.0
            beat = self.hub.heartbeat_interval()
            if beat > self.hub.base_heartbeat:  # a large cluster: wake-ups are what costs
                limit = max(limit, HOLD_HEARTBEATS * beat)
            until = self._held_since + limit
            if now < until:
                # a pass comes then at the latest (a burst's last write kicks one sooner)
                self._wake = until if self._wake is None else min(self._wake, until)
                return
        spacing = WAKE_SPACING * self.hub.heartbeat_interval()
        self._woken = {n: t for n, t in self._woken.items() if now - t < spacing}
        due = self._held - self._woken.keys()
        if due:
            self._held -= due
            self._woken.update(dict.fromkeys(due, now))
            self.hub.bump(due)
        if self._held:
            self._held_since = now
            release = min(self._woken[n] for n in self._held) + spacing
            self._wake = release if self._wake is None else min(self._wake, release)

    def _wake_held(self) -> None:
        held, self._held = self._held, set()
        if held:
            self.hub.bump(held)

    def _full_pass(self, s: Session) -> set[str]:
        # Nothing is written before the commit: an autoflush in the middle would take
        # SQLite's write lock for the rest of the pass (a few hundred ms at 10,000 instances)
        # and hold up every agent report and API write meanwhile.
        with s.no_autoflush:
            touched = self.reconcile(s, time.time())
            fresh = s.info.pop("fresh", [])
            if self.elector is not None and (s.new or s.dirty or s.deleted or fresh or s.info.get("core_writes")):
                epoch = self.elector.epoch
                if epoch is None:
                    raise NotLeader("this server stopped leading during the pass")
                self.elector.lease.fence(s, epoch)  # the first write: nothing lands without the lease
        new_instances.write(s, fresh)
        return touched

    def _state(self, s: Session) -> tuple[tuple, list[NodeRow]]:
        """(fingerprint of the desired and observed state, the nodes): pass_state.load."""
        snap = pass_state.load(s)
        return snap.fingerprint, snap.nodes

    def _changed(self, s: Session) -> bool:
        """Would a pass have anything to do? (state changed, or a node's liveness did)"""
        fp, nodes = self._state(s)
        if fp != self._fingerprint:
            return True
        return bool(self._decide(self._beats(nodes), time.time()))

    def _beats(self, nodes: list[NodeRow]) -> list[liveness.NodeBeat]:
        return [liveness.NodeBeat(n.name, n.status, n.last_heartbeat, self.hub.heartbeats.get(n.name, 0.0),
                                  n.suspect_since or 0.0) for n in nodes]

    def _decide(self, views: list[liveness.NodeBeat], now: float) -> list[liveness.Transition]:
        """core/liveness.py's decision with this server's TTL, grace and start of term; notes when
        to look again (self._wake)."""
        # stretched in large clusters, by the count of every node row: any server may have handed
        # its agents the interval of that many (see hub.py)
        ttl = self.hub.node_ttl(self.node_ttl, len(views))
        grace = self.hub.node_grace(self.node_grace, len(views)) if self.node_grace > 0 else None
        since = self._grace_from()
        self._wake = liveness.next_deadline(views, now, ttl, since, grace)
        return liveness.decide(views, now, ttl, since, grace)

    def _grace_from(self) -> float:
        """Nodes get one TTL of grace from when this server started, or began to lead."""
        since = self.hub.started_at
        if self.elector is not None:
            since = max(since, self.elector.leading_since)
        return since

    def reconcile(self, s: Session, now: float) -> set[str]:
        touched: set[str] = set()
        snap = pass_state.load(s)  # the state this pass starts from (see core/scope.py for the choice)
        self._pass_no += 1
        nodes = {n.name: n for n in snap.nodes}
        services = {svc.name: svc for svc in s.scalars(select(Service))}
        fresh = self._fingerprint is None  # first pass of this term: every service is new to it
        moved_nodes = set() if fresh else {n.name for n in snap.nodes if self._node_seen.get(n.name) != n.key()}
        hit, lost = self._liveness(s, nodes, now)
        touched |= hit
        if fresh:
            # a new term: the last leader may have died between a commit and its wake-up, or
            # holding a backlog's (HOLD_MAX), and a follower's long polls would then time out
            # unchanged: every node's agent is told once to read its assignments again
            touched |= set(nodes)
        drained = {n.name for n in nodes.values() if n.availability == "drained"}
        rolling = {tuple(r) for r in s.execute(select(Stack.namespace, Stack.name).where(Stack.state == "rolling"))}
        must = lost | {svc.name for svc in services.values() if (svc.namespace, svc.stack) in rolling}
        urgent, watched = self._watched_before(s, snap, services, drained)
        current = {name: snap.service_fingerprint(name) for name in services}
        sizes = {name: max(snap.instances.get(name, (0,))[0], svc.replicas) for name, svc in services.items()}
        # created and not planned yet (a service scaled to 0 has no rows either, and nothing to do)
        new = {name for name, svc in services.items() if name not in snap.instances and svc.replicas > 0}
        pick = scope.choose(services, sizes, must=must, urgent=urgent, new=new, watched=watched,
                            sweep=self._sweep,
                            dirty=scope.changed(current, self._seen) | pass_state.services_on(s, moved_nodes),
                            last_planned=self._planned_at, sweep_budget=SWEEP_BUDGET,
                            budget=self.budget * (BACKLOG_BUDGET_FACTOR if self._placing and not self._burst else 1))
        plan = pick.plan
        instances = list(s.scalars(select(Instance).options(load_only(*PASS_COLUMNS))
                                   .where(Instance.service_name.in_(list(plan))))) if plan else []
        by_service: dict[str, list[Instance]] = {}
        for i in instances:
            if i.desired_state == "running":
                by_service.setdefault(i.service_name, []).append(i)
        emptied: set[str] = set()  # drained nodes whose instances were stopped in this pass
        slices = priority.Slices()  # API requests go first (priority.py)
        for svc in services.values():
            if svc.name not in plan:
                continue
            slices.tick()
            live = by_service.get(svc.name, [])
            # instances on drained nodes, and those the rebalancer moves (automation.py), are
            # hidden from the planner, so it creates replacements
            moved = rebalance.moving_ids(svc.automation) if svc.automation else set()
            moving = [i for i in live if i.node_name in drained or i.id in moved]
            staying = [i for i in live if i.node_name not in drained] if moving else live
            touched |= self._plan_service(s, svc, staying, now, instances, moving)
            if moving:
                touched |= self._drain(s, svc, staying, moving, now)
                emptied |= {i.node_name for i in moving if i.desired_state == "stopped"}  # type: ignore[misc]
        if emptied:
            busy = {i.node_name for i in instances if i.desired_state == "running"}
            for name in emptied - busy - pass_state.nodes_running(s, emptied, plan):
                record(s, "node_drain_complete", f"node {name} is drained: all its instances run elsewhere",
                       node=name, now=now)
        if self._sweep:
            self._usage.clear()  # read again in full now and then (see UsageCache)
        touched |= self._place(s, services, nodes, instances, plan, now, snap)
        self._collect(s, instances, nodes, plan)
        touched |= stack_monitor.step(s, services, instances, now)  # rolling releases (stacks/monitor.py)
        metrics.NODES.clear()
        for (status, availability), count in Counter((n.status, n.availability) for n in nodes.values()).items():
            metrics.NODES.labels(status=status, availability=availability).set(count)
        pending = [i.service_name for i in instances if i.desired_state == "running" and i.node_name is None]
        metrics.PENDING.set(len(pending) + sum(snap.pending(name) for name in snap.instances if name not in plan))
        # Time alone can move a rollout (deadlines, readiness delays), a drain, or the retry of
        # unschedulable instances: while any is under way, passes are never skipped.
        # Services whose instances' states the planner is waiting on (a rollout, a drain): an
        # agent report about them kicks a pass at once; other state reports wait for the
        # next interval (api/agent.py), so 10,000 "running" reports make a few passes.
        after = {svc.name for svc in services.values() if svc.rollout_phase == "progressing"}
        after |= set(pending) | {i.service_name for i in instances
                                 if i.desired_state == "running" and i.node_name in drained}
        after |= (urgent | watched) - plan  # not planned: as they were
        self.hub.watched = frozenset(after)
        self._waiting = bool(after) or bool(s.info.get("fresh") or s.new or s.deleted
                                             or any(s.is_modified(o) for o in s.dirty))
        # kept once the pass commits (_pass): a pass that is rolled back planned nothing
        seen = {name: fp for name, fp in self._seen.items() if name in services}
        seen.update((name, current[name]) for name in plan)
        planned_at = {name: k for name, k in self._planned_at.items() if name in services}
        planned_at.update((name, self._pass_no) for name in plan)
        # the wake-up hold lasts while deferred services have instances to create or place (new,
        # waiting for a node, or whose row a client changed since it was last planned: a scale-up,
        # a new revision), not while passes only catch up with the rollouts of what runs
        placing = any(name in new or snap.pending(name)
                      or pass_state.fingerprint_version(self._seen.get(name)) != snap.version(name)
                      for name in pick.deferred)
        self._book = (snap.fingerprint, seen, planned_at, {n.name: n.key() for n in nodes.values()},
                      bool(pick.deferred), placing)
        return touched

    def _watched_before(self, s: Session, snap: pass_state.Snapshot, services: dict[str, Service],
                        drained: set[str]) -> tuple[set[str], set[str]]:
        """Services time alone moves, from the rows as the pass found them: (urgent, watched),
        core/scope.py's classes 1 and 3 (instances waiting for a node, drains, rebalance moves;
        rollouts in progress)."""
        urgent = {svc.name for svc in services.values()
                  if snap.pending(svc.name) or (svc.automation and rebalance.moving_ids(svc.automation))}
        urgent |= pass_state.services_on(s, drained)
        return urgent, {svc.name for svc in services.values() if svc.rollout_phase == "progressing"}

    def _liveness(self, s: Session, nodes: dict[str, NodeRow], now: float) -> tuple[set[str], set[str]]:
        """Nodes going down or coming back: (nodes touched, services that lost instances)."""
        touched, hit = set(), set()
        views = self._beats(list(nodes.values()))
        dropped = {v.name: v.suspect for v in views}
        for t in self._decide(views, now):
            row, n = nodes[t.node], s.get(Node, t.node)
            if n is None:  # removed meanwhile
                continue
            n.status = row.status = t.status
            n.last_heartbeat = row.last_heartbeat = t.seen
            if t.status == "ready" and n.suspect_since is not None:
                # beating since (kept while down: a beat must be newer to bring it back)
                n.suspect_since = row.suspect_since = None
            touched.add(n.name)
            if t.status == "down":
                lost = s.scalars(
                    select(Instance).where(Instance.node_name == n.name, Instance.desired_state == "running")
                ).all()
                for i in lost:
                    # fenced: the node's agent will remove it when it comes back
                    i.state, i.desired_state, i.updated_at = "lost", "stopped", now
                    hit.add(i.service_name)
                from orchestrator.dockerapi import store as dockerapi_store  # (it imports service_ops, which imports us)

                dockerapi_store.node_lost(s, lost, now)  # `docker run --restart no`: not rescheduled
                why = (f"closed its agent's connection and did not reconnect for {now - dropped[n.name]:.1f}s"
                       if t.dropped else f"missed heartbeats for {now - t.seen:.1f}s")
                record(s, "node_down", f"node {n.name} {why}; {len(lost)} instance(s) lost and being replaced",
                       node=n.name, now=now)
            else:
                # beating again: normally the sync that ended the silence did this; this catches a
                # sync that raced the pass marking it down, or one another server heard
                record(s, "node_ready", f"node {n.name} is back", node=n.name, now=now)
        return touched, hit

    def _plan_service(self, s: Session, svc: Service, live: list[Instance], now: float, all_: list[Instance],
                      moving: list[Instance]) -> set[str]:
        touched: set[str] = set()
        p = planner.plan(service_view(svc), [view(i) for i in live], now, tuple(view(i) for i in moving))
        by_id = {i.id: i for i in live}
        for iid in p.stop:
            i = by_id[iid]
            i.desired_state, i.updated_at = "stopped", now
            if i.node_name:
                touched.add(i.node_name)
        fresh = s.info.setdefault("fresh", [])  # written at the pass's end (new_instances.py)
        for slot, rev in p.create:
            inst = new_instances.NewInstance(id=new_instance_id(), service_name=svc.name, slot=slot, revision=rev,
                                             created_at=now, updated_at=now)
            fresh.append(inst)
            all_.append(inst)  # type: ignore[arg-type]
        if p.failure and svc.rollout_phase == "progressing":
            self._fail_rollout(s, svc, p.failure, now)
        elif p.phase != svc.rollout_phase:
            if p.phase == "complete":
                record(s, "rollout_complete", f"revision {svc.revision} is rolled out", service=svc.name, now=now)
            svc.rollout_phase = p.phase
        return touched

    def _drain(self, s: Session, svc: Service, staying: list[Instance], moving: list[Instance], now: float) -> set[str]:
        """Stop instances on drained nodes (or being moved) whose replacements are ready elsewhere (core/drain.py)."""
        moved = rebalance.moving_ids(svc.automation) if svc.automation else set()
        min_ready = (svc.spec.get("update") or {}).get("min_ready_seconds", 0.0)
        still = [view(i) for i in staying if i.desired_state == "running"]
        stops = set(drain.drain_stops(svc.replicas, still, [view(i) for i in moving], now, min_ready))
        touched: set[str] = set()
        for i in moving:
            if i.id not in stops:
                continue
            i.desired_state, i.updated_at = "stopped", now
            touched.add(i.node_name)  # type: ignore[arg-type]
            why = ("enough instances are ready elsewhere" if planner.is_ready(view(i), now, min_ready)
                   else f"it was not ready ({i.state})")
            where = f"drained node {i.node_name}" if i.id not in moved else f"node {i.node_name} (rebalance)"
            record(s, "instance_drained", f"slot {i.slot} ({i.id}) stopped on {where}: {why}",
                   service=svc.name, node=i.node_name, instance=i.id, now=now)
        return touched

    def _fail_rollout(self, s: Session, svc: Service, reason: str, now: float) -> None:
        action = svc.spec.get("update", {}).get("failure_action", "rollback")
        if action == "rollback" and svc.rollout_from is not None:
            bad = svc.revision
            from orchestrator.revisions import activate

            activate(s, svc, svc.rollout_from, now)
            svc.rollout_phase, svc.rollout_reason = "rolled_back", f"rolled back from revision {bad}: {reason}"
            record(s, "rollout_rolled_back", svc.rollout_reason, service=svc.name, now=now)
        else:
            svc.rollout_phase, svc.rollout_reason = "paused", f"paused: {reason}"
            record(s, "rollout_paused", svc.rollout_reason, service=svc.name, now=now)

    def _place(self, s: Session, services: dict[str, Service], nodes: dict[str, NodeRow],
               instances: list[Instance], plan: frozenset[str], now: float,
               snap: pass_state.Snapshot) -> set[str]:
        """Place the pending instances of the planned services. What the nodes already hold comes
        from the loaded instances for those, and from an aggregate query for all others."""
        pending = [i for i in instances if i.desired_state == "running" and i.node_name is None
                   and i.service_name in services]
        if not pending:
            for name in plan:
                self.unschedulable.pop(name, None)
                services[name].status_message = ""
            return set()
        t0 = time.perf_counter()
        held: list[pass_state.Usage] = [(i.node_name, i.service_name, i.revision, i.desired_state, 1)
                                        for i in instances if i.node_name is not None and i.state != "lost"]
        held += self._usage.rows(s, snap, plan)
        infos = node_infos(nodes.values(), held, revision_specs(s, services, {(h[1], h[2]) for h in held}))
        reqs = [request_for(i, services[i.service_name]) for i in sorted(pending, key=lambda i: (i.service_name, i.slot))]
        decisions = scheduler.place(reqs, infos)
        metrics.PLACEMENT_SECONDS.observe(time.perf_counter() - t0)
        by_id = {i.id: i for i in pending}
        touched, reasons, placed = set(), {}, []
        for d in decisions:
            inst = by_id[d.key]
            if d.node is None:
                inst.last_error = f"unschedulable: {d.reason}"
                reasons[inst.service_name] = d.reason or "no node fits"
                continue
            placed.append((inst, d.node))
            touched.add(d.node)
        self._assign(s, placed, now)
        for name, reason in reasons.items():
            if self.unschedulable.get(name) != reason:
                record(s, "unschedulable", f"cannot place instance(s): {reason}", service=name, now=now)
        for name in plan:
            if name in reasons:
                self.unschedulable[name] = reasons[name]
            else:
                self.unschedulable.pop(name, None)
            services[name].status_message = reasons.get(name, "")
        return touched

    def _assign(self, s: Session, placed: list[tuple[Instance, str]], now: float) -> None:
        """Write placements as one executemany: the ORM's flush of 50,000 of them (a 5,000-node
        cluster filling up) took twice as long, and its bookkeeping more. The objects get the
        same values without history, so the flush leaves them alone; the pass fences this
        write like any other (_full_pass)."""
        for i, node in placed:
            if isinstance(i, new_instances.NewInstance):  # made by this pass: its INSERT carries the placement
                i.node_name, i.state, i.last_error, i.updated_at = node, "assigned", "", now
        placed = [(i, node) for i, node in placed if not isinstance(i, new_instances.NewInstance)]
        if not placed:
            return
        t = Instance.__table__
        stmt = (update(t).where(t.c.id == bindparam("k"))
                .values(node_name=bindparam("n"), state="assigned", last_error="", updated_at=now))
        with db_writes.naming(s, {i.service_name for i, _ in placed}):
            s.connection().execute(stmt, [{"k": i.id, "n": node} for i, node in placed])
        s.info["core_writes"] = True
        for i, node in placed:
            for attr, value in (("node_name", node), ("state", "assigned"), ("last_error", ""), ("updated_at", now)):
                set_committed_value(i, attr, value)

    def _collect(self, s: Session, instances: list[Instance], nodes: dict[str, NodeRow], plan: frozenset[str]) -> None:
        """Forget stopped instances that have no node to run on (never placed, or node removed):
        the loaded ones as this pass left them, the others as the database has them."""
        for i in instances:
            if i.desired_state == "stopped" and (i.node_name is None or i.node_name not in nodes):
                s.delete(i)
        for i in pass_state.orphans(s, plan):
            s.delete(i)
