"""The dashboard at scale: first paint and an update's time to screen with many services.

Run:  .venv/bin/python bench/dashboard.py                                   # 1,000 services, 10,000 instances
      .venv/bin/python bench/dashboard.py --services 100 --replicas 5       # a quick run

A real `dockyard server` (SQLite) on 127.0.0.1 and simulated agents (bench/simulate.py's
FakeAgent: the real protocol, a fake runtime, so 10,000 instances "run" without Docker); then
Debian's chromium (headless, Playwright, as the browser tests) opens /ui. Figures:

  first paint      from navigation start: the browser's first contentful paint (the page's
                   chrome) and the moment the first rows of the services list are in the DOM
                   (a MutationObserver in the page), for the services list, the overview and
                   one service's detail; and the snapshot's size
  update to screen a service on screen is scaled through the API (--updates times); the time
                   from the API's answer to the new desired count in that row, and to the new
                   ready count (which waits for the fake agent's report and the summary tick)
  server           GET /v1/summary latency (the feed's recomputation); server CPU with no page
                   open (the simulated agents' syncs) and with the page open, nothing changing

The browser and server share the machine's clock, so the page's Date.now() is compared with
this process's time.time(). Traffic goes to 127.0.0.1 only; every wait is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import cpu_seconds, loadavg, print_machine  # noqa: E402
from simulate import FakeAgent, Stats, spec, wait_until  # noqa: E402

import httpx  # noqa: E402

from tests.browser.conftest import ARGS, CHROMIUM  # noqa: E402
from tests.harness import ADMIN, Cluster  # noqa: E402

# in the page before its own script: when the first service row lands, and each row's text changes
PROBE = """
window.__t = {};
new MutationObserver(() => {
  if (!window.__t.rows && document.querySelector('tr[data-service]')) window.__t.rows = performance.now();
  if (!window.__t.inst && document.querySelector('tr[data-instance]')) window.__t.inst = performance.now();
  if (!window.__t.cards && document.querySelector('[data-testid=svc-healthy]')) window.__t.cards = performance.now();
  const w = window.__watch;
  if (w) { const el = document.querySelector(`tr[data-service="${w.key}"] [data-testid=ready]`);
           const text = el ? el.textContent : "";
           if (!w.desired && text.endsWith("/" + w.replicas)) w.desired = Date.now();
           if (!w.ready && text === w.replicas + "/" + w.replicas) w.ready = Date.now(); }
}).observe(document, { childList: true, subtree: true, characterData: true });
sessionStorage.setItem("dockyard.token", "%s");
""" % ADMIN


def agents_thread(port: int, n: int, services: int, replicas: int, url: str, timeout: float,
                  ready: threading.Event, stop_flag: threading.Event, out: dict) -> None:
    async def main() -> None:
        stats, stop = Stats(), asyncio.Event()
        agents = [FakeAgent(f"sim-{i:04d}", "127.0.0.1", port, stats, stop) for i in range(n)]
        sem = asyncio.Semaphore(32)

        async def join(a: FakeAgent) -> None:
            async with sem:
                await a.join()

        await asyncio.gather(*(join(a) for a in agents))
        tasks = [asyncio.get_running_loop().create_task(a.poll_forever()) for a in agents]
        api = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
        put_sem = asyncio.Semaphore(8)
        t0 = time.monotonic()

        async def put(name: str) -> None:
            async with put_sem:
                (await api.put(f"/v1/services/{name}", json=spec(replicas))).raise_for_status()

        await asyncio.gather(*(put(f"svc-{i:04d}") for i in range(services)))
        took = await wait_until(stats, lambda: stats.acked >= services * replicas, timeout)
        out["placed"] = None if took is None else time.monotonic() - t0
        ready.set()
        while not stop_flag.is_set():
            await asyncio.sleep(0.2)
        stop.set()
        for t in tasks:
            t.cancel()
        await api.aclose()

    asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    total = args.services * args.replicas
    print_machine(f"dashboard: {args.services} services x {args.replicas} = {total} instances on {args.agents} "
                  f"simulated agents, one server on SQLite, chromium headless")
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="dockyard-dash-"))
    cluster = Cluster(tmp)
    stop_flag, ready, out = threading.Event(), threading.Event(), {}
    rows: list[tuple[str, str]] = []
    try:
        cluster.start_server()
        t = threading.Thread(target=agents_thread, args=(cluster.port, args.agents, args.services, args.replicas,
                                                         cluster.url, args.timeout, ready, stop_flag, out), daemon=True)
        t.start()
        if not ready.wait(args.timeout + 120) or out.get("placed") is None:
            raise SystemExit("the instances were not all placed and reported in time")
        rows.append((f"{total} instances placed and reported running", f"{out['placed']:.1f} s"))
        lat = []
        for _ in range(5):
            t0 = time.perf_counter()
            r = cluster.api.get("/v1/summary")
            lat.append(time.perf_counter() - t0)
        rows.append(("GET /v1/summary, read from scratch (median of 5)", f"{statistics.median(lat) * 1000:.0f} ms, {len(r.content) / 1024:.0f} KiB"))
        pid = cluster.server.p.pid  # type: ignore[union-attr]
        time.sleep(3)
        c0, w0 = cpu_seconds(pid), time.monotonic()
        time.sleep(10)
        idle = (cpu_seconds(pid) - c0) / (time.monotonic() - w0)
        rows.append(("server CPU, no page open (the agents' syncs)", f"{idle * 100:.0f}% of a core"))

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            # the page's CSP forbids eval, which Playwright's wait_for_function uses
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
            ctx.add_init_script(PROBE)
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            for view, probe, label in (("#/services", "rows", "services list"), ("#/", "cards", "overview"),
                                       ("#/services/default/svc-0000", "inst", "one service's detail")):
                firsts, fcps = [], []
                for _ in range(3):
                    page.goto(f"{cluster.url}/ui/{view}")
                    page.wait_for_function(f"window.__t.{probe} !== undefined")
                    firsts.append(page.evaluate(f"window.__t.{probe}"))
                    fcps.append(page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0"))
                    page.goto("about:blank")
                rows.append((f"{label}: first contentful paint (median of 3)", f"{statistics.median(fcps):.0f} ms"))
                rows.append((f"{label}: first rows in the DOM (median of 3)", f"{statistics.median(firsts):.0f} ms"))

            page.goto(f"{cluster.url}/ui/#/services")
            page.wait_for_function("window.__t.rows !== undefined")
            page.wait_for_selector("#live.on")
            time.sleep(3)
            c0, w0 = cpu_seconds(pid), time.monotonic()
            time.sleep(10)
            opened = (cpu_seconds(pid) - c0) / (time.monotonic() - w0)
            rows.append(("server CPU, the services list open, nothing changing", f"{opened * 100:.0f}% of a core "
                         f"(+{(opened - idle) * 100:.0f}% for the page)"))
            to_desired, to_ready = [], []
            for k in range(args.updates):
                key = f"svc-{k % 50:04d}"  # on the first page
                cur = cluster.api.get(f"/v1/services/{key}").json()["replicas"]
                want = cur + 1 if cur == args.replicas else args.replicas
                page.evaluate(f"window.__watch = {{key: '{key}', replicas: {want}}}")
                r = cluster.api.post(f"/v1/services/{key}/scale", json={"replicas": want})
                r.raise_for_status()
                t0 = time.time() * 1000
                page.wait_for_function("window.__watch.desired && window.__watch.ready", timeout=60_000)
                w = page.evaluate("window.__watch")
                to_desired.append(max(0.0, w["desired"] - t0))
                to_ready.append(max(0.0, w["ready"] - t0))
            rows.append((f"scale -> new desired count on screen (median / max of {args.updates})",
                         f"{statistics.median(to_desired):.0f} / {max(to_desired):.0f} ms"))
            rows.append((f"scale -> new ready count on screen (median / max of {args.updates})",
                         f"{statistics.median(to_ready):.0f} / {max(to_ready):.0f} ms"))
            heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
            if heap:
                rows.append(("page's JS heap", f"{heap / 2**20:.0f} MiB"))
            browser.close()
    finally:
        stop_flag.set()
        cluster.close()
    w = max(len(r[0]) for r in rows)
    print()
    print(f"| {'figure'.ljust(w)} | value |")
    print(f"|{'-' * (w + 2)}|---|")
    for name, value in rows:
        print(f"| {name.ljust(w)} | {value} |")
    print(f"\n# load average at the end: {loadavg()}; logs in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
