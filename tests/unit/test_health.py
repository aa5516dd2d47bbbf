"""The agent's health checks: the pure state machine, the probes against local sockets,
and the prober shell with an injected clock."""
from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.diff import RestartInfo, diff, report_state
from agent.health import (
    HEALTHY,
    STARTING,
    UNHEALTHY,
    Check,
    HealthState,
    Prober,
    describe,
    due,
    observe,
    probe_http,
    probe_tcp,
)
from agent.types import Assignment, Observed

HTTP = Check(type="http", port=8080, path="/", interval=2.0, timeout=1.0, retries=3, start_period=0.0)


def run(check: Check, results: list[bool], start: float = 0.0) -> list[str]:
    """Feed probe results at each due time; the statuses after each one."""
    s = HealthState(started_at=start)
    out = []
    for ok in results:
        s = observe(check, s, ok, due(check, s), "ok" if ok else "refused")
        out.append(s.status)
    return out


def test_from_spec_only_for_http_and_tcp():
    assert Check.from_spec(None) is None
    assert Check.from_spec({"type": "exec", "command": ["true"]}) is None  # Docker runs exec checks
    c = Check.from_spec({"type": "http", "port": 80, "path": "/h", "expected_status": 204, "interval": 0.5,
                         "timeout": 0.2, "retries": 2, "start_period": 3})
    assert c == Check("http", 80, "/h", 204, 0.5, 0.2, 2, 3.0)
    assert Check.from_spec({"type": "tcp", "port": 5432}).type == "tcp"


def test_first_probe_one_interval_after_start_then_every_interval():
    s = HealthState(started_at=100.0)
    assert due(HTTP, s) == 102.0
    s = observe(HTTP, s, True, 102.3)
    assert due(HTTP, s) == 104.3


def test_starting_until_the_first_success_then_healthy():
    assert run(HTTP, [False, True]) == [STARTING, HEALTHY]


def test_unhealthy_after_retries_consecutive_failures():
    assert run(HTTP, [True, False, False, False]) == [HEALTHY, HEALTHY, HEALTHY, UNHEALTHY]
    assert run(HTTP, [False, False, False]) == [STARTING, STARTING, UNHEALTHY]


def test_a_success_resets_the_failure_count_and_recovers():
    assert run(HTTP, [True, False, False, True, False, False, False, True]) == [
        HEALTHY, HEALTHY, HEALTHY, HEALTHY, HEALTHY, HEALTHY, UNHEALTHY, HEALTHY]


def test_failures_in_the_start_period_do_not_count():
    c = Check(type="tcp", port=1, interval=1.0, retries=1, start_period=5.0)
    # probes at 1, 2, 3, 4 fail inside the start period; the one at 5 counts
    assert run(c, [False] * 4) == [STARTING] * 4
    assert run(c, [False] * 5)[-1] == UNHEALTHY


def test_a_success_ends_the_start_period_early():
    c = Check(type="tcp", port=1, interval=1.0, retries=1, start_period=60.0)
    assert run(c, [False, True, False]) == [STARTING, HEALTHY, UNHEALTHY]


@settings(max_examples=300)
@given(results=st.lists(st.booleans(), max_size=40), retries=st.integers(1, 5),
       start_period=st.sampled_from([0.0, 3.0, 10.0]))
def test_state_machine_properties(results, retries, start_period):  # type: ignore[no-untyped-def]
    c = Check(type="http", port=80, interval=1.0, retries=retries, start_period=start_period)
    s = HealthState(started_at=0.0)
    for n, ok in enumerate(results):
        prev = s
        s = observe(c, s, ok, due(c, s))
        assert s.last_probe_at == n + 1
        if ok:
            assert s.status == HEALTHY and s.failures == 0
        elif s.status == UNHEALTHY:
            assert s.failures >= retries  # only ever after `retries` counted failures
        # healthy never falls back to starting, and a single failure never flips healthy
        assert not (prev.status == HEALTHY and s.status == STARTING)
        if prev.status == HEALTHY and not ok and retries > 1 and prev.failures == 0:
            assert s.status == HEALTHY
    # without any success, nothing is ever healthy
    if not any(results):
        assert s.status in (STARTING, UNHEALTHY)


def test_describe_says_what_failed():
    s = observe(HTTP, HealthState(0.0, failures=2, succeeded=True), False, 10, "status 404, expected 200")
    assert describe(HTTP, s) == "http health check GET :8080/ failed 3 time(s): status 404, expected 200"


# -- probes against real local sockets -----------------------------------------------------

@pytest.fixture
def web():  # type: ignore[no-untyped-def]
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # type: ignore[no-untyped-def]
            self.send_response(200 if self.path == "/ok" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):  # type: ignore[no-untyped-def]
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_probe(web):  # type: ignore[no-untyped-def]
    assert probe_http("127.0.0.1", web, "/ok", 200, 1.0) == (True, "status 200")
    assert probe_http("127.0.0.1", web, "/nope", 200, 1.0) == (False, "status 404, expected 200")
    assert probe_http("127.0.0.1", web, "/nope", 404, 1.0)[0]
    ok, why = probe_http("127.0.0.1", _closed_port(), "/", 200, 1.0)
    assert not ok and "refused" in why.lower()


def test_tcp_probe(web):  # type: ignore[no-untyped-def]
    assert probe_tcp("127.0.0.1", web, 1.0)[0]
    assert not probe_tcp("127.0.0.1", _closed_port(), 1.0)[0]


def test_prober_tracks_probes_and_reports_changes(web):  # type: ignore[no-untyped-def]
    changes = []
    p = Prober(lambda cid, port: ("127.0.0.1", web), lambda: changes.append(1))
    p.TICK = 0.01
    fast = dict(interval=0.05, timeout=1.0, retries=2)
    p.sync({"good": Check("http", 80, "/ok", **fast), "bad": Check("http", 80, "/nope", **fast)})
    assert p.status("good") == (STARTING, "")
    stop = threading.Event()
    threading.Thread(target=p.run, args=(stop,), daemon=True).start()
    try:
        deadline = time.time() + 5
        while time.time() < deadline and (p.status("good")[0] != HEALTHY or p.status("bad")[0] != UNHEALTHY):
            time.sleep(0.02)
        assert p.status("good") == (HEALTHY, "")
        status, why = p.status("bad")
        assert status == UNHEALTHY and "status 404" in why
        assert changes  # someone was told
        p.reset("bad")
        assert p.status("bad") == (STARTING, "")
        p.sync({"good": Check("http", 80, "/ok", **fast)})
        assert p.status("bad") is None
    finally:
        stop.set()


def test_prime_probes_adopted_containers_at_once(web):  # type: ignore[no-untyped-def]
    p = Prober(lambda cid, port: ("127.0.0.1", web), lambda: None)
    p.sync({"adopted": Check("http", 80, "/ok", interval=60.0)})
    p.prime(["adopted", "unknown"])  # no waiting for the 60s interval, no run loop needed
    assert p.status("adopted") == (HEALTHY, "")
    p.prime(["adopted"])  # already probed: nothing to do


def test_prober_without_an_address_fails_the_probe():
    p = Prober(lambda cid, port: None, lambda: None)
    c = Check("tcp", 80, interval=0.01, retries=1)
    p.sync({"x": c})
    p.tracked["x"].in_flight = True
    p._probe("x", 0)
    assert p.status("x") == (UNHEALTHY, "tcp health check tcp :80 failed 1 time(s): container has no address to probe")


# -- what the agent does with the result ---------------------------------------------------

def _a(policy: str = "always") -> Assignment:
    return Assignment("i1", "web", 1, 1, {"restart": {"policy": policy}, "stop_timeout": 1,
                                          "health": {"type": "http", "port": 80}})


def _o(health: str | None) -> Observed:
    return Observed("i1", "web", 1, 1, "c1", "running", health=health)


def test_unhealthy_container_is_recycled_per_restart_policy():
    assert diff([_a()], [_o("unhealthy")], {}, now=0).recycle == [(_a(), "c1")]
    assert diff([_a("on-failure")], [_o("unhealthy")], {}, now=0).recycle
    out = diff([_a("never")], [_o("unhealthy")], {}, now=0)
    assert not out.recycle and not out.restart
    assert not diff([_a()], [_o("healthy")], {}, now=0).recycle
    assert not diff([_a()], [_o("starting")], {}, now=0).recycle


def test_unhealthy_recycles_back_off_like_crashes():
    info = RestartInfo(count=2, consecutive=2, last_at=10.0)
    out = diff([_a()], [_o("unhealthy")], {"i1": info}, now=10.2)
    assert not out.recycle and out.wake_at == pytest.approx(11.0)
    assert diff([_a()], [_o("unhealthy")], {"i1": info}, now=11.0).recycle


def test_reported_state_follows_health():
    assert report_state(_o("starting"), "always") == ("starting", None)  # not ready yet
    assert report_state(_o("healthy"), "always") == ("running", True)
    assert report_state(_o("unhealthy"), "never") == ("running", False)
