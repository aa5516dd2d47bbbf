"""Benchmark node-loss failover: the time from an agent's death to all replacements running.

Run: .venv/bin/python bench/failover.py            (server defaults: heartbeat 1 s, node TTL 5 s)
     .venv/bin/python bench/failover.py --node-ttl 3 --runs 5

Starts a real server and three real agents on the local Docker engine (each agent stands
for a host), runs a service spread over them, then SIGKILLs one agent and polls Docker
until the service's replacements run on the survivors. The killed agent's containers
keep running on the engine, as they would on a host cut off from the cluster; they do not
count. Between runs the killed agent is restarted, which removes its stale containers.
Prints figures only; asserts nothing. Everything it starts is removed at the end.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from tests.harness import IMAGE, Cluster, wait_for  # noqa: E402


def running_per_node(c: Cluster, service: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for ct in c.containers(service):
        node = ct.labels["dockyard.node"]
        out[node] = out.get(node, 0) + 1
    return out


def one_run(c: Cluster, victim: str, service: str, replicas: int) -> dict[str, float]:
    node = c.node(victim)
    marks: dict[str, float] = {}

    def watch_status() -> None:  # when did the server declare the node down?
        while "down" not in marks and time.perf_counter() - t0 < 60:
            if c.node_status(node) == "down":
                marks["down"] = time.perf_counter() - t0
            time.sleep(0.05)

    t0 = time.perf_counter()
    c.kill_agent(victim)  # SIGKILL: the host is gone
    watcher = threading.Thread(target=watch_status, daemon=True)
    watcher.start()
    while time.perf_counter() - t0 < 60:
        per = running_per_node(c, service)
        if sum(n for name, n in per.items() if name != node) == replicas:
            marks["running"] = time.perf_counter() - t0
            break
        time.sleep(0.05)
    watcher.join(timeout=5)
    if "running" not in marks:
        raise SystemExit(f"replacements not running 60 s after killing {node}")
    # heal for the next run: the agent comes back and removes its stale containers
    c.restart_agent(victim)
    wait_for(lambda: c.node_status(node) == "ready", 30, what=f"{node} ready")
    wait_for(lambda: len(c.containers(service, running_only=False)) == replicas, 30, what="stale containers removed")
    return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3, help="kill an agent this many times (a, b, c, a, ...)")
    ap.add_argument("--node-ttl", type=float, default=5.0, help="server --node-ttl (default: the server default)")
    ap.add_argument("--heartbeat-interval", type=float, default=1.0, help="server --heartbeat-interval")
    args = ap.parse_args()

    engine = docker.from_env(timeout=120)
    try:
        engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True)

    tmp = Path(tempfile.mkdtemp(prefix="dockyard-failover-"))
    c = Cluster(tmp, server_args=["--node-ttl", str(args.node_ttl), "--heartbeat-interval", str(args.heartbeat_interval)])
    results = []
    try:
        c.start_server()
        for short in "abc":
            c.start_agent(short, "--label", f"zone={short}", wait=False)
        for short in "abc":
            wait_for(lambda s=short: c.node_status(c.node(s)) == "ready", 30, what=f"node {short} ready")
        r = c.put("failover", replicas=args.replicas)
        r.raise_for_status()
        c.wait_running("failover", args.replicas)
        c.wait_ready("failover", args.replicas)
        print(f"3 agents, {args.replicas} replicas, heartbeat {args.heartbeat_interval:g} s, node TTL {args.node_ttl:g} s")
        for n in range(args.runs):
            victim = "abc"[n % 3]
            lost = running_per_node(c, "failover").get(c.node(victim), 0)
            m = one_run(c, victim, "failover", args.replicas)
            results.append(m["running"])
            down = f"{m['down']:.2f} s" if "down" in m else "n/a"
            print(f"run {n + 1}: killed agent {victim} ({lost} instances): node down after {down}, "
                  f"all replacements running after {m['running']:.2f} s")
            c.wait_ready("failover", args.replicas)
        print(f"failover (kill -> all replacements running): min {min(results):.2f} s, "
              f"median {statistics.median(results):.2f} s, max {max(results):.2f} s over {len(results)} run(s)")
    finally:
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
