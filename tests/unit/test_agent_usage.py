"""The agent's metrics maths and cgroup reading (agent/usage.py).

The reader runs here against cgroup trees built in a temporary directory (v1 and v2 layouts);
tests/integration/test_agent_metrics.py reads the real ones of real containers."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from prometheus_client.registry import CollectorRegistry

from agent import usage as u
from agent.gateway.metrics import BUCKETS, GatewayMetrics
from orchestrator import protocol

HYBRID_V1 = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
CID = "ab" * 32


# --- layouts -----------------------------------------------------------------------------------

def test_layout_of_this_kind_of_host_and_of_the_common_others():
    assert u.layout_from_mounts(HYBRID_V1) == u.Layout("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory",
                                                       "/sys/fs/cgroup/unified")
    joint = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n" \
            "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
    assert u.layout_from_mounts(joint) == u.Layout("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", None)
    assert u.layout_from_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n") == \
        u.Layout(None, None, "/sys/fs/cgroup")
    assert u.layout_from_mounts("") == u.Layout("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup")


def test_candidates_cover_both_drivers_on_both_versions_v1_first():
    got = [(p.version, p.cpu) for p in u.candidates(u.layout_from_mounts(HYBRID_V1), CID)]
    assert got == [(1, f"/sys/fs/cgroup/cpuacct/docker/{CID}/cpuacct.usage"),
                   (1, f"/sys/fs/cgroup/cpuacct/system.slice/docker-{CID}.scope/cpuacct.usage"),
                   (2, f"/sys/fs/cgroup/unified/system.slice/docker-{CID}.scope/cpu.stat"),
                   (2, f"/sys/fs/cgroup/unified/docker/{CID}/cpu.stat")]
    v1 = u.candidates(u.layout_from_mounts(HYBRID_V1), CID)[0]
    assert v1.memory == f"/sys/fs/cgroup/memory/docker/{CID}/memory.usage_in_bytes"
    assert v1.stat == f"/sys/fs/cgroup/memory/docker/{CID}/memory.stat"


# --- file contents -----------------------------------------------------------------------------

V1_STAT = b"cache 4096\nrss 57344\ninactive_file 111\ntotal_cache 4096\ntotal_inactive_file 8192\ntotal_active_file 0\n"
V2_STAT = b"anon 1000\nfile 9000\ninactive_anon 0\nactive_anon 1000\ninactive_file 6000\nactive_file 3000\n"


def test_stat_values_and_cpu_counters():
    assert u.stat_value(V1_STAT, "total_inactive_file") == 8192
    assert u.stat_value(V1_STAT, "inactive_file") == 111  # whole keys only, not a suffix of another
    assert u.stat_value(V2_STAT, "inactive_file") == 6000
    assert u.stat_value(V2_STAT, "missing") is None
    assert u.cpu_ns(1, b"19134149\n") == 19134149
    assert u.cpu_ns(1, b"") is None
    assert u.cpu_ns(2, b"usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n") == 1_500_000


def test_working_set_is_usage_less_inactive_cache_never_negative():
    assert u.working_set(100_000, 30_000) == 70_000
    assert u.working_set(100_000, None) == 100_000
    assert u.working_set(100_000, 200_000) == 100_000  # files not read at one instant: keep the usage


def _v1_tree(root: Path, cid: str, cpu: int, usage: int, stat: bytes = V1_STAT, group: str | None = None) -> u.Layout:
    group = group or f"docker/{cid}"
    (root / "cpuacct" / group).mkdir(parents=True, exist_ok=True)
    (root / "memory" / group).mkdir(parents=True, exist_ok=True)
    (root / "cpuacct" / group / "cpuacct.usage").write_text(f"{cpu}\n")
    (root / "memory" / group / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (root / "memory" / group / "memory.stat").write_bytes(stat)
    return u.Layout(str(root / "cpuacct"), str(root / "memory"), str(root / "unified"))


def test_reader_v1_cgroupfs_and_systemd_driver(tmp_path):
    clock = iter([10.0, 12.0, 13.0]).__next__
    layout = _v1_tree(tmp_path, CID, 5_000_000_000, 1_000_000)
    other = "cd" * 32
    _v1_tree(tmp_path, other, 7, 50_000, group=f"system.slice/docker-{other}.scope")
    r = u.CgroupReader(layout, clock=clock)
    got = r.read_all([CID, other, "ef" * 32])
    assert got[CID] == u.Reading(5_000_000_000, 1_000_000 - 8192, 10.0)
    assert got[other] == u.Reading(7, 50_000 - 8192, 12.0)
    assert got["ef" * 32] is None  # no files: unknown, not an error
    (tmp_path / "cpuacct" / "docker" / CID / "cpuacct.usage").write_text("8000000000\n")
    later = r.read(CID)
    assert u.cpu_cores(got[CID], later) == pytest.approx(1.0)  # 3 s of CPU in 3 s


def test_reader_v2(tmp_path):
    d = tmp_path / "system.slice" / f"docker-{CID}.scope"
    d.mkdir(parents=True)
    (d / "cpu.stat").write_bytes(b"usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (d / "memory.current").write_text("20000\n")
    (d / "memory.stat").write_bytes(V2_STAT)
    r = u.CgroupReader(u.Layout(None, None, str(tmp_path)), clock=lambda: 1.0)
    assert r.read(CID) == u.Reading(2_500_000_000, 14_000, 1.0)


def test_reader_forgets_a_container_whose_files_went_away(tmp_path):
    layout = _v1_tree(tmp_path, CID, 1, 10)
    r = u.CgroupReader(layout, clock=lambda: 1.0)
    assert r.read(CID) is not None
    for f in (tmp_path / "cpuacct" / "docker" / CID).iterdir():
        f.unlink()
    assert r.read(CID) is None and CID not in r._paths


def test_a_missing_cgroup_is_logged_once(tmp_path, caplog):
    r = u.CgroupReader(u.Layout(str(tmp_path), str(tmp_path), None), clock=lambda: 1.0)
    with caplog.at_level("DEBUG", logger="dockyard.agent"):
        r.read_all(["aa" * 32, "bb" * 32])
        r.read_all(["aa" * 32])
    infos = [rec for rec in caplog.records if rec.levelname == "INFO"]
    assert len(infos) == 1 and "aaaaaaaaaaaa" in infos[0].getMessage()


# --- CPU rate ----------------------------------------------------------------------------------

def test_cpu_cores():
    assert u.cpu_cores(u.Reading(0, None, 0.0), u.Reading(2_000_000_000, None, 4.0)) == pytest.approx(0.5)
    assert u.cpu_cores(None, u.Reading(1, None, 1.0)) is None
    assert u.cpu_cores(u.Reading(None, 5, 0.0), u.Reading(1, 5, 1.0)) is None
    assert u.cpu_cores(u.Reading(10, None, 1.0), u.Reading(20, None, 1.0)) is None  # no time passed


@given(st.integers(0, 10**15), st.integers(0, 10**15), st.floats(0, 1e6), st.floats(0, 1e6))
def test_cpu_cores_never_negative_a_reset_gives_none(u0, u1, t0, t1):
    got = u.cpu_cores(u.Reading(u0, None, t0), u.Reading(u1, None, t1))
    if u1 < u0 or t1 <= t0:
        assert got is None  # the counter went back (container restarted): unknown, not negative
    else:
        assert got is not None and 0 <= got <= u.CPU_MAX


def test_instance_usage_by_instance_summing_two_containers_of_one():
    prev = {"c1": u.Reading(0, 100, 0.0), "c2": u.Reading(0, 10, 0.0), "c3": u.Reading(0, 1, 0.0)}
    cur = {"c1": u.Reading(1_000_000_000, 200, 2.0), "c2": u.Reading(3_000_000_000, 20, 2.0),
           "c3": u.Reading(500_000_000, 30, 2.0), "c4": None}
    rows = u.instance_usage([("i1", "c1"), ("i2", "c2"), ("i2", "c3"), ("i3", "c4"), ("", "c5")], prev, cur)
    assert rows == [{"instance_id": "i1", "cpu": 0.5, "memory": 200},
                    {"instance_id": "i2", "cpu": 1.75, "memory": 50},
                    {"instance_id": "i3", "cpu": None, "memory": None}]


# --- gateway traffic ---------------------------------------------------------------------------

def _buckets(counts: dict[int, int]) -> tuple[float, ...]:
    return tuple(float(counts.get(i, 0)) for i in range(len(BUCKETS) + 1))


def test_quantile_interpolates_inside_its_bucket():
    # 100 requests: 90 under 10 ms, 10 in (10 ms, 25 ms]: rank 95 is half-way through the second bucket
    counts = _buckets({3: 90, 4: 10})
    assert u.quantile(0.95, counts, BUCKETS) == pytest.approx(0.0175)
    assert u.quantile(0.95, _buckets({}), BUCKETS) is None
    assert u.quantile(0.95, _buckets({len(BUCKETS): 3}), BUCKETS) == BUCKETS[-1]  # +Inf: the largest bound
    assert u.quantile(0.95, _buckets({0: 1}), BUCKETS) == pytest.approx(0.00095)


@given(st.lists(st.integers(0, 10**6), min_size=len(BUCKETS) + 1, max_size=len(BUCKETS) + 1),
       st.floats(0.01, 0.99))
def test_quantile_falls_in_the_bucket_holding_its_rank(counts, q):
    got = u.quantile(q, counts, BUCKETS)
    total = sum(counts)
    if total == 0:
        assert got is None
        return
    rank, seen, i = q * total, 0, 0
    while seen + counts[i] < rank:  # the first bucket whose cumulative count reaches the rank
        seen += counts[i]
        i += 1
    lo = BUCKETS[i - 1] if i > 0 else 0.0
    hi = BUCKETS[i] if i < len(BUCKETS) else BUCKETS[-1]
    assert got is not None and 0 <= got
    assert lo - 1e-12 <= got <= hi + 1e-12


counters = st.builds(lambda r, e, b: u.Counters(r, min(e, r), tuple(float(x) for x in b)),
                     st.integers(0, 10**9), st.integers(0, 10**9),
                     st.lists(st.integers(0, 10**9), min_size=len(BUCKETS) + 1, max_size=len(BUCKETS) + 1))


@given(counters, counters)
def test_deltas_are_never_negative_a_restarted_gateway_counts_from_zero(prev, cur):
    d = u.counters_delta(prev, cur)
    assert d.requests >= 0 and d.errors >= 0 and all(b >= 0 for b in d.buckets)
    went_back = cur.requests < prev.requests or any(c < p for c, p in zip(cur.buckets, prev.buckets))
    if went_back:
        assert d == cur  # a reset: everything since it happened is in the window
    elif cur.errors >= prev.errors:
        assert d.requests == cur.requests - prev.requests


def test_service_keys():
    assert u.service_key("web", "default") == "web"
    assert u.service_key("web", "alice") == "alice/web"


def test_traffic_rows_from_a_real_gateway_metrics_object():
    gm = GatewayMetrics(CollectorRegistry())
    for _ in range(18):
        gm.done("web", "default", 200, 0.003)
    gm.done("web", "default", 502, 0.2)
    gm.done("web", "default", 503, 0.2)
    gm.done("api", "alice", 200, 0.04)
    gm.done("", "", 404, 0.0)  # unrouted: not a service
    first = u.gateway_counters(gm)
    assert first[("web", "default")].requests == 20 and first[("web", "default")].errors == 2
    rows = u.traffic_rows({}, first, BUCKETS)
    assert [r["service"] for r in rows] == ["alice/api", "web"]
    web = rows[1]
    assert web["requests"] == 20 and web["errors"] == 2
    assert 100 < web["latency_p95_ms"] <= 250  # 19th of 20 is in the (100 ms, 250 ms] bucket
    for _ in range(5):
        gm.done("web", "default", 200, 0.001)
    rows = u.traffic_rows(first, u.gateway_counters(gm), BUCKETS)
    assert rows == [{"service": "alice/api", "requests": 0, "errors": 0, "latency_p95_ms": None},
                    {"service": "web", "requests": 5, "errors": 0, "latency_p95_ms": pytest.approx(0.95)}]


def test_metrics_body_is_what_the_server_validates():
    body = u.metrics_body(5.02, [{"instance_id": "i1", "cpu": 0.5, "memory": 123}],
                          [{"service": "alice/web", "requests": 3, "errors": 0, "latency_p95_ms": 1.5}])
    assert protocol.MetricsIn.model_validate(body).model_dump() == body
    assert body["window"] == 5.02 and body["instances"][0]["cpu"] == 0.5
    assert u.metrics_body(0.0, [], []) is None
    assert u.metrics_body(7200.0, [], []) is None
