"""The agent process: join, long-poll assignments, reconcile the local engine, report back.

Three threads: the poller (long poll for assignments, which is also the heartbeat), the
Docker events watcher (a crash wakes the reconciler at once) and the reconciler, which
runs the pure diff and hands actions to a bounded pool so containers start in parallel.
Unless --metrics-interval is 0, one more posts the containers' CPU and memory and the
gateway's traffic to the server (agent/metrics_reporter.py).
Nothing but the node credential is kept on disk (agent/identity.py): a restarted agent
re-joins with it and re-adopts its labelled containers.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent import diff as d, identity, tls, wire
from agent.api import AgentAPI
from agent.client import AuthLost, SyncClient
from agent.driver import DockerDriver, DriverError, publishes_ports
from agent.health import Check, Prober
from agent.types import Assignment, Observed
from agent.view import LocalView

log = logging.getLogger("dockyard.agent")
FULL_REPORT_EVERY = 10.0  # seconds: re-send an unchanged report now and then (level-triggered)
# The container list is the safety net under the Docker events (agent/view.py): taken at least
# this often, or, when a list is slow (thousands of containers on the engine), this many times
# its duration apart, so that it costs the engine at most a few per cent of a core.
LIST_EVERY = 1.0
LIST_SPACING = 20.0
# A changed report waits until this many times the last report's round trip has passed since
# it: the server reads every instance of the node for each report, so while hundreds of
# containers start, one report per start made the server's work grow with the square of
# their number. A change after a quiet spell is reported at once.
REPORT_SPACING = 5.0


@dataclass
class AgentConfig:
    server: str
    join_token: str
    node_name: str
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory: int | None = None
    address: str = ""
    listen: str = "127.0.0.1:0"
    concurrency: int = 8
    verify: object = True
    # the agent API's own certificate (agent/tls.py); made at start when the server is https
    tls_cert: str | None = field(default_factory=lambda: os.environ.get("DOCKYARD_AGENT_TLS_CERT") or None)
    tls_key: str | None = field(default_factory=lambda: os.environ.get("DOCKYARD_AGENT_TLS_KEY") or None)
    state_dir: str = field(default_factory=lambda: str(identity.default_dir()))  # the saved node credential
    # the node's gateway (agent/gateway/): "" runs none; "127.0.0.1:8000" is what `dockyard up` uses
    gateway_listen: str = ""
    # seconds a container that leaves the assignments keeps running after it left every
    # gateway's routes, so requests already on their way to it finish (the ordered drain)
    drain_seconds: float = 2.0
    # seconds the gateway waits for a backend's response (headers, then each read) before 504
    gateway_timeout: float = 60.0
    # one log line per request the gateway answers (logger dockyard.gateway.access)
    gateway_access_log: bool = False
    # seconds between two POSTs of the containers' CPU/memory and the gateway's traffic
    # (agent/metrics_reporter.py); 0 sends none
    metrics_interval: float = 5.0


class Agent:
    def __init__(self, cfg: AgentConfig, driver: DockerDriver | None = None):
        self.cfg = cfg
        self.driver = driver or DockerDriver(cfg.node_name)
        self.client = SyncClient(cfg.server, verify=cfg.verify)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.generation: str | None = None
        self.assignments: dict[str, Assignment] = {}
        self.have_assignments = False  # never remove anything before the first answer
        self.restarts: dict[str, d.RestartInfo] = {}
        self.errors: dict[str, str] = {}  # instance id -> why its container could not start
        self.run_backoff: dict[str, float] = {}
        self.run_failures: dict[str, int] = {}
        self.busy: set[str] = set()
        # instance id -> until when its container keeps running after it left the assignments
        self.draining: dict[str, float] = {}
        # containers Docker said died: its list can still show them running for a moment
        self.died: set[str] = set()
        # what runs, as the reconciler last saw it: the metrics thread samples these, listing nothing itself
        self.observed: list[Observed] = []
        # the last container list, patched with our own actions since (agent/view.py); under self.lock
        self.view = LocalView()
        self._listed_at = float("-inf")  # time.monotonic() when the last list began
        self._list_took = 0.0
        self._report_next = 0.0  # time.monotonic() before which a changed report waits
        self._report_waits = False  # a report waited: the reconciler looks again when it may go
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="act")
        self.heartbeat = 1.0
        self._last_report: list[dict] | None = None
        self._last_report_at = 0.0
        # http/tcp health checks; a status change wakes the reconciler, which reports it
        self.prober = Prober(self.driver.probe_address, self.wake.set)
        # the small authenticated API the server calls for logs; the key comes with the join
        self.agent_key: str | None = None
        self.tls: tls.Material | None = None
        if tls.wanted(cfg.server, cfg.tls_cert, cfg.tls_key):
            self.tls = tls.load(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert else tls.generate(
                AgentAPI.advertised_host_of(cfg.listen, cfg.address))
        self.api = AgentAPI(cfg.listen, self.driver, lambda: self.agent_key, cfg.address,
                            tls.server_context(self.tls) if self.tls else None)
        self.agent_url = ""
        self._primed = False
        self.gateway = None
        if cfg.gateway_listen:
            from agent.gateway import Gateway  # only a node that runs a gateway pays for it

            self.gateway = Gateway(cfg.gateway_listen, response_timeout=cfg.gateway_timeout,
                                   access_log=cfg.gateway_access_log)
            self.client.routes_known = ""  # ask the servers for the routing table
            self.client.on_routes = self.gateway.update
        self.api.gateway = self.gateway

    # -- server side ---------------------------------------------------------------
    def join(self) -> None:
        delay = 0.2
        while not self.stop.is_set():
            try:
                info = self.driver.info()
                # the node's current credential, if we have one: the server lets only it re-join a
                # node that is alive (orchestrator/join.py)
                credential = self.client.credential or identity.load(self.cfg.state_dir, self.cfg.node_name)
                out = self.client.join(wire.join_request(
                    join_token=self.cfg.join_token, node_name=self.cfg.node_name, address=self.cfg.address,
                    labels=self.cfg.labels, cpus=self.cfg.cpus or info["cpus"],
                    memory=self.cfg.memory or info["memory"], agent_version=_version(),
                    engine_version=info["engine_version"], agent_url=self.agent_url,
                    credential=credential, agent_cert=self.tls.pem if self.tls else "",
                    gateway="%s:%d" % self.gateway.address if self.gateway is not None else "",
                ))
                if out["credential"] != credential:
                    identity.save(self.cfg.state_dir, self.cfg.node_name, out["credential"])
                self.heartbeat = out.get("heartbeat_interval", 1.0)
                self.agent_key = out.get("agent_key")
                log.info("joined %s as node %s", self.cfg.server, self.cfg.node_name)
                return
            except Exception as exc:
                log.warning("join failed (%s); retrying in %.1fs", exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _take(self, generation: str, assignments: list[Assignment] | None) -> None:
        if assignments is None:  # unchanged since the generation we sent
            return
        with self.lock:
            if generation != self.generation or not self.have_assignments:
                self.generation = generation
                now = time.time()
                wanted = {a.instance_id for a in assignments}
                for iid, old in self.assignments.items():
                    # routed to: it left every gateway's routes with this same change (the
                    # server's routing table); requests already sent to it finish before
                    # SIGTERM, and its stop timeout bounds what is still running after that
                    if iid not in wanted and old.spec.get("expose") and iid not in self.draining:
                        self.draining[iid] = now + self.cfg.drain_seconds
                self.assignments = {a.instance_id: a for a in assignments}
                self.have_assignments = True
                for a in assignments:  # the server's count survives our restarts
                    info = self.restarts.setdefault(a.instance_id, d.RestartInfo())
                    info.count = max(info.count, a.restart_count)
                self.wake.set()

    def poll_forever(self) -> None:
        failed = False
        while not self.stop.is_set():
            try:
                # a random share off the wait: agents that polled together (a restart, a change
                # for every node) drift apart instead of hitting the server in waves forever
                wait = self.heartbeat * random.uniform(0.75, 1.0)
                # the periodic re-send of an unchanged report (level-triggered) rides on the
                # long poll instead of costing the server a request of its own; changes are
                # reported at once by report()
                last = self._last_report
                resend = last if last is not None and time.time() - self._last_report_at >= FULL_REPORT_EVERY else None
                gen, assignments, self.heartbeat = self.client.sync(self.generation, wait, resend)
                if resend is not None:
                    self._last_report_at = time.time()
                self._take(gen, assignments)
            except AuthLost:
                log.warning("credential refused; joining again")
                self.join()
            except Exception as exc:
                # the data plane outlives the control plane: keep running what we have
                log.warning("sync failed (%s); containers keep running, retrying", exc)
                # the first failure after a success is retried at once: a server that saw our
                # long poll's connection close gives us only a short grace (--node-grace)
                if failed:
                    self.stop.wait(1.0)
                failed = True
            else:
                failed = False

    def report(self, observed: list[Observed], force: bool = False) -> None:
        began = time.monotonic()
        if not force and began < self._report_next:
            self._report_waits = True  # too soon after the last one (REPORT_SPACING)
            return
        items = self._report_items(observed)
        now = time.time()
        if not force and items == self._last_report:
            return  # unchanged: poll_forever re-sends it now and then
        try:
            gen, assignments, _ = self.client.sync(self.generation, 0, items)
            self._last_report, self._last_report_at = items, now
            self._report_next = time.monotonic() + REPORT_SPACING * (time.monotonic() - began)
            self._take(gen, assignments)
        except AuthLost:
            pass  # the poller joins again; the next pass reports
        except Exception as exc:
            log.debug("report failed: %s", exc)

    def _report_items(self, observed: list[Observed]) -> list[dict]:
        items = []
        with self.lock:
            assigned = dict(self.assignments)
        for o in observed:
            a = assigned.get(o.instance_id)
            policy = ((a.spec.get("restart") or {}).get("policy", "always")) if a else "always"
            state, healthy = d.report_state(o, policy)
            items.append(wire.report_item(
                o.instance_id, state, container_id=o.container_id, healthy=healthy, exit_code=o.exit_code,
                host_ports=o.host_ports, restart_count=self.restarts.get(o.instance_id, d.RestartInfo()).count,
                error=o.error or ""))
        seen = {o.instance_id for o in observed}
        for iid, err in self.errors.items():
            if iid not in seen and iid in assigned:
                items.append(wire.report_item(iid, "failed", error=err,
                                              restart_count=self.restarts.get(iid, d.RestartInfo()).count))
        return sorted(items, key=lambda i: i["instance_id"])

    # -- local side ----------------------------------------------------------------
    def watch_events(self) -> None:
        while not self.stop.is_set():
            try:
                for action, cid, iid in self.driver.events(self.stop):
                    with self.lock:
                        self._event(action, cid, iid)
                    self.wake.set()
            except Exception as exc:
                log.warning("docker events stream failed (%s); reconnecting", exc)
                self.stop.wait(1.0)

    def _event(self, action: str, cid: str, iid: str) -> None:
        """One Docker event about our containers (under self.lock): our own starts and removals
        say nothing new; anything else makes the next pass list the containers."""
        removing = "rm:" + cid in self.busy
        if self.view.own(action, cid) or (action == "start" and iid in self.busy) or (
                action in ("die", "destroy") and removing):
            return
        if action in ("die", "oom"):
            self.died.add(cid)
            self.view.did_die(cid, starting=iid in self.busy)
        self.view.stale = True

    def reconcile_forever(self) -> None:
        while not self.stop.is_set():
            timeout = 1.0
            if self._report_waits:
                timeout = min(timeout, max(0.0, self._report_next - time.monotonic()))
            self.wake.wait(timeout=timeout)
            self.wake.clear()
            self._report_waits = False
            try:
                self.reconcile_once()
            except Exception as exc:
                log.warning("local reconcile failed (%s); retrying", exc)
                self.stop.wait(0.5)

    def reconcile_once(self) -> None:
        with self.lock:
            # taken before listing: an action that finishes while we list stays busy for this pass,
            # so its half-done container (e.g. created, not yet started) is not "restarted"
            busy = frozenset(self.busy)
            began = time.monotonic()
            listing = self.view.stale or began - self._listed_at >= max(LIST_EVERY, LIST_SPACING * self._list_took)
            token = self.view.begin_list() if listing else 0
        if listing:
            listed = self._fresh(self.driver.list())
            self._listed_at, self._list_took = began, time.monotonic() - began
        with self.lock:
            if listing:
                self.view.took_list(token, listed)
            observed = self.view.current()
        self.observed = observed
        now = time.time()
        with self.lock:
            if not self.have_assignments:
                return
            assigned = list(self.assignments.values())
        observed = self._with_health(observed, assigned)
        for o in observed:  # a stable run resets the back-off
            info = self.restarts.get(o.instance_id)
            if info and o.state == "running" and info.consecutive and now - info.last_at > d.STABLE_SECONDS:
                info.consecutive = 0
        actions = d.diff(assigned, observed, self.restarts, now, busy, self.run_backoff, self.draining)
        with self.lock:  # drains that ended or whose container is gone
            present = {o.instance_id for o in observed}
            for iid in [k for k, until in self.draining.items() if until <= now - 60 or k not in present]:
                del self.draining[iid]
        for a in actions.run:
            self._submit(a.instance_id, self._run, a)
        for a, cid in actions.restart:
            self._submit(a.instance_id, self._restart, a, cid)
        if actions.recycle:
            # say it is unhealthy before it is restarted: the server takes it out of every
            # gateway's routes (the ordered drain), and _recycle waits a moment for that
            self.report(observed, force=True)
        for a, cid in actions.recycle:
            self._submit(a.instance_id, self._recycle, a, cid)
        for cid, timeout in actions.remove:
            self._submit("rm:" + cid, self._remove, cid, timeout)
        live = {a.instance_id for a in assigned}
        for table in (self.errors, self.run_backoff, self.run_failures):
            for iid in [k for k in table if k not in live]:
                del table[iid]
        if actions.wake_at is not None:
            threading.Timer(max(0.0, actions.wake_at - now) + 0.01, self.wake.set).start()
        self.report(observed)

    def _fresh(self, observed: list[Observed]) -> list[Observed]:
        """Docker sends `die` before its container list shows the container stopped: inspect
        (which is authoritative) the ones that died but still list as running, so a crash is
        acted on in this pass, not a second later."""
        with self.lock:
            died, self.died = self.died, set()
        if not died:
            return observed
        out = []
        for o in observed:
            if o.container_id in died and o.state == "running":
                try:
                    o = self.driver.inspect(o.container_id) or o
                except Exception as exc:  # the list's view will do; the next pass looks again
                    log.debug("inspect of %s failed: %s", o.container_id[:12], exc)
            out.append(o)
        return out

    def _with_health(self, observed: list[Observed], assigned: list[Assignment]) -> list[Observed]:
        """Probe the http/tcp checks of running containers and put the results in `health`
        (exec checks already have Docker's own there)."""
        checks = {a.instance_id: Check.from_spec(a.spec.get("health")) for a in assigned}
        wanted = {o.container_id: checks[o.instance_id] for o in observed
                  if o.state == "running" and checks.get(o.instance_id) is not None}
        self.prober.sync(wanted)  # type: ignore[arg-type]
        if not self._primed:  # first pass: what runs already was adopted, probe it before reporting
            self.prober.prime(list(wanted))
            self._primed = True
        out = []
        for o in observed:
            st = self.prober.status(o.container_id) if o.container_id in wanted else None
            if st is not None:
                o = dataclasses.replace(o, health=st[0], error=st[1] or o.error)
            out.append(o)
        return out

    def _submit(self, key: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            if key in self.busy:
                return
            self.busy.add(key)

        def job() -> None:
            try:
                fn(*args)
            except Exception as exc:
                log.warning("action %s failed: %s", fn.__name__, exc)
                with self.lock:
                    self.view.stale = True  # what it left behind is for a list to tell
            finally:
                with self.lock:
                    self.busy.discard(key)
                self.wake.set()

        self.pool.submit(job)

    def _run(self, a: Assignment) -> None:
        try:
            # the one container whose host ports the engine chose is inspected; the others are
            # known from what was created (agent/view.py)
            started = self.driver.run(a, observe=publishes_ports(a.spec))
            with self.lock:
                self.view.did_start(started)
            self.errors.pop(a.instance_id, None)
            self.run_failures.pop(a.instance_id, None)
            log.info("started %s slot %d (%s)", a.service, a.slot, a.instance_id)
        except DriverError as exc:
            n = self.run_failures.get(a.instance_id, 0) + 1
            self.run_failures[a.instance_id] = n
            self.errors[a.instance_id] = str(exc)
            self.run_backoff[a.instance_id] = time.time() + d.backoff(n, 30.0)
            with self.lock:
                self.view.stale = True
            log.warning("cannot start %s slot %d: %s", a.service, a.slot, exc)

    def _restart(self, a: Assignment, cid: str) -> None:
        info = self.restarts.setdefault(a.instance_id, d.RestartInfo())
        info.count += 1
        info.consecutive += 1
        info.last_at = time.time()
        try:
            self.driver.start(cid)
            log.info("restarted %s slot %d (restart #%d)", a.service, a.slot, info.count)
        except DriverError as exc:
            self.errors[a.instance_id] = str(exc)
            self.driver.remove(cid, 0)  # gone for good: the next pass creates a fresh container
        finally:
            with self.lock:
                self.view.did_restart(cid)  # its state and host ports: the next pass lists

    def _recycle(self, a: Assignment, cid: str) -> None:
        """Unhealthy past its retries: stop and start the container in place, like a crash restart.
        A routed one first leaves the gateways' routes (reported unhealthy by reconcile_once):
        requests already on their way finish, for up to --drain-seconds (1 s at most: it is
        unhealthy, and its slot should serve again soon)."""
        if a.spec.get("expose") and self.cfg.drain_seconds > 0:
            self.stop.wait(min(self.cfg.drain_seconds, 1.0))
        info = self.restarts.setdefault(a.instance_id, d.RestartInfo())
        info.count += 1
        info.consecutive += 1
        info.last_at = time.time()
        try:
            self.driver.restart(cid, a.spec.get("stop_timeout"))
            log.info("restarted unhealthy %s slot %d (restart #%d)", a.service, a.slot, info.count)
        except DriverError as exc:
            self.errors[a.instance_id] = str(exc)
            self.driver.remove(cid, 0)
        finally:
            self.prober.reset(cid)
            with self.lock:
                self.view.did_restart(cid)

    def _remove(self, cid: str, timeout: int | None) -> None:
        self.driver.remove(cid, timeout)  # type: ignore[arg-type]
        with self.lock:
            self.view.did_remove(cid)
        log.info("removed container %s", cid[:12])

    # -- lifecycle -----------------------------------------------------------------
    def run(self) -> int:
        self.agent_url = self.api.start()
        if self.gateway is not None:
            try:
                self.gateway.start()
                self.driver.gateway_port = self.gateway.address[1]
                log.info("gateway listening on %s:%d", *self.gateway.address)
            except (OSError, RuntimeError, ValueError) as exc:  # address in use or malformed
                # the node still runs its containers; only the front door is missing, and says why
                log.error("no gateway on this node (%s); choose another address with --gateway-listen "
                          "(or DOCKYARD_GATEWAY_LISTEN), or '' for none", exc)
                self.gateway = self.api.gateway = None
                self.client.routes_known, self.client.on_routes = None, None
        self.join()
        threads = [threading.Thread(target=f, daemon=True, name=n) for f, n in
                   ((self.poll_forever, "poll"), (self.watch_events, "events"), (self.reconcile_forever, "reconcile"),
                    (lambda: self.prober.run(self.stop), "probe"))]
        if self.cfg.metrics_interval > 0:
            from agent.metrics_reporter import MetricsReporter

            reporter = MetricsReporter(self.cfg.metrics_interval, lambda: self.observed, self.client.metrics,
                                       lambda: self.gateway.metrics if self.gateway is not None else None)
            threads.append(threading.Thread(target=reporter.run, args=(self.stop,), daemon=True, name="metrics"))
        for t in threads:
            t.start()
        self.stop.wait()
        if self.client.credential:
            self.client.leave()  # a deliberate stop: the server waits for the TTL, not the grace
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.api.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.client.close()
        tls.discard(self.tls)
        return 0


def _version() -> str:
    from orchestrator import __version__

    return __version__


def run_agent(cfg: AgentConfig) -> int:
    try:
        agent = Agent(cfg)
    except tls.TLSSetupError as exc:
        log.error("%s", exc)
        return 2
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: agent.stop.set())
    return agent.run()
