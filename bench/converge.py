"""Dockyard vs Docker Swarm vs the raw floor, on the same engine, timed by the same poller.

Run:  .venv/bin/python bench/converge.py                 # sizes 10,50,100, one repeat, ~3 minutes
      .venv/bin/python bench/converge.py --repeat 3      # median of 3
      .venv/bin/python bench/converge.py --skip-swarm    # no `docker swarm init`
      .venv/bin/python bench/converge.py --sizes 100,300,1000 --skip-swarm --skip-node-loss   # the curve
      .venv/bin/python bench/converge.py --sizes 300 --only dockyard --profile /tmp/prof   # py-spy

What is timed (every figure: from the API call until a poller that lists running containers
by label every 50 ms through the docker SDK sees the condition):
  converge N      create a service of N replicas -> N running
  scale 100 -> 0  scale the 100-replica service to 0 -> 0 running
  self-heal       `docker kill` one container of the 10-replica service -> 10 running again
  rolling update  change the env of a 20-replica service (Swarm --update-parallelism 10,
                  Dockyard max_surge 10, max_unavailable 0) -> 20 running, none of them old
  node loss       Dockyard only: SIGKILL one of 3 agents of a 30-replica service -> 30
                  running on the 2 surviving nodes (default node TTL and loop interval)
The raw floor does the same container operations straight through the docker SDK with an
8-thread pool (the agent's default concurrency): create+start, stop+remove.
Every converge also prints the CPU seconds the engine (dockerd, containerd) and Dockyard's
server and agent used meanwhile, and the server's reconcile passes; a table of CPU per container
at the end shows what grows faster than N. Timeouts grow with N above 300.

Swarm: `docker swarm init --advertise-addr 127.0.0.1` for the run and `docker swarm leave
--force` afterwards (always, in a finally); services use the local image with
--no-resolve-image. The engine must not already be part of a swarm (the bench refuses).
Nothing here asserts: it prints a table.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Poller, cpu_seconds, loadavg, median, print_machine, rss_mb  # noqa: E402

import docker  # noqa: E402
from docker.types import LogConfig  # noqa: E402

from tests.harness import IMAGE, Cluster, wait_for  # noqa: E402

COMMAND = ["sleep", "3600"]
STOP_GRACE = 1
POOL = 8
ROLL = 20


def gone(api, label: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until no container (running or not) carries the label."""
    wait_for(lambda: not api.containers(all=True, filters={"label": label}), timeout, 0.2,
             what=f"containers with {label} removed")


# ---- the systems under test ------------------------------------------------------------------

class Raw:
    """The floor: the same containers through the docker SDK, 8 threads, no orchestration."""

    name = "floor"

    def __init__(self, api):  # type: ignore[no-untyped-def]
        self.api = api
        self.pool = ThreadPoolExecutor(POOL)
        self.seq = 0

    def label(self, svc: str) -> str:
        return f"bench.raw={svc}"

    def _run(self, svc: str, env: dict[str, str]) -> str:
        self.seq += 1
        hc = self.api.create_host_config(
            init=True, log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}))
        c = self.api.create_container(IMAGE, command=COMMAND, labels={"bench.raw": svc}, host_config=hc,
                                      environment=env, stop_timeout=STOP_GRACE,
                                      name=f"{svc}-{self.seq}-{secrets.token_hex(3)}")
        self.api.start(c["Id"])
        return c["Id"]

    def _rm(self, cid: str) -> None:
        self.api.stop(cid, timeout=STOP_GRACE)
        self.api.remove_container(cid, force=True)

    def _ids(self, svc: str) -> list[str]:
        return [c["Id"] for c in self.api.containers(all=True, filters={"label": self.label(svc)})]

    def create(self, svc: str, n: int, env: dict[str, str] | None = None, roll: bool = False) -> None:
        list(self.pool.map(lambda _: self._run(svc, env or {}), range(n)))

    def scale_to_zero(self, svc: str) -> None:
        list(self.pool.map(self._rm, self._ids(svc)))

    def update(self, svc: str, n: int) -> None:
        old = self._ids(svc)
        futs = [self.pool.submit(self._run, svc, {"BENCH_REV": "2"}) for _ in range(n)]
        futs += [self.pool.submit(self._rm, cid) for cid in old]
        for f in futs:
            f.result()

    def delete(self, svc: str) -> None:
        for cid in self._ids(svc):
            self.api.remove_container(cid, force=True)

    def close(self) -> None:
        self.pool.shutdown()


class Dockyard:
    """A real `dockyard server` and one real `dockyard agent` (tests/harness.py)."""

    name = "dockyard"

    def __init__(self, tmp: Path):
        self.c = Cluster(tmp)
        self.c.start_server()
        self.node = self.c.start_agent("a")
        self.extra = 0

    def label(self, svc: str) -> str:
        return f"dockyard.service={svc}"

    def _put(self, svc: str, n: int, **spec) -> None:  # type: ignore[no-untyped-def]
        r = self.c.put(svc, replicas=n, stop_timeout=STOP_GRACE, **spec)
        r.raise_for_status()

    def create(self, svc: str, n: int, roll: bool = False) -> None:
        if roll:
            self._put(svc, n, update={"max_surge": 10, "max_unavailable": 0})
        else:
            self._put(svc, n)

    def scale_to_zero(self, svc: str) -> None:
        self.c.api.post(f"/v1/services/{svc}/scale", json={"replicas": 0}).raise_for_status()

    def update(self, svc: str, n: int) -> None:
        self._put(svc, n, env={"BENCH_REV": "2"}, update={"max_surge": 10, "max_unavailable": 0})

    def delete(self, svc: str) -> None:
        self.c.api.delete(f"/v1/services/{svc}")

    def rss(self) -> tuple[float, float]:
        return rss_mb(self.c.server.p.pid), rss_mb(self.c.agents[self.node].p.pid)  # type: ignore[union-attr]

    def counters(self) -> dict[str, float]:
        """The server's reconcile passes (count, seconds) and syncs answered, from /metrics."""
        out: dict[str, float] = {}
        for line in self.c.api.get("/metrics").text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("dockyard_reconcile_pass_seconds_count", "dockyard_reconcile_pass_seconds_sum",
                        "dockyard_agent_syncs_total"):
                out[name.removeprefix("dockyard_")] = float(value)
        return out

    def pids(self) -> dict[str, int]:
        return {"server": self.c.server.p.pid, "agent": self.c.agents[self.node].p.pid}  # type: ignore[union-attr]

    def close(self) -> None:
        self.c.close()


class Swarm:
    """Docker Swarm mode on the same engine (single node, local image)."""

    name = "swarm"

    def __init__(self, api, restart_delay: str | None):  # type: ignore[no-untyped-def]
        self.api = api
        self.restart_delay = restart_delay

    def label(self, svc: str) -> str:
        return f"com.docker.swarm.service.name={svc}"

    @staticmethod
    def docker(*args: str) -> None:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {r.stderr.strip()}")

    def create(self, svc: str, n: int, roll: bool = False) -> None:
        extra = ["--restart-delay", self.restart_delay] if self.restart_delay is not None else []
        self.docker("service", "create", "--detach", "--quiet", "--no-resolve-image", "--name", svc,
                    "--replicas", str(n), "--init", "--stop-grace-period", f"{STOP_GRACE}s",
                    "--update-parallelism", "10", "--update-delay", "0s", *extra, IMAGE, *COMMAND)

    def scale_to_zero(self, svc: str) -> None:
        self.docker("service", "scale", "--detach", f"{svc}=0")

    def update(self, svc: str, n: int) -> None:
        self.docker("service", "update", "--detach", "--quiet", "--no-resolve-image", "--env-add", "BENCH_REV=2", svc)

    def delete(self, svc: str) -> None:
        self.docker("service", "rm", svc)

    def close(self) -> None:
        pass


# ---- CPU accounting --------------------------------------------------------------------------

def engine_pids() -> dict[str, int]:
    """The pids of the dockerd that DOCKER_HOST names (a unix socket in its command line; the
    default one otherwise) and of its containerd: the engine's own CPU, which every system
    competes with."""
    sock = os.environ.get("DOCKER_HOST", "").removeprefix("unix://")
    procs: dict[int, tuple[str, int, str]] = {}  # pid -> (comm, parent pid, command line)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                comm = (d / "comm").read_text().strip()
                if comm in ("dockerd", "containerd"):
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    procs[int(d.name)] = (comm, ppid, (d / "cmdline").read_text().replace("\0", " "))
            except (OSError, ValueError):
                continue
    daemons = sorted(pid for pid, (comm, _, cmd) in procs.items() if comm == "dockerd"
                     and ((sock and sock in cmd) or (not sock and " -H" not in cmd and "--host" not in cmd)))
    found: dict[str, int] = {}
    if daemons:
        found["dockerd"] = daemons[0]
        own = [pid for pid, (comm, ppid, _) in procs.items() if comm == "containerd" and ppid == daemons[0]]
        others = sorted(pid for pid, (comm, _, _) in procs.items() if comm == "containerd")
        if own or others:
            found["containerd"] = (own or others)[0]
    return found


class CPU:
    """CPU seconds the given processes used between start() and stop()."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                out[name] = cpu_seconds(pid)
            except OSError:
                pass
        return out

    def start(self) -> "CPU":
        self.before = self._now()
        return self

    def stop(self) -> dict[str, float]:
        return {k: v - self.before[k] for k, v in self._now().items() if k in self.before}


class Profiles:
    """py-spy recordings of the Dockyard processes during one converge (--profile DIR; py-spy is
    not a dependency: `.venv/bin/pip install py-spy`)."""

    def __init__(self, directory: Path | None, pids: dict[str, int], what: str):
        self.procs: list[subprocess.Popen] = []
        if directory is None or not pids:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        directory.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            if name in ("dockerd", "containerd"):
                continue
            out = directory / f"{name}-{what}.speedscope.json"
            self.procs.append(subprocess.Popen([spy, "record", "--format", "speedscope", "--rate", "50",
                                                "--pid", str(pid), "--output", str(out)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


# ---- scenarios -------------------------------------------------------------------------------

def self_heal(api, poller: Poller, n: int) -> float | None:  # type: ignore[no-untyped-def]
    """`docker kill` one container; seconds until n run again.

    Docker's container list can show a killed container as running for a moment after the
    kill returns, so the count only counts once a sample has shown the victim gone. If a
    replacement was quicker than that (never seen gone), the engine's own start time of
    the restarted container is used instead.
    """
    victim = sorted(poller.running())[0]
    wall, t0 = time.time(), time.monotonic()
    api.kill(victim)
    after = time.monotonic()
    drop = poller.until(lambda ids: victim not in ids or len(ids) < n, after, 3)
    if drop is not None:
        took = poller.until(lambda ids: len(ids) >= n, after + drop, 60)
        return None if took is None else after + drop + took - t0
    started = api.inspect_container(victim)["State"]["StartedAt"]
    if api.inspect_container(victim)["State"]["Running"]:
        from datetime import datetime
        ts = datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00").timestamp()
        if ts > wall:
            return ts - wall
    return None


def run_system(sys_, api, poller: Poller, sizes: list[int], tag: str, out: dict, timeout: float,  # type: ignore[no-untyped-def]
               profile: Path | None = None) -> None:
    def rec(key: str, value: float | None) -> None:
        out.setdefault((key, sys_.name), []).append(value)
        shown = "timeout" if value is None else f"{value:.2f}s"
        print(f"  {sys_.name:9} {key:22} {shown}   (load {loadavg()})", flush=True)

    pids = {**engine_pids(), **(sys_.pids() if hasattr(sys_, "pids") else {})}
    for n in sizes:
        svc = f"{tag}-{sys_.name[:2]}-{n}"
        label = sys_.label(svc)
        poller.watch(label)
        spy = Profiles(profile, pids, f"converge-{n}")
        counted = sys_.counters() if hasattr(sys_, "counters") else {}
        cpu = CPU(pids).start()
        t0 = time.monotonic()
        sys_.create(svc, n)
        rec(f"converge {n}", poller.until(lambda ids: len(ids) >= n, t0, timeout * max(1.0, n / 300)))
        used = cpu.stop()
        spy.stop()
        out.setdefault(("cpu", f"converge {n}", sys_.name), []).append(used)
        print(f"  {sys_.name:9} {'':22} CPU s: " + ", ".join(f"{k} {v:.1f} ({1000 * v / n:.0f} ms/container)"
                                                        for k, v in used.items()), flush=True)
        if counted:
            now = sys_.counters()
            passes = now["reconcile_pass_seconds_count"] - counted["reconcile_pass_seconds_count"]
            took = now["reconcile_pass_seconds_sum"] - counted["reconcile_pass_seconds_sum"]
            syncs = now["agent_syncs_total"] - counted["agent_syncs_total"]
            print(f"  {sys_.name:9} {'':22} server: {passes:.0f} full passes ({took:.2f} s), {syncs:.0f} syncs answered",
                  flush=True)
        if n == min(sizes) and sys_.name != "floor":
            wait_for(lambda: len(poller.running()) >= n, 60, 0.05, what="all running before the kill")
            time.sleep(1.0)  # settled: reported and seen as running by the orchestrator
            rec("self-heal (docker kill)", self_heal(api, poller, n))
        if n == max(sizes):
            time.sleep(0.5)
            t0 = time.monotonic()
            sys_.scale_to_zero(svc)
            rec(f"scale {n} -> 0", poller.until(lambda ids: not ids, t0, timeout * max(1.0, n / 300)))
        sys_.delete(svc)
        gone(api, label, max(120.0, timeout * n / 300))

    svc = f"{tag}-{sys_.name[:2]}-roll"
    label = sys_.label(svc)
    poller.watch(label)
    sys_.create(svc, ROLL, roll=True)
    wait_for(lambda: len(poller.running()) >= ROLL, timeout, 0.05, what="rolling-update service up")
    time.sleep(1.0)
    old = poller.running()
    t0 = time.monotonic()
    sys_.update(svc, ROLL)
    rec(f"rolling update {ROLL}", poller.until(lambda ids: len(ids - old) >= ROLL and not ids & old, t0, timeout))
    sys_.delete(svc)
    gone(api, label)


def node_loss(d: Dockyard, api, poller: Poller, tag: str, rep: int, out: dict) -> None:  # type: ignore[no-untyped-def]
    n = 30
    extra = [d.c.start_agent(f"b{rep}"), d.c.start_agent(f"c{rep}")]
    svc = f"{tag}-dy-loss"
    label = d.label(svc)
    poller.watch(label)
    d.create(svc, n)
    wait_for(lambda: len(poller.running()) >= n, 120, 0.05, what="node-loss service up")
    wait_for(lambda: d.c.service(svc)["status"]["ready"] == n, 30, 0.1, what="ready")
    time.sleep(1.0)
    victim = extra[1]
    dead = frozenset(c["Id"] for c in api.containers(filters={"label": f"dockyard.node={victim}"}))
    t0 = time.monotonic()
    d.c.kill_agent(f"c{rep}")
    took = poller.until(lambda ids: len(ids - dead) >= n, t0, 60)
    out.setdefault(("node loss (1 of 3 agents)", "dockyard"), []).append(took)
    shown = "timeout" if took is None else f"{took:.2f}s"
    print(f"  dockyard  node loss ({len(dead)} of {n} replicas) {shown}   (load {loadavg()})", flush=True)
    d.delete(svc)
    wait_for(lambda: not api.containers(all=True, filters={"label": label}) or
             {c["Id"] for c in api.containers(all=True, filters={"label": label})} <= dead, 60, 0.2,
             what="node-loss containers removed")
    d.c.kill_agent(f"b{rep}", signal.SIGTERM)
    for cid in dead:
        try:
            api.remove_container(cid, force=True)
        except docker.errors.APIError:
            pass


# ---- main ------------------------------------------------------------------------------------

TARGETS = {"converge 100": "dockyard <= 1.15 x floor", "self-heal (docker kill)": "<= 1 s",
           "node loss (1 of 3 agents)": "<= 10 s"}


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}s"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def cpu_table(out: dict, sizes: list[int]) -> str:
    """CPU seconds per converge (medians), and per container: what grows faster than N shows here."""
    lines = ["| converge | Dockyard server | Dockyard agent | dockerd under Dockyard | dockerd under the floor |",
             "|---|---|---|---|---|"]

    def cell(system: str, proc: str, n: int) -> str:
        v = median(u.get(proc) for u in out.get(("cpu", f"converge {n}", system), []))
        return "—" if v is None else f"{v:.1f} s ({1000 * v / n:.1f} ms each)"

    for n in sizes:
        lines.append(f"| {n} | {cell('dockyard', 'server', n)} | {cell('dockyard', 'agent', n)} | "
                     f"{cell('dockyard', 'dockerd', n)} | {cell('floor', 'dockerd', n)} |")
    return "\n".join(lines)


def pairs(out: dict, sizes: list[int]) -> str:
    """Dockyard ÷ floor within each repeat (the two ran one after the other, in turns), and the
    median of those: less moved by the engine's drift over a run than the ratio of medians."""
    lines = []
    for n in sizes:
        f, d = out.get((f"converge {n}", "floor"), []), out.get((f"converge {n}", "dockyard"), [])
        each = [b / a for a, b in zip(f, d) if a and b]
        if each:
            lines.append(f"# converge {n}: Dockyard ÷ floor per repeat " + ", ".join(f"{r:.2f}×" for r in each)
                         + f"; median {median(each):.2f}×")
    return "\n".join(lines)


def table(out: dict, keys: list[str], repeat: int) -> str:
    lines = [f"| scenario (median of {repeat}) | raw floor | Dockyard | Swarm | Dockyard ÷ floor | Dockyard ÷ Swarm | target |",
             "|---|---|---|---|---|---|---|"]
    for k in keys:
        f, d, s = (median(out.get((k, name), [])) for name in ("floor", "dockyard", "swarm"))
        lines.append(f"| {k} | {fmt(f)} | {fmt(d)} | {fmt(s)} | {ratio(d, f)} | {ratio(d, s)} | {TARGETS.get(k, '')} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,50,100", help="replica counts to converge (default 10,50,100)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of every scenario; the table shows medians")
    ap.add_argument("--skip-swarm", action="store_true", help="do not init a swarm; Dockyard and the floor only")
    ap.add_argument("--skip-floor", action="store_true", help="do not time the raw floor")
    ap.add_argument("--skip-node-loss", action="store_true")
    ap.add_argument("--only", choices=["floor", "dockyard", "swarm"], action="append",
                    help="time only these systems (repeatable)")
    ap.add_argument("--swarm-restart-delay", default=None, help="Swarm --restart-delay (default: Swarm's, 5s)")
    ap.add_argument("--timeout", type=float, default=240.0,
                    help="seconds before a scenario counts as timed out (converge and scale N: x N/300 above 300)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="record the Dockyard server and agent with py-spy during each converge, into this directory")
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    systems = set(args.only or ["floor", "dockyard", "swarm"])
    if args.skip_swarm:
        systems.discard("swarm")
    if args.skip_floor:
        systems.discard("floor")

    client = docker.from_env(timeout=120)
    api = client.api
    api.inspect_image(IMAGE)  # no pulls anywhere: build it with scripts/build-test-image.sh
    print_machine("converge: Dockyard vs Docker Swarm vs raw docker SDK")
    tag = "bench" + secrets.token_hex(2)
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    print(f"# sizes {sizes}, repeat {args.repeat}, logs in {tmp}", flush=True)

    out: dict = {}
    poller = Poller(api).start()
    swarm_inited = False
    raw = Raw(api)
    dy: Dockyard | None = None
    try:
        if "swarm" in systems:
            state = api.info().get("Swarm", {}).get("LocalNodeState")
            if state not in ("inactive", "", None):
                print(f"# the engine is already in a swarm ({state}): not touching it; Swarm skipped", flush=True)
                systems.discard("swarm")
            else:
                subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                               check=True, capture_output=True, timeout=60)
                swarm_inited = True
        if "dockyard" in systems:
            dy = Dockyard(tmp)
        swarm = Swarm(api, args.swarm_restart_delay)
        for rep in range(args.repeat):
            print(f"# run {rep + 1}/{args.repeat}", flush=True)
            # the order turns with every repeat: the engine slows over a run (the floor's converge 100
            # took 12.6, 15.1, 17.4 s in three repeats of one run), and whoever always ran second
            # paid for it
            order = [x for x in (raw, dy, swarm) if x is not None and x.name in systems]
            k = rep % len(order) if order else 0
            for s in order[k:] + order[:k]:
                run_system(s, api, poller, sizes, f"{tag}r{rep}", out, args.timeout, args.profile)
            if dy is not None and not args.skip_node_loss:
                node_loss(dy, api, poller, f"{tag}r{rep}", rep, out)
        if dy is not None:
            print(f"# dockyard RSS after the run: server {dy.rss()[0]:.0f} MiB, agent {dy.rss()[1]:.0f} MiB")
    finally:
        poller.stop()
        raw.close()
        if dy is not None:
            dy.close()
        for c in api.containers(all=True, filters={"label": "bench.raw"}):
            if c["Labels"].get("bench.raw", "").startswith(tag):
                api.remove_container(c["Id"], force=True)
        if swarm_inited:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, timeout=120)

    keys = [f"converge {n}" for n in sizes] + [f"scale {max(sizes)} -> 0", "self-heal (docker kill)",
                                                f"rolling update {ROLL}", "node loss (1 of 3 agents)"]
    print()
    print(table(out, keys, args.repeat))
    print()
    print(pairs(out, sizes))
    print()
    print(cpu_table(out, sizes))
    print(f"\n# load average at the end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
