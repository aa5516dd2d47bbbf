"""Benchmark control-plane failover: several servers on one PostgreSQL, the leader lost.

Run: .venv/bin/python bench/leader_failover.py                 (3 servers, lease TTL 5 s, 5 runs each)
     .venv/bin/python bench/leader_failover.py --runs 3 --lease-ttl 3

Starts a throw-away PostgreSQL (scripts/start-postgres.sh), 3 real servers and one real
agent on the local engine, and a service. Then, per run, it stops the leader — SIGKILL
(a crash) or SIGTERM (a clean stop, which gives the lease back) — and at the same instant
asks a surviving server to scale the service up by one, and measures:
  - takeover:    until a surviving server says it leads (GET /v1/cluster),
  - first pass:  until that server has finished a reconcile pass as leader,
  - placed:      until the new replica's container runs (the scale needs a leader to place it).
Side by side: one server on SQLite killed and restarted by hand (a supervisor's restart),
measured the same way. Prints figures only; asserts nothing; removes what it started.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import ROOT  # noqa: F401  (puts the repo on sys.path)

import httpx  # noqa: E402

from tests.harness import Cluster, HACluster, free_port, wait_for  # noqa: E402


def poll(pred, timeout: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if pred():
                return time.perf_counter()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise SystemExit("timed out")


def ha_run(c: HACluster, sig: int, replicas: int) -> tuple[dict[str, float], int]:
    first = c.wait_leader()
    survivors = [i for i in c.alive() if i != first]
    before = {i: c.cluster_state(i)["passes"] for i in survivors}
    c.use(survivors[0])
    t0 = time.perf_counter()
    c.servers[first].send(sig)  # type: ignore[union-attr]
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas + 1}).raise_for_status()
    box: list[int] = []

    def leads() -> bool:
        for i in survivors:
            if c.cluster_state(i)["leading"]:
                box.append(i)
                return True
        return False

    t_lead = poll(leads) - t0
    new = box[-1]
    t_pass = poll(lambda: c.cluster_state(new)["passes"] > before[new]) - t0
    t_run = poll(lambda: len(c.containers("bench")) == replicas + 1) - t0
    c.servers[first].p.wait(15)  # type: ignore[union-attr]
    # back to the start: the stopped server again, the service at `replicas`
    c.start_server(first)
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas}).raise_for_status()
    wait_for(lambda: len(c.containers("bench", running_only=False)) == replicas, 60, what="scaled back")
    return {"takeover": t_lead, "first pass": t_pass, "placed": t_run}, new


def single_run(c: Cluster, replicas: int) -> dict[str, float]:
    t0 = time.perf_counter()
    c.stop_server(signal.SIGKILL)
    c.server.start()  # type: ignore[union-attr]  # what a supervisor (systemd, docker restart) does
    t_up = poll(lambda: httpx.get(f"{c.url}/readyz", timeout=1).status_code == 200) - t0
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas + 1}).raise_for_status()
    t_run = poll(lambda: len(c.containers("bench")) == replicas + 1) - t0
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas}).raise_for_status()
    wait_for(lambda: len(c.containers("bench", running_only=False)) == replicas, 60, what="scaled back")
    return {"ready": t_up, "placed": t_run}


def summary(rows: list[dict[str, float]]) -> str:
    return ", ".join(f"{k} median {statistics.median(r[k] for r in rows):.2f} s "
                     f"(min {min(r[k] for r in rows):.2f}, max {max(r[k] for r in rows):.2f})" for k in rows[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lease-ttl", type=float, default=5.0)
    ap.add_argument("--replicas", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-leader-"))
    pg_dir = Path(tempfile.mkdtemp(prefix="dockyard-pg-")) / "data"
    url = subprocess.run([str(ROOT / "scripts" / "start-postgres.sh"), str(pg_dir), str(free_port())],
                         check=True, capture_output=True, text=True).stdout.strip()
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    try:
        c = HACluster(tmp / "ha", url, servers=3, env={"DOCKYARD_LEASE_TTL": str(args.lease_ttl)})
        (tmp / "ha").mkdir()
        try:
            c.start_server()
            c.wait_leader()
            c.start_agent("a")
            c.put("bench", replicas=args.replicas).raise_for_status()
            c.wait_running("bench", args.replicas)
            print(f"3 servers on PostgreSQL, lease TTL {args.lease_ttl:g} s, 1 agent, {args.replicas} replicas")
            for name, sig in (("kill -9 of the leader", signal.SIGKILL), ("clean stop of the leader", signal.SIGTERM)):
                rows = []
                for n in range(args.runs):
                    m, _ = ha_run(c, sig, args.replicas)
                    rows.append(m)
                    print(f"  {name}, run {n + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in m.items()))
                print(f"{name}: {summary(rows)}")
        finally:
            c.close()
        s = Cluster(tmp / "single")
        (tmp / "single").mkdir()
        try:
            s.start_server()
            s.start_agent("a")
            s.put("bench", replicas=args.replicas).raise_for_status()
            s.wait_running("bench", args.replicas)
            rows = [single_run(s, args.replicas) for _ in range(args.runs)]
            for n, m in enumerate(rows):
                print(f"  one server on SQLite, kill -9 + restart, run {n + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in m.items()))
            print(f"one server on SQLite, kill -9 + immediate restart: {summary(rows)}")
        finally:
            s.close()
    finally:
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", f"{pg_bin} -D {pg_dir} -m immediate stop"],
                       capture_output=True)
        shutil.rmtree(pg_dir.parent, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
