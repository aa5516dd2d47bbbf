"""The agent's own CPU cost of metrics (issue 18) at 100 containers.

Run:  .venv/bin/python bench/agent_metrics.py                 # ~5 minutes
      .venv/bin/python bench/agent_metrics.py --replicas 50 --seconds 30

Starts `dockyard server` and `dockyard agent` (tests/harness.py) on the local engine and one
service of --replicas sleeping containers of the test image. Then:

1. in this process, on those containers (listed once, as the reconciler lists them): the time
   of one sampling round of agent/usage.py's cgroup reader, of one whole round of the metrics
   thread (readings + the validated MetricsIn body), and, for comparison, of the engine's
   one-shot stats call per container (the route not taken);
2. the agent process's CPU seconds over --seconds with --metrics-interval 0 (off), 5 (the
   default) and 1, restarting the agent between runs (it re-adopts its containers).

Removes everything it created. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, loadavg, percentile, print_machine  # noqa: E402

import docker  # noqa: E402

from agent.driver import DockerDriver  # noqa: E402
from agent.metrics_reporter import MetricsReporter  # noqa: E402
from agent.usage import CgroupReader  # noqa: E402
from tests.harness import IMAGE, Cluster, wait_for  # noqa: E402


def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def agent_cpu(c: Cluster, interval: float, seconds: float, settle: float) -> float:
    """CPU seconds the agent used over `seconds`, run with --metrics-interval `interval`."""
    name = c.node("a")
    if name in c.agents:
        c.agents[name].kill()
    c.start_agent("a", "--metrics-interval", str(interval))
    pid = c.agents[name].p.pid  # type: ignore[union-attr]
    time.sleep(settle)  # join, re-adoption and the first probes are not what is measured
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each agent CPU measurement")
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=200, help="sampling rounds timed in this process")
    args = ap.parse_args()

    engine = docker.from_env()
    engine.api.inspect_image(IMAGE)  # build it with scripts/build-test-image.sh
    print_machine("agent metrics: the agent's CPU cost of sampling its containers")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-agent-metrics-"))
    c = Cluster(tmp)
    svc = "metrics-" + secrets.token_hex(2)
    try:
        c.start_server()
        c.start_agent("a", "--metrics-interval", "0")
        c.put(svc, replicas=args.replicas).raise_for_status()
        c.wait_running(svc, args.replicas, timeout=600)
        # without a node credential: 404 while the server has no such endpoint, 401 once it has
        metrics_answer = c.api.post("/v1/agent/metrics", json={}).status_code

        # 1. one round, in this process
        listed = DockerDriver(c.node("a")).list()
        ids = [o.container_id for o in listed]
        reader = CgroupReader()
        found = sum(r is not None for r in reader.read_all(ids).values())
        read_ms = timed(lambda: reader.read_all(ids), args.rounds)
        rep = MetricsReporter(5.0, lambda: listed, lambda b: 200)
        rep.sample()
        round_ms = timed(rep.sample, args.rounds)
        stats_ms = timed(lambda: [engine.api.stats(cid, stream=False, one_shot=True) for cid in ids[:10]], 1)[0] / 10
        list_ms = timed(lambda: DockerDriver(c.node("a")).list(), 5)

        # 2. the agent process over a minute, without and with metrics
        runs = [(interval, agent_cpu(c, interval, args.seconds, args.settle)) for interval in (0.0, 5.0, 1.0)]
    finally:
        c.close()

    n = len(listed)
    print(f"\n## one sampling round over {n} containers ({found} with cgroup files found), {args.rounds} rounds")
    print("| what | median | p95 |")
    print("|---|---|---|")
    print(f"| cgroup reads (agent/usage.py CgroupReader.read_all) | {percentile(read_ms, 50):.2f} ms "
          f"| {percentile(read_ms, 95):.2f} ms |")
    print(f"| whole round (reads + MetricsIn body, validated) | {percentile(round_ms, 50):.2f} ms "
          f"| {percentile(round_ms, 95):.2f} ms |")
    print(f"| for comparison: the engine's one-shot stats call, x{n} | {stats_ms * n:.0f} ms | |")
    print(f"| for comparison: the reconciler's container list (each pass) | {percentile(list_ms, 50):.1f} ms | |")
    print(f"\n## the agent process, {args.seconds:.0f} s each, {args.replicas} containers "
          f"(POST /v1/agent/metrics without a node credential: {metrics_answer}; 404 = the server has no endpoint yet, "
          "so the agent posts once a minute)")
    print("| --metrics-interval | agent CPU | share of a core |")
    print("|---|---|---|")
    for interval, cpu in runs:
        print(f"| {interval:g}{' (off)' if not interval else ''} | {cpu:.2f} s | {cpu / args.seconds * 100:.2f} % |")
    print(f"\n# load average at the end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
