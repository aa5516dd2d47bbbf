"""Gateway control plane on real processes: route propagation latency, and a rolling update under load.

Run: .venv/bin/python bench/gateway_rollout.py                      (10 events of each kind, 500 req/s, 3 rollouts)
     .venv/bin/python bench/gateway_rollout.py --events 3 --rollouts 1 --rate 200     (a quick look)

Starts a real `dockyard server` (a temporary SQLite database) and one real `dockyard agent`
with its gateway (`--gateway-listen`, `--drain-seconds` left at its default) on the local
Docker engine, then measures two things:

1. Route propagation. Two threads poll, each every --poll-ms: the server's
   `GET /v1/services/prop/endpoints` (the instances the server counts as ready) and the
   agent's own table, `GET /v1/gateway/routes` on the agent API (with the agent key). A
   sample is stamped with the middle of its request. For each event the figure is the time
   from the first sample in which the server shows the change to the first in which the
   gateway's table shows it (each figure is uncertain by about one polling period of
   either poller; the achieved periods are printed). Events: a scale-up (a new replica
   becomes ready), a scale-down (a replica is stopped: it leaves the routes before its
   drain), a `docker kill` of a replica (it leaves), and that replica's restart (it comes back).
2. A rolling update under load. A 4-replica busybox httpd service exposed at
   `web.localhost` (HTTP health check, max_surge 1, max_unavailable 0). An open-loop client in
   this process sends --rate requests/s through the gateway (scheduled at fixed times; latency
   counts from the scheduled time, so a stall delays the queue behind it rather than
   hiding it; keep-alive connections to the gateway). Per rollout (an env change, so a new
   revision) it counts the requests scheduled from the PUT until the last old container is
   removed: total, non-2xx, connection errors (and timeouts), p50/p99/max latency, beside the
   same figures for the steady state before the first rollout and between/after rollouts. The
   gateway's own request counter (agent /metrics) is read before and after as a cross-check, and
   the health-check events of the service (a replica that fails its check is restarted in
   place by its agent) are listed with the window they fell in.

Prints figures only; asserts nothing; stops the processes it started (by pid) and removes the
containers of its node (by their dockyard.node label).
"""
from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from _common import loadavg, percentile, print_machine  # (also puts the repo on sys.path)

import httptools  # noqa: E402
import httpx  # noqa: E402

from tests.harness import Cluster, free_port, wait_for  # noqa: E402

# each replica serves its own hostname (its container id), so a response says who answered
WHOAMI = ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w"]
HEALTH = {"type": "http", "port": 8080, "path": "/", "interval": 0.3, "timeout": 1, "retries": 1}
UPDATE = {"max_surge": 1, "max_unavailable": 0}


# ---- part 1: two pollers -----------------------------------------------------------------------

class Watch(threading.Thread):
    """Polls one view (a set of instance ids) every `interval` seconds and keeps every answer."""

    def __init__(self, name: str, fetch: Callable[[], frozenset[str]], interval: float):
        super().__init__(daemon=True, name=name)
        self.fetch, self.interval = fetch, interval
        self.samples: list[tuple[float, float, frozenset[str]]] = []  # (sent, returned, ids)
        self.failures = 0
        self.cond = threading.Condition()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t0 = time.perf_counter()
            try:
                ids = self.fetch()
            except Exception:  # noqa: BLE001 - a failed poll is a gap, not a crash
                self.failures += 1
                ids = None
            t1 = time.perf_counter()
            if ids is not None:
                with self.cond:
                    self.samples.append((t0, t1, ids))
                    self.cond.notify_all()
            self.halt.wait(max(0.0, self.interval - (t1 - t0)))

    def stop(self) -> None:
        self.halt.set()
        self.join(5)

    def latest(self) -> frozenset[str]:
        with self.cond:
            return self.samples[-1][2] if self.samples else frozenset()

    def first(self, pred: Callable[[frozenset[str]], bool], since: float, timeout: float = 30.0
              ) -> tuple[float, frozenset[str]] | None:
        """(stamp, ids) of the first sample sent at or after `since` (perf_counter) that
        satisfies pred; its stamp is the middle of its request. None on timeout."""
        deadline = time.monotonic() + timeout
        k = 0
        with self.cond:
            while True:
                while k < len(self.samples):
                    sent, returned, ids = self.samples[k]
                    k += 1
                    if sent >= since and pred(ids):
                        return (sent + returned) / 2, ids
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def period_ms(self, since: float) -> tuple[float, float]:
        """(mean period between samples, mean request time) since `since`, in ms."""
        with self.cond:
            s = [x for x in self.samples if x[0] >= since]
        if len(s) < 2:
            return float("nan"), float("nan")
        return ((s[-1][0] - s[0][0]) / (len(s) - 1) * 1000, statistics.fmean(r - t for t, r, _ in s) * 1000)


def ms(st: tuple[float, float] | None) -> str:
    return "missed" if st is None else f"{(st[1] - st[0]) * 1000:.1f} ms"


def propagation(c: Cluster, agent_api: str, key: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Part 1: scale-ups, scale-downs, kills and restarts; per kind, gateway-after-server latencies (s)."""
    svc = "prop"
    base = 3
    r = c.put(svc, replicas=base, command=WHOAMI, expose=[{"port": 8080}], health=HEALTH)
    r.raise_for_status()
    c.wait_ready(svc, base)

    server_client = httpx.Client(base_url=c.url, headers={"Authorization": c.api.headers["Authorization"]}, timeout=5)
    agent_client = httpx.Client(base_url=agent_api, headers={"Authorization": f"Bearer {key}"}, timeout=5)

    def server_view() -> frozenset[str]:
        r = server_client.get(f"/v1/services/{svc}/endpoints")
        r.raise_for_status()
        return frozenset(e["instance_id"] for e in r.json()["endpoints"])

    def gateway_view() -> frozenset[str]:
        r = agent_client.get("/v1/gateway/routes")
        r.raise_for_status()
        return frozenset(e["instance_id"] for rt in r.json()["routes"] if rt["service"] == svc
                         for e in rt["endpoints"])

    interval = args.poll_ms / 1000
    srv, gw = Watch("server-poller", server_view, interval), Watch("gateway-poller", gateway_view, interval)
    t_start = time.perf_counter()
    srv.start()
    gw.start()
    out: dict[str, list[float]] = {"scale-up (ready)": [], "scale-down (stopped)": [], "docker kill (died)": [],
                                   "restart after kill (ready)": []}
    from_kill: dict[str, list[float]] = {"server": [], "gateway": []}
    missed: list[str] = []

    def settle() -> None:
        # both views agree and hold `want` ready replicas, then a short pause: events never overlap
        wait_for(lambda: srv.latest() == gw.latest() and len(srv.latest()) == base, 60, 0.02,
                 what="server and gateway agree")
        time.sleep(args.gap)

    def measure(kind: str, change: Callable[[frozenset[str]], frozenset[str] | None], since: float,
                gw_pred: Callable[[frozenset[str], frozenset[str]], bool],
                gw_since: float | None = None) -> tuple[float, float] | None:
        """change(server ids) -> the changed ids once the server shows the change (else None);
        gw_pred(gateway ids, changed ids) -> the gateway shows it; both looked for in samples sent
        after `since` (the gateway's after `gw_since` if given). (server stamp, gateway stamp)."""
        box: list[frozenset[str]] = []

        def seen(ids: frozenset[str]) -> bool:
            d = change(ids)
            if d:
                box.append(d)
            return bool(d)

        s = srv.first(seen, since)
        if s is None:
            missed.append(f"{kind}: the server never showed it")
            return None
        g = gw.first(lambda ids: gw_pred(ids, box[0]), since if gw_since is None else gw_since)
        if g is None:
            missed.append(f"{kind}: the gateway never showed it")
            return None
        out[kind].append(g[0] - s[0])
        return s[0], g[0]

    try:
        settle()
        for n in range(args.events):
            before = srv.latest()
            t = time.perf_counter()
            c.api.post(f"/v1/services/{svc}/scale", json={"replicas": base + 1}).raise_for_status()
            up = measure("scale-up (ready)", lambda ids: ids - before, t, lambda ids, new: new <= ids)
            wait_for(lambda: len(srv.latest()) == base + 1 and srv.latest() == gw.latest(), 60, 0.02,
                     what="scaled up")
            time.sleep(args.gap)
            before = srv.latest()
            t = time.perf_counter()
            c.api.post(f"/v1/services/{svc}/scale", json={"replicas": base}).raise_for_status()
            down = measure("scale-down (stopped)", lambda ids: before - ids, t, lambda ids, gone: not (gone & ids))
            settle()
            print(f"  scale cycle {n + 1}: up {ms(up)}, down {ms(down)} (gateway after server)", flush=True)
        for n in range(args.events):
            ready = srv.latest()
            victims = sorted((x for x in c.containers(svc) if x.labels.get("dockyard.instance") in ready),
                             key=lambda x: x.labels["dockyard.slot"])
            victim = victims[n % len(victims)]
            iid = victim.labels["dockyard.instance"]
            t = time.perf_counter()
            victim.kill()
            st = measure("docker kill (died)", lambda ids: frozenset({iid}) - ids, t, lambda ids, gone: not (gone & ids))
            if st is not None:
                from_kill["server"].append(st[0] - t)
                from_kill["gateway"].append(st[1] - t)
                # the agent restarts it in place (same instance): it comes back once its check passes
                measure("restart after kill (ready)", lambda ids: frozenset({iid}) & ids, st[0],
                        lambda ids, back: back <= ids, gw_since=st[1])
            settle()
            if st is not None:
                print(f"  kill {n + 1}: left the gateway {(st[1] - st[0]) * 1000:.1f} ms after the server, "
                      f"{(st[1] - t) * 1000:.0f} ms after the kill", flush=True)
    finally:
        srv.stop()
        gw.stop()
        server_client.close()
        agent_client.close()
    sp, sr = srv.period_ms(t_start)
    gp, gr = gw.period_ms(t_start)
    print(f"# polling: asked every {args.poll_ms:g} ms; achieved: server endpoints every {sp:.1f} ms "
          f"(a request takes {sr:.1f} ms), gateway table every {gp:.1f} ms (a request takes {gr:.1f} ms); "
          f"failed polls: server {srv.failures}, gateway {gw.failures}")
    print(f"# a figure is the gateway sample's stamp minus the server sample's (each the middle of its "
          f"request): resolution about +-{max(sp, gp):.0f} ms")
    for m in missed:
        print(f"  ! {m}")
    c.api.delete(f"/v1/services/{svc}")
    out["_kill_to_server"] = from_kill["server"]
    out["_kill_to_gateway"] = from_kill["gateway"]
    return out


# ---- part 2: open-loop load through the gateway ----------------------------------------------

class _Resp:
    def __init__(self) -> None:
        self.done = False
        self.keep_alive = False
        self.body = b""
        self.parser: httptools.HttpResponseParser | None = None

    def on_headers_complete(self) -> None:
        # asked here: httptools answers False once the message is complete, whatever the headers said
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, b: bytes) -> None:
        self.body += b

    def on_message_complete(self) -> None:
        self.done = True


class Load:
    """Requests at fixed times (open loop) through the gateway, from a thread with its own event loop.
    Each result: (scheduled at, latency ms, status or None, body or error text, lateness ms): the
    lateness is how long after its scheduled time the client got round to the request, so a
    stall of the client itself shows there and not as the gateway's."""

    def __init__(self, port: int, host: str, rate: int, timeout: float = 10.0):
        self.port, self.rate, self.timeout = port, rate, timeout
        self.request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        self.results: list[tuple[float, float, int | None, str, float]] = []
        self.halt = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._main, daemon=True, name="load")

    def start(self) -> "Load":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(self.timeout + 10)

    def _main(self) -> None:
        try:
            import uvloop
            uvloop.run(self._run())
        except ImportError:
            asyncio.run(self._run())

    async def _run(self) -> None:
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def one(at: float) -> None:  # `at` on the perf_counter clock (uvloop's loop.time() has 1 ms steps)
            w = None
            late = (time.perf_counter() - at) * 1000
            try:
                async with asyncio.timeout(self.timeout):
                    if idle:
                        r, w = idle.pop()
                    else:
                        r, w = await asyncio.open_connection("127.0.0.1", self.port)
                        self.connections += 1
                    w.write(self.request)
                    cb = _Resp()
                    p = cb.parser = httptools.HttpResponseParser(cb)
                    while not cb.done:
                        data = await r.read(65536)
                        if not data:
                            raise ConnectionError("the gateway closed the connection mid-response")
                        p.feed_data(data)
                status = p.get_status_code()
                self.results.append((at, (time.perf_counter() - at) * 1000, status,
                                     cb.body.decode("utf-8", "replace").strip()[:300], late))
                if cb.keep_alive and status < 400:
                    idle.append((r, w))
                else:
                    w.close()
            except (OSError, httptools.HttpParserError, TimeoutError) as exc:
                self.results.append((at, (time.perf_counter() - at) * 1000, None, repr(exc), late))
                if w is not None:
                    w.close()

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        i = 0
        while not self.halt.is_set():
            at = start + i / self.rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.ensure_future(one(at))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        for _, w in idle:
            w.close()

    def window(self, t0: float, t1: float) -> list[tuple[float, float, int | None, str, float]]:
        return [x for x in list(self.results) if t0 <= x[0] < t1]


def stats(rows: list[tuple[float, float, int | None, str, float]], seconds: float) -> dict[str, Any]:
    lat = [x[1] for x in rows if x[2] is not None and 200 <= x[2] < 300]
    return {"requests": len(rows), "rate": len(rows) / seconds if seconds > 0 else float("nan"),
            "non-2xx": sum(1 for x in rows if x[2] is not None and not 200 <= x[2] < 300),
            "conn errors": sum(1 for x in rows if x[2] is None),
            "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat) if lat else float("nan"),
            "replicas answering": len({x[3] for x in rows if x[2] == 200}),
            "late": max((x[4] for x in rows), default=float("nan")),
            "over 500 ms": sum(1 for x in lat if x > 500)}


def gateway_counts(agent_api: str, service: str) -> dict[str, float]:
    text = httpx.get(f"{agent_api}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for m in re.finditer(r'^dockyard_gateway_requests_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("service") == service:
            out[labels.get("code", "?")] = float(m.group(2))
    return out


def rollouts(c: Cluster, gw_port: int, agent_api: str, args: argparse.Namespace) -> None:
    svc = "web"
    spec = dict(replicas=4, command=WHOAMI, expose=[{"port": 8080}], health=HEALTH, update=UPDATE, stop_timeout=2)
    c.put(svc, **spec).raise_for_status()
    c.wait_ready(svc, 4)
    # all four answer through the gateway before the load starts
    seen: set[str] = set()

    def four() -> bool:
        r = httpx.get(f"http://127.0.0.1:{gw_port}/", headers={"Host": f"{svc}.localhost"}, timeout=5)
        if r.status_code == 200:
            seen.add(r.text.strip())
        return len(seen) >= 4

    wait_for(four, 60, 0.02, what="4 replicas answering through the gateway")
    print(f"# load: open loop, {args.rate} req/s through the gateway (Host: {svc}.localhost), keep-alive, "
          f"latency from the scheduled time; rollout: 4 replicas, max_surge 1, max_unavailable 0, "
          f"HTTP health check every {HEALTH['interval']} s, agent --drain-seconds default (2 s)", flush=True)
    latest = c.api.get("/v1/events", params={"limit": 1}).json()
    first_event = latest[0]["id"] if latest else 0
    load = Load(gw_port, f"{svc}.localhost", args.rate).start()
    wall0, perf0 = time.time(), time.perf_counter()  # to place the server's events on the load's clock
    counts0 = gateway_counts(agent_api, svc)
    # the whole run, cut into contiguous windows: (name, start, end, timing note)
    windows: list[tuple[str, float, float, str]] = []
    phases: list[str] = []
    try:
        t_base = time.perf_counter()
        time.sleep(args.baseline)
        t = time.perf_counter()
        windows.append(("steady state before", t_base, t, f"{t - t_base:.1f} s"))
        for n in range(args.rollouts):
            old = {x.id for x in c.containers(svc, running_only=False)}
            t_put = time.perf_counter()
            if n:
                windows.append((f"after rollout {n}", windows[-1][2], t_put, ""))
            r = c.put(svc, **spec, env={"VERSION": str(n + 2)})
            r.raise_for_status()
            box: list[dict] = []

            def settled() -> bool:
                box[:] = [c.api.get(f"/v1/services/{svc}/rollout").json()]
                return box[0]["phase"] not in ("progressing",)

            wait_for(settled, 180, 0.1, what="rollout complete")
            t_done = time.perf_counter()
            phase = box[0]["phase"]
            phases.append(phase)
            if phase == "complete":  # the old ones stopped after their drain and removed
                wait_for(lambda: not ({x.id for x in c.containers(svc, running_only=False)} & old), 120, 0.1,
                         what="old replicas removed")
            else:  # rolled back (say): the new ones go, the old ones stay
                print(f"  ! rollout {n + 1} ended {phase}: {box[0].get('reason')}", flush=True)
                wait_for(lambda: len(c.containers(svc, running_only=False)) == spec["replicas"], 120, 0.1,
                         what="surplus replicas removed")
            t_gone = time.perf_counter()
            windows.append((f"rollout {n + 1}", t_put, t_gone,
                            f"PUT to {phase} {t_done - t_put:.1f} s, to {'old' if phase == 'complete' else 'surplus'} "
                            f"ones removed {t_gone - t_put:.1f} s"))
            print(f"  rollout {n + 1}: {windows[-1][3]}", flush=True)
            time.sleep(args.gap_rollouts)
    finally:
        load.stop()
    if windows and windows[-1][0].startswith("rollout"):
        windows.append((f"after rollout {args.rollouts}", windows[-1][2], float("inf"), ""))
    rows: list[tuple[str, dict[str, Any], str]] = []
    between: list[tuple[float, float, int | None, str, float]] = []
    between_s = 0.0
    for name, t0, t1, note in windows:
        if name.startswith("after"):
            between += load.window(t0, t1)
            between_s += (min(t1, load.results[-1][0]) if load.results else t0) - t0
        else:
            rows.append((name, stats(load.window(t0, t1), t1 - t0), note))
    rows.append(("between/after rollouts", stats(between, between_s),
                 f"{between_s:.1f} s in all, each from the old ones removed to the next PUT or the end"))
    bad = [(name, at - t0, status, what) for name, t0, t1, _ in windows for at, _, status, what, _ in load.window(t0, t1)
           if status is None or not 200 <= status < 300]
    counts1 = gateway_counts(agent_api, svc)
    every = stats(load.results, 1)
    print(f"# client: {every['requests']} requests in all over {load.connections} connections to the gateway")
    print("# latency of 2xx answers, from the scheduled time; >500ms: answers slower than 500 ms; late ms: the "
          "client's worst delay in getting round to a request (its own stalls); replicas: distinct ones that answered")
    print(f"{'window':<24}{'requests':>9}{'req/s':>7}{'non-2xx':>9}{'conn err':>9}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'max ms':>8}{'>500ms':>7}{'late ms':>8}{'replicas':>9}  timing")
    for name, st, note in rows:
        print(f"{name:<24}{st['requests']:>9}{st['rate']:>7.0f}{st['non-2xx']:>9}{st['conn errors']:>9}"
              f"{st['p50']:>8.2f}{st['p99']:>8.2f}{st['max']:>8.1f}{st['over 500 ms']:>7}{st['late']:>8.1f}"
              f"{st['replicas answering']:>9}  {note}")
    during = [st for name, st, _ in rows if name.startswith("rollout")]
    if during:
        tot = sum(s["requests"] for s in during)
        errs = sum(s["non-2xx"] + s["conn errors"] for s in during)
        print(f"all {len(during)} rollouts: {tot} requests, {sum(s['non-2xx'] for s in during)} non-2xx, "
              f"{sum(s['conn errors'] for s in during)} connection errors, worst p99 "
              f"{max(s['p99'] for s in during):.2f} ms; {phases.count('complete')} of {len(phases)} completed "
              f"(target: 0 errors {'✔' if errs == 0 else '✘'})")
    delta = {k: counts1.get(k, 0) - counts0.get(k, 0) for k in sorted(set(counts0) | set(counts1))}
    print("# gateway's own counter (dockyard_gateway_requests_total, web) over the load: "
          + (", ".join(f"{k} {v:.0f}" for k, v in delta.items()) or "none"))
    # health checks that failed under the load: the agent restarts such a replica in place
    events = c.api.get("/v1/events", params={"service": svc, "since": first_event, "limit": 1000}).json()
    health = [e for e in reversed(events) if e["kind"] in ("instance_unhealthy", "instance_restarted")]
    print(f"# health during the load: {sum(e['kind'] == 'instance_unhealthy' for e in health)} instance_unhealthy, "
          f"{sum(e['kind'] == 'instance_restarted' for e in health)} instance_restarted events")
    for e in health[:10]:
        at = datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() - wall0 + perf0 if e.get("time") else None
        where = next((f"{name}, {at - t0:+.3f} s into it" for name, t0, t1, _ in windows if at is not None and t0 <= at < t1),
                     "?")
        print(f"  ! {e['kind']} ({where}): {e['message']}")
    for where, dt, status, what in bad[:20]:
        print(f"  ! {where}, {dt:+.3f} s into it: {status if status is not None else 'no answer'}: {what}")
    if len(bad) > 20:
        print(f"  ! ... and {len(bad) - 20} more")


# ---- main ------------------------------------------------------------------------------------

def agent_key(data_dir: Path, node: str) -> str:
    """The agent's API key, as the server stored it at join (the server presents it to call the agent)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from orchestrator import agent_keys

    engine = create_engine(f"sqlite:///{data_dir / 'dockyard.db'}")
    try:
        with Session(engine) as s:
            key = agent_keys.get(s, node)
    finally:
        engine.dispose()
    if not key:
        raise SystemExit(f"no agent key stored for node {node}")
    return key


def summary_ms(xs: list[float]) -> str:
    if not xs:
        return "no events"
    ms = [x * 1000 for x in xs]
    return f"median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms   min {min(ms):7.1f} ms   ({len(ms)} events)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10, help="scale cycles (an up and a down each), and kills")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="polling interval of both views, ms")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds of quiet between propagation events")
    ap.add_argument("--rate", type=int, default=500, help="requests/s through the gateway during the rollouts")
    ap.add_argument("--rollouts", type=int, default=3, help="rolling updates in a row under the load")
    ap.add_argument("--baseline", type=float, default=3.0, help="seconds of load before the first rollout")
    ap.add_argument("--gap-rollouts", type=float, default=2.0, help="seconds of load between rollouts")
    ap.add_argument("--skip-propagation", action="store_true")
    ap.add_argument("--skip-rollout", action="store_true")
    ap.add_argument("--keep-logs", action="store_true", help="keep the server's and agent's logs (printed path)")
    args = ap.parse_args()
    if shutil.which("docker") is None:
        print("the docker command is not installed", file=sys.stderr)
        return 1

    print_machine("gateway_rollout: route propagation and a rolling update under load (real server + agent + gateway)")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-gw-rollout-"))
    c = Cluster(tmp, env={"DOCKYARD_AGENT_STATE_DIR": str(tmp / "agent-state")})
    try:
        c.start_server()
        gw_port, api_port = free_port(), free_port()
        node = c.start_agent("a", "--gateway-listen", f"127.0.0.1:{gw_port}", "--listen", f"127.0.0.1:{api_port}")
        agent_api = f"http://127.0.0.1:{api_port}"
        key = agent_key(tmp / "data", node)
        httpx.get(f"{agent_api}/v1/gateway/routes", headers={"Authorization": f"Bearer {key}"}, timeout=5).raise_for_status()
        print(f"# server {c.url} (SQLite), agent {node}: API {agent_api}, gateway 127.0.0.1:{gw_port}", flush=True)
        if not args.skip_propagation:
            print(f"## route propagation: server endpoints -> agent gateway table, service of 3 replicas, "
                  f"{args.events} scale cycles and {args.events} kills", flush=True)
            res = propagation(c, agent_api, key, args)
            for kind in ("scale-up (ready)", "scale-down (stopped)", "docker kill (died)", "restart after kill (ready)"):
                print(f"{kind:<28} {summary_ms(res[kind])}")
            print(f"{'(kill -> left server view)':<28} {summary_ms(res['_kill_to_server'])}")
            print(f"{'(kill -> left gateway)':<28} {summary_ms(res['_kill_to_gateway'])}")
            allx = [x for k, v in res.items() if not k.startswith("_") for x in v]
            if allx:
                print(f"all propagation events: {summary_ms(allx)}; target max < 1 s: {'✔' if max(allx) < 1 else '✘'}")
            wait_for(lambda: not c.containers("prop", running_only=False), 60, 0.2, what="prop removed")
        if not args.skip_rollout:
            print("## rolling update under load", flush=True)
            rollouts(c, gw_port, agent_api, args)
        return 0
    finally:
        c.close()
        print(f"# load average at the end: {loadavg()}" + (f"; logs in {tmp}" if args.keep_logs else ""))
        if not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
