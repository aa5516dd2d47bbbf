"""Benchmark control-plane failover: several servers on one PostgreSQL, the leader lost.

Run: .venv/bin/python bench/leader_failover.py                 (3 servers, lease TTL 4 s, 5 runs each)
     .venv/bin/python bench/leader_failover.py --runs 3 --lease-ttl 3

Uses a fresh database on the PostgreSQL server of DOCKYARD_TEST_POSTGRES (or --postgres-url)
when one is given, else starts a throw-away one (scripts/start-postgres.sh); then 3 real
servers and one real agent on the local engine, and a service. Then, per run, it stops the leader — SIGKILL
(a crash) or SIGTERM (a clean stop, which gives the lease back) — and at the same instant
asks a surviving server to scale the service up by one and `docker kill`s one of the service's
running containers (a different replica each run, round the replicas: each has then run for over
the 10 s after which the agent resets its restart back-off, so each restart is the immediate
first one, agent/diff.py), and measures:
  - takeover:    until a surviving server says it leads (GET /v1/cluster),
  - first pass:  until that server has finished a reconcile pass as leader,
  - placed:      until the new replica's container runs (the scale needs a leader to place it),
  - restarted:   until the killed replica runs again. The agent restarts a crashed container in
                 place, on its own, without asking a server (agent/diff.py: an `exited` container
                 of an assigned instance -> `restart`; agent/main.py `_restart`: `docker start` of
                 the same container id, its restart count + 1, reported to the server later):
                 counted from the engine's view, when that container id is running with a
                 `State.StartedAt` other than before the kill, or when another container with the
                 same `dockyard.instance` label runs (a replacement; not what the agent does
                 today, but counted the same if it did). The run prints which of the two it saw.
After each run, once the scale has settled (--settle seconds), it counts the service's running
containers per instance label and per (revision, slot):
  - duplicates:  containers beyond the first for one instance, or live instances beyond the
                 first for one (revision, slot),
  - lost:        containers that ran before the stop and no longer run (the killed one only if
                 no container of its instance runs), plus replicas missing from the wanted count,
and checks that the server's record of the killed instance (GET .../instances, restart_count)
has counted the restart (it prints a line starting with "!" if not).
Side by side: one server on SQLite killed and restarted by hand (a supervisor's restart), with
a container killed at the same instant, measured the same way. Prints figures only; asserts
nothing; removes what it started.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, loadavg, print_machine  # noqa: F401  (puts the repo on sys.path)

import docker  # noqa: E402
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


def integrity(c: Cluster, want: int, before: set[str], settle: float, victim: "Victim") -> dict[str, float]:
    """Duplicates and lost containers of the service `bench`, `settle` seconds after the scale
    was seen placed: containers per instance label, live instances per (revision, slot). The
    killed container counts as lost only if no container of its instance runs."""
    time.sleep(settle)
    cs = c.containers("bench")
    per_instance: dict[str, int] = {}
    per_slot: dict[tuple[str, str], int] = {}
    for x in cs:
        per_instance[x.labels.get("dockyard.instance", "?")] = per_instance.get(x.labels.get("dockyard.instance", "?"), 0) + 1
        key = (x.labels.get("dockyard.revision", "?"), x.labels.get("dockyard.slot", "?"))
        per_slot[key] = per_slot.get(key, 0) + 1
    dup = sum(n - 1 for n in per_instance.values()) + sum(n - 1 for n in per_slot.values())
    ids = {x.id for x in cs}
    if per_instance.get(victim.instance):
        before = before - {victim.id}
    lost = len(before - ids) + max(0, want - len(per_instance))
    api = c.instances("bench")  # what the database wants running
    if len(api) != want or len(cs) != want:
        print(f"    ! after the scale: {len(cs)} containers running, {len(api)} instances wanted running in the "
              f"database, {want} asked for", flush=True)
    counted = next((i["restart_count"] for i in api if i["id"] == victim.instance), None)
    if counted is None or counted <= victim.restarts:
        print(f"    ! the server's restart_count of the killed instance is {counted} (was {victim.restarts} "
              f"before the kill)", flush=True)
    return {"duplicates": dup, "lost": lost}


class Victim:
    """One running container of the service, `docker kill`ed at t0 in a thread of its own (so the
    scale request is not delayed by the engine); `restarted` is set to the seconds from t0 until
    its instance runs again: the same container started again, or another container of it."""

    def __init__(self, c: Cluster, n: int) -> None:
        cs = sorted(c.containers("bench"), key=lambda x: int(x.labels.get("dockyard.slot", "0")))
        x = cs[n % len(cs)]
        self.id: str = x.id
        self.instance: str = x.labels["dockyard.instance"]
        self.started_at: str = x.attrs["State"]["StartedAt"]
        self.restarts: int = next(i["restart_count"] for i in c.instances("bench") if i["id"] == self.instance)
        self.restarted: float | None = None
        self.killed: float | None = None  # when `docker kill` returned, seconds after t0
        self.how = "not restarted within 60 s"
        self._api = docker.from_env(timeout=30).api  # its own connection: used from the thread only

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), daemon=True, name="victim")
        self._thread.start()

    def _run(self, t0: float) -> None:
        self._api.kill(self.id)
        self.killed = time.perf_counter() - t0
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            try:
                for x in self._api.containers(filters={"label": f"dockyard.instance={self.instance}",
                                                       "status": "running"}):
                    if x["Id"] != self.id:
                        self.restarted, self.how = time.perf_counter() - t0, "replaced by a new container"
                        return
                    st = self._api.inspect_container(self.id)["State"]
                    if st["Running"] and st["StartedAt"] != self.started_at:
                        self.restarted, self.how = time.perf_counter() - t0, "restarted in place"
                        return
            except docker.errors.APIError:
                pass
            time.sleep(0.02)

    def wait(self) -> float:
        self._thread.join(65)
        self._api.close()
        if self.restarted is None:
            raise SystemExit(f"the killed container {self.id[:12]} did not run again within 60 s")
        self.how += f", `docker kill` returned at {self.killed:.2f} s"
        return self.restarted


def ha_run(c: HACluster, sig: int, replicas: int, settle: float, n: int) -> tuple[dict[str, float], int, str]:
    first = c.wait_leader()
    survivors = [i for i in c.alive() if i != first]
    before = {i: c.cluster_state(i)["passes"] for i in survivors}
    c.use(survivors[0])
    ids_before = {x.id for x in c.containers("bench")}
    victim = Victim(c, n)
    t0 = time.perf_counter()
    c.servers[first].send(sig)  # type: ignore[union-attr]
    victim.start(t0)
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
    t_run = poll(lambda: len(c.containers("bench")) >= replicas + 1) - t0
    t_restart = victim.wait()
    checks = integrity(c, replicas + 1, ids_before, settle, victim)
    c.servers[first].p.wait(15)  # type: ignore[union-attr]
    # back to the start: the stopped server again, the service at `replicas`
    c.start_server(first)
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas}).raise_for_status()
    wait_for(lambda: len(c.containers("bench", running_only=False)) == replicas, 60, what="scaled back")
    return {"takeover": t_lead, "first pass": t_pass, "placed": t_run, "restarted": t_restart, **checks}, new, victim.how


def single_run(c: Cluster, replicas: int, settle: float, n: int) -> tuple[dict[str, float], str]:
    ids_before = {x.id for x in c.containers("bench")}
    victim = Victim(c, n)
    t0 = time.perf_counter()
    c.server.send(signal.SIGKILL)  # type: ignore[union-attr]
    victim.start(t0)
    c.server.p.wait(15)  # type: ignore[union-attr]
    c.server.start()  # type: ignore[union-attr]  # what a supervisor (systemd, docker restart) does
    t_up = poll(lambda: httpx.get(f"{c.url}/readyz", timeout=1).status_code == 200) - t0
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas + 1}).raise_for_status()
    t_run = poll(lambda: len(c.containers("bench")) >= replicas + 1) - t0
    t_restart = victim.wait()
    checks = integrity(c, replicas + 1, ids_before, settle, victim)
    c.api.post("/v1/services/bench/scale", json={"replicas": replicas}).raise_for_status()
    wait_for(lambda: len(c.containers("bench", running_only=False)) == replicas, 60, what="scaled back")
    return {"ready": t_up, "placed": t_run, "restarted": t_restart, **checks}, victim.how


COUNTS = ("duplicates", "lost")


def line(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" if k in COUNTS else f"{k} {v:.2f} s" for k, v in m.items())


def summary(rows: list[dict[str, float]]) -> str:
    times = ", ".join(f"{k} median {statistics.median(r[k] for r in rows):.2f} s "
                      f"(min {min(r[k] for r in rows):.2f}, max {max(r[k] for r in rows):.2f})"
                      for k in rows[0] if k not in COUNTS)
    counts = ", ".join(f"{k} {sum(r[k] for r in rows):.0f} in all" for k in COUNTS)
    return f"{times}; {counts} ({len(rows)} runs)"


def postgres(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(URL of an empty database, cleanup): a fresh database on a given server, or a server of our own."""
    if args.postgres_url:
        os.environ["DOCKYARD_TEST_POSTGRES"] = args.postgres_url
        from tests.pg import drop_database, fresh_database

        url = fresh_database()
        return url, lambda: drop_database(url)
    pg_dir = Path(tempfile.mkdtemp(prefix="dockyard-pg-")) / "data"
    url = subprocess.run([str(ROOT / "scripts" / "start-postgres.sh"), str(pg_dir), str(free_port())],
                         check=True, capture_output=True, text=True).stdout.strip()
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]

    def stop() -> None:
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", f"{pg_bin} -D {pg_dir} -m immediate stop"],
                       capture_output=True)
        shutil.rmtree(pg_dir.parent, ignore_errors=True)

    return url, stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lease-ttl", type=float, default=4.0, help="DOCKYARD_LEASE_TTL of the servers (default: "
                    "4, the server's own default)")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds after the scale is placed before counting duplicates and lost containers")
    ap.add_argument("--postgres-url", default=os.environ.get("DOCKYARD_TEST_POSTGRES"),
                    help="a PostgreSQL server to make a fresh database in (default: $DOCKYARD_TEST_POSTGRES; "
                         "without one a throw-away server is started)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the servers' and agents' logs (printed path)")
    args = ap.parse_args()
    print_machine(f"leader_failover: 3 servers on PostgreSQL vs 1 on SQLite, {args.runs} runs each")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-leader-"))
    url, stop_pg = postgres(args)
    try:
        c = HACluster(tmp / "ha", url, servers=3, env={"DOCKYARD_LEASE_TTL": str(args.lease_ttl)})
        (tmp / "ha").mkdir()
        try:
            c.start_server()
            c.wait_leader()
            c.start_agent("a")
            c.put("bench", replicas=args.replicas).raise_for_status()
            c.wait_running("bench", args.replicas)
            print(f"3 servers on PostgreSQL, lease TTL {args.lease_ttl:g} s, 1 agent, {args.replicas} replicas; "
                  f"per run the leader stopped, a scale to {args.replicas + 1} asked and one container killed")
            k = 0  # runs so far: the replica killed turns round over all of them
            for name, sig in (("kill -9 of the leader", signal.SIGKILL), ("clean stop of the leader", signal.SIGTERM)):
                rows = []
                for n in range(args.runs):
                    m, new, how = ha_run(c, sig, args.replicas, args.settle, k)
                    k += 1
                    rows.append(m)
                    print(f"  {name}, run {n + 1}: {line(m)} (new leader: server {new}; killed container {how})",
                          flush=True)
                print(f"{name}: {summary(rows)}", flush=True)
        finally:
            c.close()
        s = Cluster(tmp / "single")
        (tmp / "single").mkdir()
        try:
            s.start_server()
            s.start_agent("a")
            s.put("bench", replicas=args.replicas).raise_for_status()
            s.wait_running("bench", args.replicas)
            rows = []
            for n in range(args.runs):
                m, how = single_run(s, args.replicas, args.settle, n)
                rows.append(m)
                print(f"  one server on SQLite, kill -9 + restart, run {n + 1}: {line(m)} (killed container {how})",
                      flush=True)
            print(f"one server on SQLite, kill -9 + immediate restart: {summary(rows)}")
        finally:
            s.close()
    finally:
        stop_pg()
        print(f"# load average at the end: {loadavg()}" + (f"; logs in {tmp}" if args.keep_logs else ""))
        if not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
