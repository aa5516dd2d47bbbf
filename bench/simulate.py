"""One real Dockyard server, many simulated agents: the server at cluster scale.

Run:  .venv/bin/python bench/simulate.py                               # 1,000 agents, 10,000 instances (~2 min)
      .venv/bin/python bench/simulate.py --agents 100 --instances 1000 # a quick run

A real `dockyard server` process (SQLite, default settings) on 127.0.0.1; in this process,
N fake agents speak the real agent protocol over HTTP (join, then sync: long poll +
reports), with httpx.AsyncClient like the real agent's client. Their runtime is fake: an
assigned instance "starts" at once and is reported running. Like the real agent, each one
long-polls with the heartbeat interval the server hands out, reports when what runs
changes, and re-sends an unchanged report every 10 s.

Phases and figures:
  join        N agents join
  placement   S services x R replicas are PUT; time until every instance is assigned to a
              fake agent (placed by the scheduler and delivered by long poll), and until
              every report saying they run was acknowledged
  steady      sync latency: for a long poll answered at its timeout, the time beyond the
              wait asked for; for a report (wait 0), the round trip. Server CPU and RSS.
  api         GET and PUT /v1/services/{name} (an identical spec: the apply of an unchanged
              manifest) at --api-rate requests/s, open loop, for --api-seconds, while the
              agents keep syncing. p50/p99 per method.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, loadavg, percentile, print_machine, rss_mb  # noqa: E402

import httpx  # noqa: E402

from tests.harness import ADMIN, IMAGE, JOIN, Cluster  # noqa: E402

FULL_REPORT_EVERY = 10.0  # as agent/main.py
GiB = 1024**3


class Stats:
    def __init__(self) -> None:
        self.poll_excess: list[float] = []   # long polls answered at timeout: elapsed - wait
        self.report_rtt: list[float] = []    # reports (wait 0): round trip
        self.recording = False
        self.errors = 0
        self.assigned = 0                     # instances currently assigned, all agents
        self.acked = 0                        # instances whose "running" report was acknowledged
        self.changed = asyncio.Event()


class FakeAgent:
    def __init__(self, name: str, client: httpx.AsyncClient, stats: Stats, stop: asyncio.Event):
        self.name, self.client, self.stats, self.stop = name, client, stats, stop
        self.headers: dict[str, str] = {}
        self.generation: str | None = None
        self.heartbeat = 1.0
        self.running: dict[str, dict] = {}   # instance id -> report item
        self.acked: set[str] = set()
        self.last_report = 0.0
        self.reporting = False

    async def join(self) -> None:
        body = {"join_token": JOIN, "node_name": self.name, "cpus": 16.0, "memory": 64 * GiB,
                "labels": {"zone": random.choice("abc")}, "agent_version": "sim", "engine_version": "sim"}
        for attempt in range(20):
            try:
                r = await self.client.post("/v1/agent/join", json=body)
                r.raise_for_status()
                out = r.json()
                self.headers = {"Authorization": f"Bearer {out['credential']}"}
                self.heartbeat = out.get("heartbeat_interval", 1.0)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{self.name} could not join")

    async def _sync(self, wait: float, report: list[dict] | None) -> dict | None:
        t0 = time.perf_counter()
        try:
            r = await self.client.post("/v1/agent/sync", headers=self.headers,
                                       json={"known": self.generation, "wait": wait, "report": report})
            r.raise_for_status()
            out = r.json()
        except httpx.HTTPError:
            self.stats.errors += 1
            await asyncio.sleep(0.5)
            return None
        took = time.perf_counter() - t0
        if self.stats.recording:
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

    async def report(self) -> None:
        if self.reporting:
            return
        self.reporting = True
        try:
            items = sorted(self.running.values(), key=lambda i: i["instance_id"])
            sent = {i["instance_id"] for i in items}
            out = await self._sync(0, items)
            if out is not None:
                self.last_report = time.monotonic()
                newly = sent - self.acked
                self.acked |= sent
                self.stats.acked += len(newly)
                if newly:
                    self.stats.changed.set()
                if self._take(out):
                    asyncio.get_running_loop().create_task(self.report())
        finally:
            self.reporting = False

    async def poll_forever(self) -> None:
        # spread the agents' re-send clocks like independently started agents
        self.last_report = time.monotonic() - random.uniform(0, FULL_REPORT_EVERY)
        while not self.stop.is_set():
            out = await self._sync(self.heartbeat, None)
            if out is None:
                continue
            if self._take(out) or time.monotonic() - self.last_report >= FULL_REPORT_EVERY:
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


async def api_load(url: str, names: list[str], rate: float, seconds: float, replicas: int) -> dict[str, list[float]]:
    """Open loop: request i leaves at start + i / rate whatever the earlier ones are doing."""
    lat: dict[str, list[float]] = {"GET": [], "PUT": []}
    errors = 0
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, limits=limits,
                                 timeout=30) as c:
        async def one(i: int) -> None:
            nonlocal errors
            name = names[i % len(names)]
            method = "GET" if i % 2 == 0 else "PUT"
            t0 = time.perf_counter()
            try:
                if method == "GET":
                    r = await c.get(f"/v1/services/{name}")
                else:
                    r = await c.put(f"/v1/services/{name}", json=spec(replicas))
                r.raise_for_status()
                lat[method].append(time.perf_counter() - t0)
            except httpx.HTTPError:
                errors += 1

        total = int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.get_running_loop().create_task(one(i)))
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    if errors:
        print(f"  api: {errors} request(s) failed")
    return lat


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def run(args: argparse.Namespace, cluster: Cluster) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    pid = cluster.server.p.pid  # type: ignore[union-attr]
    stats, stop = Stats(), asyncio.Event()
    limits = httpx.Limits(max_connections=args.agents * 2 + 50, max_keepalive_connections=args.agents * 2 + 50)
    client = httpx.AsyncClient(base_url=cluster.url, limits=limits, timeout=httpx.Timeout(30.0, read=75.0))
    agents = [FakeAgent(f"sim-{i:04d}", client, stats, stop) for i in range(args.agents)]
    rows.append(("server RSS idle, no nodes", f"{rss_mb(pid):.0f} MiB", "target <= 150 MiB"))

    # -- join
    t0 = time.monotonic()
    sem = asyncio.Semaphore(64)

    async def join(a: FakeAgent) -> None:
        async with sem:
            await a.join()

    await asyncio.gather(*(join(a) for a in agents))
    rows.append((f"{args.agents} agents join", f"{time.monotonic() - t0:.2f} s", ""))
    tasks = [asyncio.get_running_loop().create_task(a.poll_forever()) for a in agents]
    await asyncio.sleep(3.0)
    rows.append((f"server RSS, {args.agents} nodes, no instances", f"{rss_mb(pid):.0f} MiB", ""))

    # -- placement
    services = max(1, args.instances // args.replicas)
    names = [f"sim-svc-{i:03d}" for i in range(services)]
    total = services * args.replicas
    api = httpx.AsyncClient(base_url=cluster.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    put_sem = asyncio.Semaphore(8)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()

    async def put(name: str) -> None:
        async with put_sem:
            r = await api.put(f"/v1/services/{name}", json=spec(args.replicas))
            r.raise_for_status()

    await asyncio.gather(*(put(n) for n in names))
    t_put = time.monotonic() - t0
    t_assigned = await wait_until(stats, lambda: stats.assigned >= total, args.timeout)
    t_acked = await wait_until(stats, lambda: stats.acked >= total, args.timeout)
    t_all = time.monotonic() - t0
    rows.append((f"PUT {services} services x {args.replicas} replicas", f"{t_put:.2f} s", ""))
    rows.append((f"{total} instances placed and assigned to {args.agents} nodes",
                 "timeout" if t_assigned is None else f"{t_put + t_assigned:.2f} s", "target <= 5 s (10,000 on 1,000)"))
    rows.append((f"... and their running reports acknowledged",
                 "timeout" if t_acked is None else f"{t_all:.2f} s", ""))
    rows.append(("server CPU during placement", f"{cpu_seconds(pid) - cpu0:.1f} s", ""))
    print(f"  placement done: assigned {stats.assigned}/{total}, acked {stats.acked}/{total} (load {loadavg()})",
          flush=True)

    # -- steady state
    await asyncio.sleep(3.0)  # let the loop settle after the burst
    stats.poll_excess.clear()
    stats.report_rtt.clear()
    stats.recording = True
    cpu0, w0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.steady_seconds)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - w0)
    stats.recording = False
    syncs = stats.poll_excess + stats.report_rtt
    rows.append((f"sync latency p50 / p99 ({len(syncs)} syncs in {args.steady_seconds:.0f} s)",
                 f"{ms(percentile(syncs, 50))} / {ms(percentile(syncs, 99))}", "target p99 <= 100 ms"))
    rows.append(("  long polls: time past the wait asked for, p50 / p99",
                 f"{ms(percentile(stats.poll_excess, 50))} / {ms(percentile(stats.poll_excess, 99))}", ""))
    rows.append(("  reports (full, every 10 s): round trip p50 / p99",
                 f"{ms(percentile(stats.report_rtt, 50))} / {ms(percentile(stats.report_rtt, 99))}", ""))
    rows.append(("server CPU, steady state", f"{cpu * 100:.0f}% of a core", ""))
    rows.append((f"server RSS, {args.agents} nodes, {total} instances", f"{rss_mb(pid):.0f} MiB", ""))

    # -- API
    cpu0, w0 = cpu_seconds(pid), time.monotonic()
    lat = await api_load(cluster.url, names, args.api_rate, args.api_seconds, args.replicas)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - w0)
    for m in ("GET", "PUT"):
        rows.append((f"API {m} /v1/services/{{name}} at {args.api_rate:g} req/s (mixed), p50 / p99",
                     f"{ms(percentile(lat[m], 50))} / {ms(percentile(lat[m], 99))}", "target p99 <= 50 ms"))
    rows.append(("server CPU during the API load (agents syncing too)", f"{cpu * 100:.0f}% of a core", ""))
    if stats.errors:
        rows.append(("agent sync errors", str(stats.errors), ""))

    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
    await api.aclose()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--replicas", type=int, default=100, help="replicas per service (services = instances / replicas)")
    ap.add_argument("--steady-seconds", type=float, default=20.0)
    ap.add_argument("--api-rate", type=float, default=200.0)
    ap.add_argument("--api-seconds", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--server-arg", action="append", default=[], help="extra `dockyard server` flag (repeatable)")
    args = ap.parse_args()
    random.seed(7)

    print_machine(f"simulate: 1 server, {args.agents} simulated agents, {args.instances} instances")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-sim-"))
    cluster = Cluster(tmp, server_args=args.server_arg)
    me0 = time.process_time()
    try:
        cluster.start_server()
        rows = asyncio.run(run(args, cluster))
    finally:
        cluster.close()
    w = max(len(r[0]) for r in rows)
    print()
    print(f"| {'figure'.ljust(w)} | value | target |")
    print(f"|{'-' * (w + 2)}|---|---|")
    for name, value, target in rows:
        print(f"| {name.ljust(w)} | {value} | {target} |")
    print(f"\n# simulator's own CPU: {time.process_time() - me0:.0f} s; load average at the end: {loadavg()}; logs in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
