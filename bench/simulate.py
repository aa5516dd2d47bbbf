"""One real Dockyard server, many simulated agents: the server at cluster scale.

Run:  .venv/bin/python bench/simulate.py                               # 1,000 agents, 10,000 instances (~2 min)
      .venv/bin/python bench/simulate.py --agents 100 --instances 1000 # a quick run
      .venv/bin/python bench/simulate.py --servers 2 --postgres-url $DOCKYARD_TEST_POSTGRES  # 2 servers, PostgreSQL

A real `dockyard server` process (SQLite, default settings) on 127.0.0.1; in this process,
N fake agents speak the real agent protocol over HTTP/1.1 keep-alive connections (join,
then sync: long poll + reports), through a minimal asyncio client that costs little CPU. Their runtime is fake: an
assigned instance "starts" at once and is reported running. Like the real agent, each one
long-polls with the heartbeat interval the server hands out, reports when what runs
changes, and re-sends an unchanged report every 10 s on its long poll.
With --postgres-url (a PostgreSQL server: a fresh database is made on it and dropped
afterwards) and --servers N, N real servers share that database; agent i talks to server
i mod N and the API load goes round-robin over the servers (a load balancer). Server CPU is
the sum over the servers, RSS is per server, stalls are summed over their /metrics.

Phases and figures:
  join        N agents join
  placement   S services x R replicas are PUT; time until every instance is assigned to a
              fake agent (placed by the scheduler and delivered by long poll), and until
              every report saying they run was acknowledged
  steady      sync latency: for a long poll answered at its timeout, the time beyond the
              wait asked for; for a report (wait 0), the round trip; of the syncs begun in
              the window (--steady-seconds), which starts a heartbeat interval after the
              placement's end. Server CPU and RSS.
  api         GET and PUT /v1/services/{name} (an identical spec: the apply of an unchanged
              manifest) at --api-rate requests/s, open loop, for --api-seconds, while the
              agents keep syncing. p50/p99 per method.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, loadavg, percentile, print_machine, rss_mb  # noqa: E402

import httpx  # noqa: E402  (the placement PUTs)

from tests.harness import ADMIN, IMAGE, JOIN, Cluster, HACluster  # noqa: E402

FULL_REPORT_EVERY = 10.0  # as agent/main.py
GiB = 1024**3


class HTTPError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection to the server: a minimal client so that 1,000 fake
    agents cost the simulator little (httpx's pool slows down with thousands of connections
    in one client, and the simulator shares the machine with the server it measures)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        self.host, self.port = host, port
        self.headers = headers or {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object = None, timeout: float = 75.0) -> tuple[int, object]:
        for attempt in (1, 2):
            reused = self.writer is not None
            try:
                return await asyncio.wait_for(self._request(method, path, body), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, AttributeError) as exc:
                self.close()
                # the server closes idle keep-alive connections (uvicorn: after 5 s); like any
                # HTTP client, retry once on a fresh connection when a reused one was gone
                if not (reused and attempt == 1 and isinstance(exc, (ConnectionError, ValueError,
                                                                      asyncio.IncompleteReadError))):
                    raise HTTPError(f"{method} {path}: {exc!r}") from None
        raise AssertionError("unreachable")

    async def _request(self, method: str, path: str, body: object) -> tuple[int, object]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(data)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        status_line = await reader.readline()
        if not status_line:
            raise ValueError("connection closed")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "connection" and v.strip().lower() == "close":
                close = True
        raw = await reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Stats:
    def __init__(self) -> None:
        self.poll_excess: list[float] = []   # long polls answered at timeout: elapsed - wait
        self.report_rtt: list[float] = []    # reports (wait 0): round trip
        self.recording = False
        # only syncs that began in [since, until] (perf_counter) are recorded: at 5,000 agents a
        # long poll waits ~25 s, and one that began in the placement's tail queued there
        self.since, self.until = 0.0, float("inf")
        self.errors = 0
        self.error_kinds: collections.Counter = collections.Counter()
        self.assigned = 0                     # instances currently assigned, all agents
        self.acked = 0                        # instances whose "running" report was acknowledged
        self.changed = asyncio.Event()


class FakeAgent:
    def __init__(self, name: str, host: str, port: int, stats: Stats, stop: asyncio.Event):
        self.name, self.stats, self.stop = name, stats, stop
        # two connections, like the real agent: the long poll never queues behind a report
        self.poll, self.push = Conn(host, port), Conn(host, port)
        self.generation: str | None = None
        self.heartbeat = 1.0
        self.running: dict[str, dict] = {}   # instance id -> report item
        self.acked: set[str] = set()
        self.last_report = 0.0
        self.reporting = False
        self.again = False

    async def join(self) -> None:
        body = {"join_token": JOIN, "node_name": self.name, "cpus": 16.0, "memory": 64 * GiB,
                "labels": {"zone": random.choice("abc")}, "agent_version": "sim", "engine_version": "sim"}
        for attempt in range(20):
            try:
                status, out = await self.push.request("POST", "/v1/agent/join", body, timeout=30)
                if status != 200:
                    raise HTTPError(f"join: {status} {out}")
                auth = {"Authorization": f"Bearer {out['credential']}"}  # type: ignore[index]
                self.poll.headers = self.push.headers = auth
                self.heartbeat = out.get("heartbeat_interval", 1.0)  # type: ignore[union-attr]
                return
            except HTTPError:
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{self.name} could not join")

    async def _sync(self, wait: float, report: list[dict] | None) -> dict | None:
        t0 = time.perf_counter()
        conn = self.poll if wait > 0 else self.push
        try:
            status, out = await conn.request("POST", "/v1/agent/sync",
                                             {"known": self.generation, "wait": wait, "report": report})
            if status != 200:
                raise HTTPError(f"sync: {status} {out}")
        except HTTPError as exc:
            self.stats.errors += 1
            self.stats.error_kinds[str(exc).split(":", 2)[-1][:60]] += 1
            await asyncio.sleep(0.5)
            return None
        assert isinstance(out, dict)
        took = time.perf_counter() - t0
        if self.stats.recording and self.stats.since <= t0 <= self.stats.until:
            if wait == 0:
                self.stats.report_rtt.append(took)
            elif out.get("assignments") is None:  # answered at its timeout
                self.stats.poll_excess.append(max(0.0, took - wait))
        self.heartbeat = out.get("heartbeat_interval", self.heartbeat)
        return out

    def _take(self, out: dict) -> bool:
        if out.get("assignments") is None or out["generation"] == self.generation:
            return False
        self.generation = out["generation"]
        wanted = {a["instance_id"] for a in out["assignments"]}
        before = len(self.running)
        self.running = {iid: self.running.get(iid) or {
            "instance_id": iid, "container_id": f"fake{iid}", "state": "running", "healthy": None,
            "exit_code": None, "host_ports": [], "restart_count": 0, "error": ""} for iid in wanted}
        self.acked &= wanted
        self.stats.assigned += len(self.running) - before
        self.stats.changed.set()
        return True

    def _acked(self, sent: set[str]) -> None:
        newly = sent - self.acked
        self.acked |= sent
        self.stats.acked += len(newly)
        if newly:
            self.stats.changed.set()

    async def report(self) -> None:
        if self.reporting:
            self.again = True  # as the real agent: a change seen during a report is reported after it
            return
        self.reporting = True
        try:
            while True:
                self.again = False
                items = sorted(self.running.values(), key=lambda i: i["instance_id"])
                out = await self._sync(0, items)
                if out is not None:
                    self.last_report = time.monotonic()
                    self._acked({i["instance_id"] for i in items})
                    self.again |= self._take(out)
                if not self.again or self.stop.is_set():
                    break
        finally:
            self.reporting = False

    async def poll_forever(self) -> None:
        # spread the agents' re-send clocks like independently started agents
        self.last_report = time.monotonic() - random.uniform(0, FULL_REPORT_EVERY)
        while not self.stop.is_set():
            # as agent/main.py: a random share off the wait, and the periodic re-send of an
            # unchanged report rides on the long poll (changes are reported at once)
            due = time.monotonic() - self.last_report >= FULL_REPORT_EVERY
            resend = sorted(self.running.values(), key=lambda i: i["instance_id"]) if due else None
            out = await self._sync(self.heartbeat * random.uniform(0.75, 1.0), resend)
            if out is None:
                continue
            if resend is not None:
                self.last_report = time.monotonic()
                self._acked({i["instance_id"] for i in resend})
            if self._take(out):
                asyncio.get_running_loop().create_task(self.report())


async def wait_until(stats: Stats, pred, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not pred():
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return None
        stats.changed.clear()
        try:
            await asyncio.wait_for(stats.changed.wait(), min(left, 1.0))
        except asyncio.TimeoutError:
            pass
    return time.monotonic() - t0


def spec(replicas: int) -> dict:
    return {"image": IMAGE, "command": ["sleep", "3600"], "replicas": replicas,
            "resources": {"cpus": 0.01, "memory": "16Mi"}}


async def api_load(urls: list[str], names: list[str], rate: float, seconds: float, replicas: int,
                   trace: str | None = None, pools: list | None = None) -> dict[str, list[float]]:
    """Open loop: request i leaves at start + i / rate whatever the earlier ones are doing;
    the requests go round-robin over the servers, a GET and a PUT to each in turn. With `trace`,
    each request's (seconds since start, method, latency) goes to that file, to see when a tail
    happens."""
    traced: list[tuple[float, str, float]] = []
    lat: dict[str, list[float]] = {"GET": [], "PUT": []}
    refused = {"GET": 0, "PUT": 0}  # 503 overloaded: the server's admission control (priority.py)
    errors = 0
    keep = pools is not None  # the caller's connections: left open for its next load
    if pools is None:
        pools = [(*u.rsplit("/", 1)[1].split(":"), []) for u in urls]  # type: ignore[misc]

    async def one(i: int) -> None:
        nonlocal errors
        name = names[i % len(names)]
        method = "GET" if i % 2 == 0 else "PUT"
        host, port, idle = pools[(i // 2) % len(pools)]  # an idle connection to that server, or a new one
        c = idle.pop() if idle else Conn(host, int(port), {"Authorization": f"Bearer {ADMIN}"})
        t0 = time.perf_counter()
        try:
            status, _ = await c.request(method, f"/v1/services/{name}",
                                        None if method == "GET" else spec(replicas), timeout=30)
            if status == 503:
                refused[method] += 1
                raise HTTPError(str(status))
            if status >= 400:
                raise HTTPError(str(status))
            lat[method].append(time.perf_counter() - t0)
            traced.append((t0 - start, method, lat[method][-1]))
        except HTTPError:
            errors += 1
        idle.append(c)

    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(one(i)))
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    if trace:
        with open(trace, "w") as f:
            f.writelines(f"{at:.4f} {m} {took * 1000:.1f}\n" for at, m, took in sorted(traced))
    for _, _, idle in pools if not keep else []:
        for c in idle:
            c.close()
    if errors:
        print(f"  api: {errors} request(s) failed, {sum(refused.values())} of them 503 overloaded")
    lat["refused"] = [float(refused["GET"]), float(refused["PUT"])]
    lat["failed"] = [float(errors)]
    return lat


async def stalls(api: httpx.AsyncClient, urls: list[str]) -> dict[str, float]:
    """Counters from the servers' /metrics (summed) that explain latency tails: GC pauses over
    50 ms (and their total), reconcile passes (count, total seconds)."""
    text = "\n".join([(await api.get(f"{u}/metrics")).text for u in urls])
    out = collections.Counter()
    for line in text.splitlines():
        if line.startswith("dockyard_gc_pause_seconds_count"):
            out["gc"] += float(line.split()[-1])
        elif line.startswith("dockyard_gc_pause_seconds_bucket") and 'le="0.05"' in line:
            out["gc_short"] += float(line.split()[-1])
        elif line.startswith("dockyard_gc_pause_seconds_sum"):
            out["gc_seconds"] += float(line.split()[-1])
            out["gc_seconds_gen" + line.split('generation="')[1][0]] += float(line.split()[-1])
        elif line.startswith("dockyard_read_cache_total"):
            out["cache_" + line.split('result="')[1].split('"')[0]] += float(line.split()[-1])
        elif line.startswith("dockyard_reconcile_pass_seconds_count"):
            out["passes"] += float(line.split()[-1])
        elif line.startswith("dockyard_reconcile_pass_seconds_sum"):
            out["pass_seconds"] += float(line.split()[-1])
        elif line.startswith("dockyard_agent_syncs_total"):
            out["syncs"] += float(line.split()[-1])
        elif line.startswith("dockyard_pending_instances "):
            out["pending"] = max(out["pending"], float(line.split()[-1]))  # the leader's figure
    out["gc_long"] = out["gc"] - out["gc_short"]
    return out


async def per_server(api: httpx.AsyncClient, urls: list[str], pids: list[int]) -> list[tuple[float, float, float]]:
    """(agent syncs answered, HTTP requests answered, CPU seconds) of each server so far."""
    out = []
    for u, pid in zip(urls, pids):
        syncs = reqs = 0.0
        for line in (await api.get(f"{u}/metrics")).text.splitlines():
            if line.startswith("dockyard_agent_syncs_total"):
                syncs += float(line.split()[-1])
            elif line.startswith("dockyard_http_requests_total{"):
                reqs += float(line.split()[-1])
        out.append((syncs, reqs, cpu_seconds(pid)))
    return out


def spread_row(what: str, before: list[tuple[float, float, float]], after: list[tuple[float, float, float]],
               seconds: float) -> tuple[str, str, str]:
    """How the work of a phase spread over the servers: syncs/s, other requests/s, CPU, each server."""
    cells = []
    for (s0, r0, c0), (s1, r1, c1) in zip(before, after):
        syncs = s1 - s0
        cells.append(f"{syncs / seconds:.0f} syncs/s + {max(0.0, r1 - r0 - syncs) / seconds:.0f} other req/s, "
                     f"{(c1 - c0) / seconds * 100:.0f}% CPU")
    return (f"  per server, {what}", "; ".join(f"server {k + 1}: {c}" for k, c in enumerate(cells)), "")


def stall_row(before: dict[str, float], after: dict[str, float]) -> tuple[str, str, str]:
    d = collections.Counter({k: after[k] - before.get(k, 0.0) for k in after})  # a short run may see no GC at all
    passes = d["passes"]
    return ("  server stalls: full reconcile passes; GC pauses > 50 ms",
            f"{passes:.0f} passes, {d['pass_seconds'] / passes * 1000 if passes else 0:.0f} ms each; "
            f"{d['gc_long']:.0f} GC pauses > 50 ms ({d['gc_seconds'] * 1000:.0f} ms of GC in all)",
            "GC ms by generation: " + " / ".join(f"{d.get(f'gc_seconds_gen{g}', 0) * 1000:.0f}" for g in "012")
            + f"; read cache {d.get('cache_hit', 0):.0f} hits, {d.get('cache_miss', 0):.0f} misses")


async def node_downs(api: httpx.AsyncClient) -> int:
    """node_down events recorded so far (every simulated agent stayed alive, so any is false):
    the event stream from the first event, oldest first, until it says it caught up. Any are
    printed (how many, when, the first one's message: which rule declared them)."""
    downs: list[dict] = []
    last = ""
    async with api.stream("GET", "/v1/events", params={"watch": "true", "since": 0}) as r:
        async for line in r.aiter_lines():
            if line.startswith(": keep-alive"):
                break
            if last == "event: node_down" and line.startswith("data:"):
                try:
                    downs.append(json.loads(line[5:]))
                except ValueError:
                    downs.append({})
            last = line
    if downs:
        when = [str(d.get("time", "?")) for d in downs]
        print(f"  node_down: {len(downs)}, from {when[0]} to {when[-1]}; first: {downs[0].get('message')}",
              flush=True)
    return len(downs)


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def settle_gc() -> None:
    """Collect this process's garbage between phases, never during one.

    5,000 fake agents hold ~50,000 assignments and as many in-flight requests' objects: with
    the collector on, this process paused up to 1.2 s at a time (full collections) during the
    placement, and every fake agent's sync in flight then looked 1.2 s slower than the server
    made it. The collector is off for the whole run (main); what it would have found is
    collected here, where nothing is timed, and the survivors are frozen out of later scans.
    """
    gc.collect()
    gc.freeze()


async def run(args: argparse.Namespace, cluster: Cluster) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if isinstance(cluster, HACluster):
        pids = [p.p.pid for p in cluster.servers]  # type: ignore[union-attr]
        ports, urls = cluster.ports, cluster.urls
    else:
        pids, ports, urls = [cluster.server.p.pid], [cluster.port], [cluster.url]  # type: ignore[union-attr]

    def cpu_seconds_all() -> float:
        return sum(cpu_seconds(p) for p in pids)

    def rss() -> str:
        return " + ".join(f"{rss_mb(p):.0f}" for p in pids) + " MiB"

    stats, stop = Stats(), asyncio.Event()
    agents = [FakeAgent(f"sim-{i:04d}", "127.0.0.1", ports[i % len(ports)], stats, stop) for i in range(args.agents)]
    rows.append(("server RSS idle, no nodes", rss(), "target <= 150 MiB"))

    # -- join
    t0 = time.monotonic()
    sem = asyncio.Semaphore(64)

    tasks: list[asyncio.Task] = []

    async def join(a: FakeAgent) -> None:
        async with sem:
            await a.join()
        # polls at once, as a real agent does: a node silent from its join until every other
        # agent joined is one the server may rightly declare down
        tasks.append(asyncio.get_running_loop().create_task(a.poll_forever()))

    await asyncio.gather(*(join(a) for a in agents))
    rows.append((f"{args.agents} agents join (polling as they join)", f"{time.monotonic() - t0:.2f} s", ""))
    deadline = time.monotonic() + 60
    while any(a.generation is None for a in agents) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # every agent got its first (empty) answer
    settle_gc()
    await asyncio.sleep(2.0)
    # at least one heartbeat interval: the agents' first long polls began together (when they
    # had all joined) and end together 75-100 % of an interval later (25 s at 5,000 nodes)
    window = max(5.0, max(a.heartbeat for a in agents))
    stats.recording = True
    cpu0, w0 = cpu_seconds_all(), time.monotonic()
    await asyncio.sleep(window)
    stats.recording = False
    cpu = (cpu_seconds_all() - cpu0) / (time.monotonic() - w0)
    rows.append((f"server RSS, {args.agents} nodes, no instances", rss(), ""))
    rows.append((f"server CPU, {args.agents} nodes syncing, no instances", f"{cpu * 100:.0f}% of a core",
                 f"{len(stats.poll_excess) / window:.0f} syncs/s, p99 {ms(percentile(stats.poll_excess, 99))} past the wait"))
    print(f"  joined: {rows[-1]}", flush=True)

    # -- placement
    services = max(1, args.instances // args.replicas)
    names = [f"sim-svc-{i:03d}" for i in range(services)]
    total = services * args.replicas
    api = httpx.AsyncClient(base_url=cluster.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    put_sem = asyncio.Semaphore(8)
    cpu0 = cpu_seconds_all()
    work0 = await stalls(api, urls)
    t0 = time.monotonic()

    async def put(name: str) -> None:
        async with put_sem:
            for attempt in range(3):
                try:
                    r = await api.put(f"/v1/services/{name}", json=spec(args.replicas))
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # a kept-alive connection the server closed as the request left (uvicorn's
                    # keep-alive timeout under load): a PUT is idempotent, send it again
                    if attempt == 2:
                        raise
            r.raise_for_status()

    async def progress() -> None:  # --progress: where the time of a placement goes
        while args.progress:
            m = await stalls(api, urls)
            print(f"  t={time.monotonic() - t0:6.2f} assigned {stats.assigned} acked {stats.acked}; pending "
                  f"{m['pending']:.0f}, passes {m['passes'] - work0['passes']:.0f} "
                  f"({m['pass_seconds'] - work0['pass_seconds']:.1f} s), syncs {m['syncs'] - work0['syncs']:.0f}",
                  flush=True)
            await asyncio.sleep(1)
    prog = asyncio.get_running_loop().create_task(progress())
    await asyncio.gather(*(put(n) for n in names))
    t_put = time.monotonic() - t0
    t_assigned = await wait_until(stats, lambda: stats.assigned >= total, args.timeout)
    t_acked = await wait_until(stats, lambda: stats.acked >= total, args.timeout)
    t_all = time.monotonic() - t0
    prog.cancel()
    rows.append((f"PUT {services} services x {args.replicas} replicas", f"{t_put:.2f} s", ""))
    rows.append((f"{total} instances placed and assigned to {args.agents} nodes",
                 "timeout" if t_assigned is None else f"{t_put + t_assigned:.2f} s",
                 "target <= 15 s (50,000 on 5,000)" if args.agents >= 5000 else "target <= 5 s (10,000 on 1,000)"))
    rows.append(("... and their running reports acknowledged",
                 "timeout" if t_acked is None else f"{t_all:.2f} s", ""))
    rows.append(("server CPU during placement", f"{cpu_seconds_all() - cpu0:.1f} s", ""))
    work = await stalls(api, urls)
    rows.append(("... its work: agent syncs answered (long polls and reports); reconcile passes",
                 f"{work['syncs'] - work0['syncs']:.0f}; {work['passes'] - work0['passes']:.0f} "
                 f"({work['pass_seconds'] - work0['pass_seconds']:.1f} s)", ""))
    print(f"  placement done: assigned {stats.assigned}/{total}, acked {stats.acked}/{total} (load {loadavg()})",
          flush=True)

    # -- steady state
    # Steady state: after one full re-send cycle. Agents re-send their report every 10 s, and
    # the first re-sends after placement can still carry changes to write (an agent's report
    # raced a newer assignment), so the 10 s after the last acknowledgement are convergence.
    # Long polls that began before then (up to a heartbeat interval: 25 s at 5,000 agents) are
    # not counted: only syncs that begin in the window, followed until they end.
    heartbeat = max(a.heartbeat for a in agents)
    settle_gc()
    await asyncio.sleep(max(FULL_REPORT_EVERY, heartbeat) + 2.0)
    stats.poll_excess.clear()
    stats.report_rtt.clear()
    stats.since, stats.until = time.perf_counter(), time.perf_counter() + args.steady_seconds
    stats.recording = True
    cpu0, w0, before = cpu_seconds_all(), time.monotonic(), await stalls(api, urls)
    spread0 = await per_server(api, urls, pids)
    await asyncio.sleep(args.steady_seconds)
    spread1 = await per_server(api, urls, pids)
    cpu = (cpu_seconds_all() - cpu0) / (time.monotonic() - w0)
    await asyncio.sleep(min(heartbeat, 30.0) + 2.0)  # the polls begun in the window end
    stats.recording = False
    stats.since, stats.until = 0.0, float("inf")
    after = await stalls(api, urls)
    syncs = stats.poll_excess + stats.report_rtt
    rows.append((f"sync latency p50 / p99 ({len(syncs)} syncs in {args.steady_seconds:.0f} s)",
                 f"{ms(percentile(syncs, 50))} / {ms(percentile(syncs, 99))}", "target p99 <= 100 ms"))
    rows.append(("  long polls (some carry the periodic report): time past the wait, p50 / p99",
                 f"{ms(percentile(stats.poll_excess, 50))} / {ms(percentile(stats.poll_excess, 99))}", ""))
    if stats.report_rtt:  # in a steady state nothing changes: re-sends ride on the long polls
        rows.append(("  reports of a change: round trip p50 / p99",
                     f"{ms(percentile(stats.report_rtt, 50))} / {ms(percentile(stats.report_rtt, 99))}", ""))
    rows.append(stall_row(before, after))
    rows.append(("server CPU, steady state", f"{cpu * 100:.0f}% of a core", ""))
    if len(urls) > 1:
        rows.append(spread_row("steady state", spread0, spread1, time.monotonic() - w0))
    rows.append((f"server RSS, {args.agents} nodes, {total} instances", rss(), ""))

    # -- API
    settle_gc()
    pools = [(*u.rsplit("/", 1)[1].split(":"), []) for u in urls]  # kept from the warm-up to the measured load
    if args.api_warmup > 0:  # not measured: the first second's cold reads and new connections
        cold = await api_load(urls, names, args.api_rate, args.api_warmup, args.replicas, pools=pools)
        rows.append((f"API warm-up, {args.api_warmup:g} s at {args.api_rate:g} req/s (not in the figures below), p50 / p99",
                     f"{ms(percentile(cold['GET'] + cold['PUT'], 50))} / {ms(percentile(cold['GET'] + cold['PUT'], 99))}", ""))
        settle_gc()
    cpu0, w0, before = cpu_seconds_all(), time.monotonic(), await stalls(api, urls)
    spread0 = await per_server(api, urls, pids)
    lat = await api_load(urls, names, args.api_rate, args.api_seconds, args.replicas, args.api_trace, pools=pools)
    for _, _, idle in pools:
        for c in idle:
            c.close()
    cpu = (cpu_seconds_all() - cpu0) / (time.monotonic() - w0)
    after = await stalls(api, urls)
    for m in ("GET", "PUT"):
        rows.append((f"API {m} /v1/services/{{name}} at {args.api_rate:g} req/s (mixed), p50 / p99",
                     f"{ms(percentile(lat[m], 50))} / {ms(percentile(lat[m], 99))}", "target p99 <= 50 ms"))
    rows.append(("API requests failed (of them 503 overloaded: GET / PUT)",
                 f"{lat['failed'][0]:.0f} of {int(args.api_rate * args.api_seconds)} "
                 f"({lat['refused'][0]:.0f} / {lat['refused'][1]:.0f})", ""))
    rows.append(("server CPU during the API load (agents syncing too)", f"{cpu * 100:.0f}% of a core", ""))
    if len(urls) > 1:
        rows.append(spread_row("API load", spread0, await per_server(api, urls, pids), time.monotonic() - w0))
    rows.append(stall_row(before, after))
    if stats.errors:
        rows.append(("agent sync errors", str(stats.errors), ""))
        print(f"  sync errors: {stats.error_kinds.most_common(5)}")

    rows.append(("nodes declared down during the run (node_down events; none should be)",
                 str(await node_downs(api)), "no false node-down"))

    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for a in agents:
        a.poll.close()
        a.push.close()
    await api.aclose()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--replicas", type=int, default=100, help="replicas per service (services = instances / replicas)")
    ap.add_argument("--steady-seconds", type=float, default=20.0)
    ap.add_argument("--api-rate", type=float, default=200.0)
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="competing CPU load: N processes spinning a busy loop for the whole run "
                         "(1 on this 2-core machine: a busy loop on the other core)")
    ap.add_argument("--api-seconds", type=float, default=10.0)
    ap.add_argument("--api-warmup", type=float, default=2.0, metavar="SECONDS",
                    help="run the API load this long first, unmeasured (cold read cache, new connections)")
    ap.add_argument("--api-trace", metavar="FILE", help="write each API request's start, method and latency (ms) to FILE")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--progress", action="store_true", help="print placed/acknowledged counts every second while placing")
    ap.add_argument("--server-arg", action="append", default=[], help="extra `dockyard server` flag (repeatable)")
    ap.add_argument("--postgres-url", help="a PostgreSQL server (e.g. $DOCKYARD_TEST_POSTGRES): the servers use a "
                                           "fresh database on it, dropped afterwards (default: SQLite)")
    ap.add_argument("--servers", type=int, default=1, help="servers sharing the database (needs --postgres-url)")
    args = ap.parse_args()
    random.seed(7)
    gc.disable()  # see settle_gc
    if args.servers > 1 and not args.postgres_url:
        ap.error("several servers need --postgres-url")

    db = "PostgreSQL" if args.postgres_url else "SQLite"
    print_machine(f"simulate: {args.servers} server(s) on {db}, {args.agents} simulated agents, {args.instances} instances")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-sim-"))
    drop = None
    if args.postgres_url:
        import os

        os.environ["DOCKYARD_TEST_POSTGRES"] = args.postgres_url
        from tests.pg import drop_database, fresh_database

        url = fresh_database()
        drop = lambda: drop_database(url)  # noqa: E731
        cluster: Cluster = HACluster(tmp, url, servers=args.servers)
        if args.server_arg:
            ap.error("--server-arg is for one SQLite server")
    else:
        cluster = Cluster(tmp, server_args=args.server_arg)
    me0 = time.process_time()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    if hogs:
        print(f"# competing load: {len(hogs)} busy-loop process(es), pids {[h.pid for h in hogs]}", flush=True)
    try:
        cluster.start_server()
        if isinstance(cluster, HACluster):
            cluster.wait_leader()
        rows = asyncio.run(run(args, cluster))
        w = max(len(r[0]) for r in rows)  # printed before the clean-up, which a busy engine can fail
        print()
        print(f"| {'figure'.ljust(w)} | value | target |")
        print(f"|{'-' * (w + 2)}|---|---|")
        for name, value, target in rows:
            print(f"| {name.ljust(w)} | {value} | {target} |", flush=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        try:
            cluster.close()  # servers first; then it lists containers (none here), which a swamped engine can time out
        except Exception as exc:
            print(f"# clean-up: {type(exc).__name__}: {exc}")
        if drop is not None:
            drop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n# simulator's own CPU: {time.process_time() - me0:.0f} s, peak RSS {peak:.0f} MiB; load average at the end: {loadavg()}; logs in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
