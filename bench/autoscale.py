"""Benchmark the autoscaler: how fast a load step is served by added replicas, and how calm the
count stays under a load that goes up and down.

Run: .venv/bin/python bench/autoscale.py                      (step, then a 10-minute sine wave)
     .venv/bin/python bench/autoscale.py --minutes 3 --down 30  (quicker)

Starts a real server and one agent (gateway on, --metrics-interval 1) on the local engine and an
rps-target service behind the gateway (busybox httpd; target --target req/s per instance, min 1,
max 4, scale-down window --down seconds). Part 1: a step from 5 to --high req/s; prints the
time to the first scale-up decision and to the added replicas all ready and answering through
the gateway. Part 2: a sine wave between 5 and --high req/s (period --period s) for --minutes;
prints every change of the replica count and the number of direction changes against the
number of scale-down windows in the run (the target: at most one flip per window). Asserts
nothing; removes what it started.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._common import print_machine  # noqa: E402
from tests.harness import Cluster, free_port, wait_for  # noqa: E402

WHOAMI = ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w"]
HEALTH = {"type": "http", "port": 8080, "path": "/", "interval": 0.3, "timeout": 1, "retries": 1}


class Load:
    """Requests through the gateway at rate(t) per second, from a few threads."""

    def __init__(self, port: int, rate, threads: int = 4):  # type: ignore[no-untyped-def]
        self.port, self.rate, self.stop = port, rate, threading.Event()
        self.ok = self.failed = 0
        self.seen: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(threads,), daemon=True) for _ in range(threads)]

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=5) as c:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.get(f"http://127.0.0.1:{self.port}/", headers={"Host": "web.localhost"})
                    with self._lock:
                        self.ok += r.status_code == 200
                        self.failed += r.status_code != 200
                        self.seen.add(r.text.strip())
                except httpx.HTTPError:
                    with self._lock:
                        self.failed += 1
                rate = max(self.rate(time.monotonic()), 0.1) / n
                time.sleep(max(0.0, 1 / rate - (time.monotonic() - t0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--period", type=float, default=120.0, help="seconds of one sine period")
    ap.add_argument("--down", type=float, default=60.0, help="scale_down_stabilization, seconds")
    ap.add_argument("--target", type=float, default=10.0, help="req/s per instance")
    ap.add_argument("--high", type=float, default=35.0, help="req/s at the top of the step and the wave")
    args = ap.parse_args()
    print_machine("bench/autoscale.py: an rps-target service behind the gateway")
    tmp = Path(tempfile.mkdtemp(prefix="dy-bench-autoscale-"))
    c = Cluster(tmp)
    port = free_port()
    load = None
    try:
        c.start_server()
        c.start_agent("a", "--gateway-listen", f"127.0.0.1:{port}", "--metrics-interval", "1", "--drain-seconds", "1")
        spec = dict(command=WHOAMI, replicas=1, expose=[{"port": 8080, "host": "web.localhost"}], health=HEALTH,
                    autoscale={"min": 1, "max": 4, "metric": "rps", "target": args.target,
                               "scale_down_stabilization": args.down})
        assert c.put("web", **spec).status_code == 201
        c.wait_ready("web", 1)
        level = {"rate": 5.0}
        load = Load(port, lambda t: level["rate"]).start()
        time.sleep(8)  # settle at the low rate
        # part 1: the step
        t0 = time.monotonic()
        level["rate"] = args.high
        wanted = min(4, math.ceil(args.high / args.target))
        decided = wait_for(lambda: c.service("web")["replicas"] > 1 and time.monotonic(), 120, 0.1, what="scale-up")
        served = wait_for(lambda: c.service("web")["status"]["ready"] >= wanted and len(load.seen) >= wanted
                          and time.monotonic(), 180, 0.1, what="added replicas serving")
        print(f"step 5 -> {args.high:g} req/s (target {args.target:g}/instance: {wanted} replicas wanted): "
              f"decision after {decided - t0:.1f} s, {wanted} replicas ready and answering after {served - t0:.1f} s")
        # part 2: the wave
        start = time.monotonic()
        low, high = 5.0, args.high
        load.rate = lambda t: low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * (t - start) / args.period))
        counts: list[tuple[float, int]] = []
        end = start + args.minutes * 60
        while time.monotonic() < end:
            n = c.service("web")["replicas"]
            if not counts or counts[-1][1] != n:
                counts.append((time.monotonic() - start, n))
                print(f"  t={counts[-1][0]:6.1f} s  replicas {n}")
            time.sleep(1)
        flips, last = 0, 0
        for (_, a), (_, b) in zip(counts, counts[1:]):
            d = (b > a) - (b < a)
            if d and last and d != last:
                flips += 1
            last = d or last
        windows = args.minutes * 60 / args.down
        print(f"wave {low:g}-{high:g} req/s, period {args.period:g} s, {args.minutes:g} min: {len(counts) - 1} "
              f"change(s), {flips} direction change(s) in {windows:.1f} scale-down windows "
              f"({flips / windows:.2f} per window; target <= 1)")
        print(f"requests: {load.ok} ok, {load.failed} failed")
    finally:
        if load is not None:
            load.close()
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
