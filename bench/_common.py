"""Shared bits of the benchmarks: the container poller, /proc readers, machine facts, statistics.

Benchmarks print figures and assert nothing: tests assert behaviour, never wall-clock speed.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests.harness` starts real server and agent processes

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- /proc ---------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    """Resident set size of one process in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict[str, str]:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    try:
        engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        engine = "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "memory": f"{mem / 1024:.1f} GiB",
            "docker engine": engine or "?", "python": platform.python_version(), "load average": loadavg()}


def speed_probe() -> float:
    """Milliseconds for a fixed pure-Python loop: shared machines change speed from one hour to
    the next (by 1.7x on ours), so every run prints it next to its figures."""
    t0 = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i
    return (time.perf_counter() - t0) * 1000


def print_machine(title: str) -> None:
    m = machine()
    print(f"# {title}")
    print("# machine: " + ", ".join(f"{k} {v}" for k, v in m.items())
          + f", speed probe {speed_probe():.0f} ms (a 3M-step Python loop; lower is faster)")


# ---- statistics ------------------------------------------------------------------------------

def median(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


# ---- the poller ------------------------------------------------------------------------------

class Poller:
    """Counts running containers matching one label filter every `interval` seconds.

    Every system under test is timed by this same poller, so its cost (one list call to the
    engine per interval) and its resolution apply equally to all of them. A sample is
    stamped with the time its list call returned: a condition seen in it became true at
    that time or earlier, so figures err on the slow side by at most one interval.
    """

    def __init__(self, api, interval: float = 0.05):  # type: ignore[no-untyped-def]
        self.api = api
        self.interval = interval
        self.label: str | None = None
        self._cond = threading.Condition()
        self._samples: list[tuple[int, float, float, frozenset[str]]] = []  # (seq, started, returned, running ids)
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="poller")

    def start(self) -> "Poller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, label: str) -> None:
        """Switch to another label filter (`key=value`); old samples are dropped."""
        with self._cond:
            self.label = label
            self._samples = []

    def _run(self) -> None:
        while not self._stop.is_set():
            label = self.label
            started = time.monotonic()
            if label is not None:
                try:
                    cs = self.api.containers(filters={"label": label, "status": "running"}, quiet=True)
                    ids = frozenset(c["Id"] for c in cs)
                    with self._cond:
                        if self.label == label:
                            self._seq += 1
                            self._samples.append((self._seq, started, time.monotonic(), ids))
                            del self._samples[:-2000]
                            self._cond.notify_all()
                except Exception:  # a slow engine is a data point, not a crash
                    pass
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def running(self) -> frozenset[str]:
        with self._cond:
            return self._samples[-1][3] if self._samples else frozenset()

    def until(self, pred: Callable[[frozenset[str]], bool], since: float, timeout: float) -> float | None:
        """Seconds from `since` (a time.monotonic()) to the first sample, taken entirely after
        `since`, whose running ids satisfy pred; None on timeout."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for seq, started, returned, ids in self._samples:
                    if seq > seen and started >= since and pred(ids):
                        return returned - since
                seen = self._samples[-1][0] if self._samples else seen
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
