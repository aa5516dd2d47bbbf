"""Resident memory of a real server and a real agent: idle, and running 100 containers.

Run:  .venv/bin/python bench/footprint.py            # ~1 minute
      .venv/bin/python bench/footprint.py --replicas 50

Starts `dockyard server` and `dockyard agent` (tests/harness.py) on the local engine, reads
VmRSS from /proc after each settles, creates one service of --replicas containers of the
test image, waits until all run and the server has seen them, reads again, then removes
everything it created. Prints a table; asserts nothing.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, loadavg, print_machine, rss_mb  # noqa: E402

import docker  # noqa: E402

from tests.harness import IMAGE, Cluster, wait_for  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each reading")
    args = ap.parse_args()

    docker.from_env().api.inspect_image(IMAGE)  # build it with scripts/build-test-image.sh
    print_machine("footprint: server and agent resident memory")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-footprint-"))
    c = Cluster(tmp)
    rows = []
    svc = "footprint-" + secrets.token_hex(2)
    try:
        c.start_server()
        node = c.start_agent("a")
        server, agent = c.server.p.pid, c.agents[node].p.pid  # type: ignore[union-attr]
        time.sleep(args.settle)
        rows.append(("idle (1 node, no services)", rss_mb(server), rss_mb(agent)))
        cpu0 = (cpu_seconds(server), cpu_seconds(agent))
        time.sleep(10)
        idle_cpu = ((cpu_seconds(server) - cpu0[0]) / 10, (cpu_seconds(agent) - cpu0[1]) / 10)

        c.put(svc, replicas=args.replicas).raise_for_status()
        c.wait_running(svc, args.replicas, timeout=300)
        c.wait_ready(svc, args.replicas, timeout=60)
        time.sleep(args.settle)
        rows.append((f"{args.replicas} containers running", rss_mb(server), rss_mb(agent)))
        cpu0 = (cpu_seconds(server), cpu_seconds(agent))
        time.sleep(10)
        busy_cpu = ((cpu_seconds(server) - cpu0[0]) / 10, (cpu_seconds(agent) - cpu0[1]) / 10)

        c.api.delete(f"/v1/services/{svc}")
        wait_for(lambda: not c.containers(svc, running_only=False), 120, 0.5, what="containers removed")
        time.sleep(args.settle)
        rows.append(("after removing them", rss_mb(server), rss_mb(agent)))
    finally:
        c.close()

    print()
    print("| state | server RSS | agent RSS |")
    print("|---|---|---|")
    for name, s, a in rows:
        print(f"| {name} | {s:.0f} MiB | {a:.0f} MiB |")
    print("| targets | <= 150 MiB idle | <= 45 MiB idle, <= 50 MiB with 100 containers |")
    print(f"\n# CPU at rest: idle server {idle_cpu[0] * 100:.1f}%, agent {idle_cpu[1] * 100:.1f}% of a core; "
          f"with {args.replicas} containers server {busy_cpu[0] * 100:.1f}%, agent {busy_cpu[1] * 100:.1f}%")
    print(f"# load average at the end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
