"""What the node's containers use and what its gateway served: read cheaply, reduced by pure maths.

Concern: the numbers behind POST /v1/agent/metrics (orchestrator/protocol.py MetricsIn).

- **CPU and memory per container come from the kernel's cgroup files**, not the engine's stats
  call: a file read is a few microseconds, while `GET /containers/{id}/stats` is one HTTP round
  trip per container and, unless told not to, waits a second for a second sample. Layouts
  supported: cgroup v1 with Docker's cgroupfs driver (`<cpuacct>/docker/<id>/cpuacct.usage`,
  `<memory>/docker/<id>/memory.usage_in_bytes`), v1 with the systemd driver
  (`.../system.slice/docker-<id>.scope/...`), and cgroup v2 with either driver (`cpu.stat`
  `usage_usec`, `memory.current`). The mount points come from /proc/self/mounts (`cpu,cpuacct`
  or `cpuacct` alone). A container whose files are in none of these places has cpu and memory
  None (say, a daemon started with `--cgroup-parent`, or an agent inside a container that
  does not see the host's cgroups): the engine's per-container stats call would cost more
  than the whole rest of the agent's pass, so there is no fallback to it.
- **CPU** is cores used, averaged between two samples: delta usage / delta wall time.
- **Memory is the working set**, as `docker stats` shows it: the usage minus the inactive page
  cache (v1 `memory.stat` `total_inactive_file`, v2 `inactive_file`). File pages a container
  read once and the kernel can drop at will would otherwise count as used and never shrink,
  and an autoscaler on memory would scale on the page cache.
- **Gateway traffic** comes from the gateway's own cumulative counters (agent/gateway/metrics.py),
  read from another thread the way its `collect()` does (plain dict reads under the GIL), so the
  request path is untouched; a window's figures are deltas between two reads, and the p95
  latency is interpolated inside the histogram bucket that holds it.

Everything below the readers is pure and tested in tests/unit/test_agent_usage.py.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from agent import wire

log = logging.getLogger("dockyard.agent")

CGROUP_ROOT = "/sys/fs/cgroup"
CPU_MAX = 4096.0  # cores: the protocol's bound (InstanceUsage.cpu)
WINDOW_MAX = 3600.0  # seconds: the protocol's bound (MetricsIn.window)


# --- where a container's cgroup files are (pure) ----------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The cgroup mount points that matter: v1 hierarchies with the cpuacct and memory
    controllers, and the v2 (unified) hierarchy. None: not mounted."""

    cpuacct: str | None
    memory: str | None
    unified: str | None


@dataclass(frozen=True)
class Paths:
    """One container's files: v1 (`cpuacct.usage` in ns) or v2 (`cpu.stat` usage_usec)."""

    version: int
    cpu: str
    memory: str | None  # memory.usage_in_bytes (v1) or memory.current (v2)
    stat: str | None  # memory.stat


def layout_from_mounts(text: str) -> Layout:
    """The cgroup mount points in /proc/self/mounts text; the usual places when it lists none."""
    cpuacct = memory = unified = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        where, fstype, options = parts[1], parts[2], parts[3].split(",")
        if fstype == "cgroup2" and unified is None:
            unified = where
        elif fstype == "cgroup":
            if "cpuacct" in options and cpuacct is None:
                cpuacct = where
            if "memory" in options and memory is None:
                memory = where
    if cpuacct is None and memory is None and unified is None:
        return Layout(f"{CGROUP_ROOT}/cpuacct", f"{CGROUP_ROOT}/memory", CGROUP_ROOT)
    return Layout(cpuacct, memory, unified)


def candidates(layout: Layout, container_id: str) -> list[Paths]:
    """Where `container_id`'s files may be, most likely first: Docker's cgroupfs driver names
    the group docker/<id>, its systemd driver system.slice/docker-<id>.scope."""
    groups = (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope")
    out = []
    if layout.cpuacct is not None:
        for g in groups:
            mem = f"{layout.memory}/{g}" if layout.memory is not None else None
            out.append(Paths(1, f"{layout.cpuacct}/{g}/cpuacct.usage",
                             mem and f"{mem}/memory.usage_in_bytes", mem and f"{mem}/memory.stat"))
    if layout.unified is not None:
        for g in reversed(groups):  # v2 hosts mostly run the systemd driver
            d = f"{layout.unified}/{g}"
            out.append(Paths(2, f"{d}/cpu.stat", f"{d}/memory.current", f"{d}/memory.stat"))
    return out


# --- the files' contents (pure) ----------------------------------------------------------------

def stat_value(text: bytes, key: str) -> int | None:
    """The number after `key` in a flat-keyed cgroup file (memory.stat, cpu.stat)."""
    m = re.search(rb"^" + re.escape(key.encode()) + rb" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def cpu_ns(version: int, text: bytes) -> int | None:
    """CPU time used so far, in ns, from cpuacct.usage (v1, ns) or cpu.stat (v2, usage_usec)."""
    if version == 1:
        try:
            return int(text)
        except ValueError:
            return None
    usec = stat_value(text, "usage_usec")
    return None if usec is None else usec * 1000


def working_set(usage: int, inactive_file: int | None) -> int:
    """Memory in use less the inactive page cache (what `docker stats` shows); the usage
    itself when the cache figure is missing or larger (the files are not read atomically)."""
    if inactive_file is not None and 0 <= inactive_file < usage:
        return usage - inactive_file
    return max(usage, 0)


# --- reading them (the imperative part) --------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """One container at one moment: CPU ns used so far, working-set bytes, monotonic time."""

    cpu_ns: int | None
    memory: int | None
    at: float


def _read(path: str) -> bytes:
    # os.open/os.read: no buffered file object to build for a file of a few bytes
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


class CgroupReader:
    """Reads containers' cgroup files, remembering where each container's are."""

    def __init__(self, layout: Layout | None = None, clock: Any = time.monotonic):
        if layout is None:
            try:
                with open("/proc/self/mounts") as f:
                    layout = layout_from_mounts(f.read())
            except OSError:
                layout = layout_from_mounts("")
        self.layout = layout
        self.clock = clock
        self._paths: dict[str, Paths] = {}
        self._told = False  # a missing cgroup is logged once per process

    def _find(self, container_id: str) -> Paths | None:
        p = self._paths.get(container_id)
        if p is None:
            for c in candidates(self.layout, container_id):
                if os.path.exists(c.cpu):
                    p = self._paths[container_id] = c
                    break
        return p

    def read(self, container_id: str) -> Reading | None:
        """A reading, or None when the container has no cgroup files we know of (gone, or a
        layout this agent does not know)."""
        p = self._find(container_id)
        if p is None:
            self._missing(container_id)
            return None
        try:
            at = self.clock()
            cpu = cpu_ns(p.version, _read(p.cpu))
        except OSError:  # stopped or removed since it was listed: look again next time
            self._paths.pop(container_id, None)
            return None
        memory = None
        if p.memory is not None:
            try:
                usage = int(_read(p.memory))
                inactive = stat_value(_read(p.stat), "total_inactive_file" if p.version == 1 else "inactive_file") \
                    if p.stat else None
                memory = working_set(usage, inactive)
            except (OSError, ValueError):
                memory = None
        return Reading(cpu, memory, at)

    def read_all(self, container_ids: Iterable[str]) -> dict[str, Reading | None]:
        ids = list(container_ids)
        out = {cid: self.read(cid) for cid in ids}
        for gone in self._paths.keys() - set(ids):  # forget containers no longer listed
            del self._paths[gone]
        return out

    def _missing(self, container_id: str) -> None:
        if self._told:
            log.debug("no cgroup files for container %s", container_id[:12])
            return
        self._told = True
        looked = ", ".join(c.cpu for c in candidates(self.layout, container_id)) or "no cgroup mounts"
        log.info("no cgroup files for container %s (looked for %s; it may have just stopped): its cpu and "
                 "memory are reported as unknown, and this is said only once", container_id[:12], looked)


# --- the window's figures (pure) ---------------------------------------------------------------

def cpu_cores(prev: Reading | None, cur: Reading | None) -> float | None:
    """Cores used between two readings; None without two CPU figures, or when the counter went
    back (the container restarted, its cgroup is new): that window is unknown, never negative."""
    if prev is None or cur is None or prev.cpu_ns is None or cur.cpu_ns is None:
        return None
    dt = cur.at - prev.at
    used = cur.cpu_ns - prev.cpu_ns
    if dt <= 0 or used < 0:
        return None
    return min(used / 1e9 / dt, CPU_MAX)


def instance_usage(containers: Iterable[tuple[str, str]], prev: Mapping[str, Reading | None],
                   cur: Mapping[str, Reading | None]) -> list[dict[str, Any]]:
    """InstanceUsage rows for (instance id, container id) pairs, by instance id. Two containers of
    one instance (a replacement starting while the old one drains) add up."""
    rows: dict[str, dict[str, Any]] = {}
    for iid, cid in containers:
        if not iid:
            continue
        now = cur.get(cid)
        cpu = cpu_cores(prev.get(cid), now)
        mem = now.memory if now is not None else None
        row = rows.get(iid)
        if row is None:
            rows[iid] = {"instance_id": iid, "cpu": cpu, "memory": mem}
        else:
            row["cpu"] = _add(row["cpu"], cpu)
            row["memory"] = _add(row["memory"], mem)
    return [rows[k] for k in sorted(rows)]


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


@dataclass(frozen=True)
class Counters:
    """One gateway series' cumulative counters: requests, of which 5xx, and the duration
    histogram (per-bucket counts, not cumulative; the +Inf bucket last)."""

    requests: int
    errors: int
    buckets: tuple[float, ...]


def gateway_counters(metrics: Any) -> dict[tuple[str, str], Counters]:
    """Snapshot of a GatewayMetrics' counters by (service, namespace). Runs off the gateway's
    loop: list(dict.items()) and list(a list) copy in one step under the GIL, as its collect()."""
    totals: dict[tuple[str, str], list[int]] = {}
    for (service, namespace, code), n in list(metrics.requests.items()):
        t = totals.setdefault((service, namespace), [0, 0])
        t[0] += n
        if code == "5xx":
            t[1] += n
    out = {}
    for key, h in list(metrics.durations.items()):
        h = list(h)
        t = totals.get(key, [0, 0])
        out[key] = Counters(t[0], t[1], tuple(h[:-1]))  # the last entry is the sum of seconds
    for key, t in totals.items():
        if key not in out:
            out[key] = Counters(t[0], t[1], ())
    return out


def counters_delta(prev: Counters | None, cur: Counters) -> Counters:
    """What a series counted since `prev`. A counter that went back means the gateway's counters
    started again (a new gateway): everything since counts, as Prometheus' rate() reads it."""
    if prev is None:
        return cur
    if (cur.requests < prev.requests or cur.errors < prev.errors or len(cur.buckets) != len(prev.buckets)
            or any(c < p for c, p in zip(cur.buckets, prev.buckets))):
        return cur
    return Counters(cur.requests - prev.requests, cur.errors - prev.errors,
                    tuple(c - p for c, p in zip(cur.buckets, prev.buckets)))


def quantile(q: float, counts: Sequence[float], bounds: Sequence[float]) -> float | None:
    """The q-quantile of a histogram (per-bucket counts, +Inf last; bucket i holds values
    <= bounds[i]): linear interpolation inside the bucket holding rank q * total, as Prometheus'
    histogram_quantile; the largest finite bound when that is the +Inf bucket. None when empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, n in enumerate(counts):
        if n > 0 and seen + n >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lo = bounds[i - 1] if i > 0 else 0.0
            return lo + (bounds[i] - lo) * max(rank - seen, 0.0) / n
        seen += n
    return float(bounds[-1])  # rounding left the rank past the last count


def service_key(service: str, namespace: str) -> str:
    """The service key the server knows: `name` in the default namespace, else `namespace/name`."""
    return service if namespace in ("default", "") else f"{namespace}/{service}"


def traffic_rows(prev: Mapping[tuple[str, str], Counters], cur: Mapping[tuple[str, str], Counters],
                 bounds: Sequence[float]) -> list[dict[str, Any]]:
    """ServiceTraffic rows for every service this gateway has served (0 requests when idle in
    the window: the server then knows the rate is zero, not unknown); unrouted requests skipped.
    `bounds`: the histogram's bucket bounds (agent/gateway/metrics.py BUCKETS)."""
    rows = []
    for (service, namespace), c in cur.items():
        if not service:
            continue
        d = counters_delta(prev.get((service, namespace)), c)
        p95 = quantile(0.95, d.buckets, bounds) if d.buckets else None
        rows.append({"service": service_key(service, namespace), "requests": int(d.requests),
                     "errors": int(d.errors), "latency_p95_ms": None if p95 is None else p95 * 1000.0})
    return sorted(rows, key=lambda r: r["service"])


def metrics_body(window: float, instances: list[dict[str, Any]], traffic: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The body of POST /v1/agent/metrics (agent/wire.py); None for a window the
    protocol cannot carry (none, or over an hour: the agent was stopped or suspended)."""
    if not 0 < window <= WINDOW_MAX:
        return None
    return wire.metrics_body(window, instances, traffic)
