"""Benchmark node-loss failover: the time from an agent's loss to all replacements running.

Run: .venv/bin/python bench/failover.py              (server defaults: heartbeat 1 s, TTL 5 s, grace 1 s)
     .venv/bin/python bench/failover.py --runs 5 --cases kill
     .venv/bin/python bench/failover.py --node-ttl 4 --cases stop

Starts a real server and three real agents on the local Docker engine (each agent stands
for a host), runs a service spread over them, then takes one agent away and polls Docker
until the service's replacements run on the survivors. Two ways to lose it:

  kill  SIGKILL of the agent process: the kernel closes its sockets, the server sees its
        long poll drop (the fast path: the node is down after --node-grace without a reconnect)
  stop  SIGSTOP: a silent host (no FIN, packets just stop); only the node TTL tells. The
        agent is sent SIGCONT after the run.

The lost agent's containers keep running on the engine, as they would on a host cut off
from the cluster; they do not count. Between runs the agent is restarted (kill) or resumed
(stop), which removes its stale containers. Prints figures only; asserts nothing. Every
process it starts is ended at the end.
"""
from __future__ import annotations

import argparse
import shutil
import signal
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

from bench._common import loadavg, print_machine, speed_probe  # noqa: E402
from tests.harness import IMAGE, Cluster, wait_for  # noqa: E402


def running_per_node(c: Cluster, service: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for ct in c.containers(service):
        node = ct.labels["dockyard.node"]
        out[node] = out.get(node, 0) + 1
    return out


def one_run(c: Cluster, victim: str, service: str, replicas: int, case: str) -> dict[str, float]:
    node = c.node(victim)
    marks: dict[str, float] = {}

    def watch_status() -> None:  # when did the server declare the node down?
        while "down" not in marks and time.perf_counter() - t0 < 60:
            if c.node_status(node) == "down":
                marks["down"] = time.perf_counter() - t0
            time.sleep(0.05)

    t0 = time.perf_counter()
    if case == "kill":
        c.kill_agent(victim)  # SIGKILL: the agent process is gone, its connections closed
    else:
        c.agents[node].send(signal.SIGSTOP)  # a silent host
    watcher = threading.Thread(target=watch_status, daemon=True)
    watcher.start()
    try:
        while time.perf_counter() - t0 < 60:
            per = running_per_node(c, service)
            if sum(n for name, n in per.items() if name != node) == replicas:
                marks["running"] = time.perf_counter() - t0
                break
            time.sleep(0.05)
        watcher.join(timeout=5)
    finally:
        if case == "stop":
            c.agents[node].send(signal.SIGCONT)
    if "running" not in marks:
        raise SystemExit(f"replacements not running 60 s after losing {node} ({case})")
    # heal for the next run: the agent comes back and removes its stale containers
    if case == "kill":
        c.restart_agent(victim)
    wait_for(lambda: c.node_status(node) == "ready", 30, what=f"{node} ready")
    wait_for(lambda: len(c.containers(service, running_only=False)) == replicas, 30, what="stale containers removed")
    return marks


def summary(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):.2f} s, range {min(xs):.2f}-{max(xs):.2f} s over {len(xs)} run(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3, help="lose an agent this many times per case (a, b, c, a, ...)")
    ap.add_argument("--cases", default="kill,stop", help="kill (SIGKILL), stop (SIGSTOP), or both")
    ap.add_argument("--node-ttl", type=float, default=None, help="server --node-ttl (default: the server's)")
    ap.add_argument("--node-grace", type=float, default=None, help="server --node-grace (default: the server's)")
    ap.add_argument("--heartbeat-interval", type=float, default=None, help="server --heartbeat-interval")
    args = ap.parse_args()
    cases = [x.strip() for x in args.cases.split(",") if x.strip()]
    assert set(cases) <= {"kill", "stop"}, cases

    engine = docker.from_env(timeout=120)
    try:
        engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run([str(ROOT / "scripts" / "build-test-image.sh")], check=True)

    flags = []
    for flag, value in (("--node-ttl", args.node_ttl), ("--node-grace", args.node_grace),
                        ("--heartbeat-interval", args.heartbeat_interval)):
        if value is not None:
            flags += [flag, str(value)]
    print_machine("bench/failover.py " + " ".join(sys.argv[1:]))
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-failover-"))
    c = Cluster(tmp, server_args=flags)
    results: dict[str, list[float]] = {case: [] for case in cases}
    downs: dict[str, list[float]] = {case: [] for case in cases}
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
        print(f"3 agents, {args.replicas} replicas, server flags: {' '.join(flags) or '(defaults)'}")
        k = 0
        for case in cases:
            for n in range(args.runs):
                victim = "abc"[k % 3]
                k += 1
                lost = running_per_node(c, "failover").get(c.node(victim), 0)
                m = one_run(c, victim, "failover", args.replicas, case)
                results[case].append(m["running"])
                if "down" in m:
                    downs[case].append(m["down"])
                down = f"{m['down']:.2f} s" if "down" in m else "n/a"
                print(f"{case} run {n + 1}: agent {victim} ({lost} instances): node down after {down}, "
                      f"all replacements running after {m['running']:.2f} s  (load {loadavg()})")
                c.wait_ready("failover", args.replicas)
        for case in cases:
            what = "SIGKILL" if case == "kill" else "SIGSTOP"
            print(f"{what} -> all replacements running: {summary(results[case])}"
                  + (f"; node down: {summary(downs[case])}" if downs[case] else ""))
        print(f"load average {loadavg()}, speed probe {speed_probe():.0f} ms")
    finally:
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
