"""Benchmark `docker run -d` through Dockyard's Docker API against the same command sent to the
local engine directly, in one run, on the same engine and image.

Run: .venv/bin/python bench/docker_run.py            (10 runs each, alternating)
     .venv/bin/python bench/docker_run.py --runs 20

Starts a real server (with --docker-api) and one agent on the local engine. Each run times the
unmodified docker CLI from start to exit (it prints the container id once the container is
running somewhere): `docker run -d --stop-timeout 1 dockyard-test:latest sleep 300`, once with
DOCKER_HOST pointing at Dockyard, once at the local engine; each container is removed after its
run (not timed). Prints the medians and the ratio; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import print_machine  # noqa: E402
from tests.harness import ADMIN, IMAGE, Cluster, free_port  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr}")
    return took, r.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    exe = shutil.which("docker")
    if exe is None:
        raise SystemExit("needs the docker CLI")
    tmp = Path(tempfile.mkdtemp(prefix="dy-bench-docker-run-"))
    port = free_port()
    c = Cluster(tmp, server_args=["--docker-api", f"127.0.0.1:{port}"])
    cfg = tmp / "docker-config"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {ADMIN}"}}))
    via = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{port}"}
    direct = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    times: dict[str, list[float]] = {"dockyard": [], "direct": []}
    try:
        c.start_server()
        c.start_agent("a")
        for i in range(args.runs + 1):  # the first pair warms both paths up and is not counted
            name = f"bench-{c.prefix}-{i}"
            t, _ = timed([exe, "--config", str(cfg), "run", "-d", "--name", name, "--stop-timeout", "1",
                            IMAGE, "sleep", "300"], via)
            if i:
                times["dockyard"].append(t)
            subprocess.run([exe, "--config", str(cfg), "rm", "-f", name], env=via, capture_output=True, timeout=60)
            t, cid = timed([exe, "run", "-d", "--name", name + "-direct", "--stop-timeout", "1", "--label",
                            "dockyard-bench=1", IMAGE, "sleep", "300"], direct)
            if i:
                times["direct"].append(t)
            subprocess.run([exe, "rm", "-f", cid], env=direct, capture_output=True, timeout=60)
    finally:
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print_machine("bench/docker_run.py: docker run -d through Dockyard vs the local engine")
    print(f"docker run -d, median of {args.runs} (min-max):")
    for k in ("direct", "dockyard"):
        v = times[k]
        print(f"  {k:9s} {statistics.median(v) * 1000:7.0f} ms  ({min(v) * 1000:.0f}-{max(v) * 1000:.0f})")
    ratio = statistics.median(times["dockyard"]) / statistics.median(times["direct"])
    print(f"  ratio     {ratio:.2f}x  (target <= 1.5x)")


if __name__ == "__main__":
    main()
