"""The gateway's pure routing core: wire parsing, host/path matching, backend choice, head rewriting."""
from __future__ import annotations

import json
from collections import Counter

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.gateway import routing as rt
from agent.gateway.routing import Endpoint, Route, Table, choose, match


def ep(iid: str, port: int = 1000) -> dict:
    return {"instance_id": iid, "node": "n1", "address": "127.0.0.1", "port": port}


def route(service: str = "web", host: str = "web.localhost", prefix: str = "/", eps: list | None = None, **extra) -> dict:
    return {"service": service, "namespace": "default", "host": host, "path_prefix": prefix, "port": 8080,
            "endpoints": [ep("a", 1001)] if eps is None else eps, **extra}


# ---- wire ------------------------------------------------------------------------------------

def test_from_wire_builds_frozen_routes_and_endpoints():
    t = Table.from_wire([route(eps=[ep("a", 1001), ep("b", 1002)])])
    assert t.routes == (Route("web", "default", "web.localhost", "/",
                              (Endpoint("a", "n1", "127.0.0.1", 1001), Endpoint("b", "n1", "127.0.0.1", 1002))),)
    with pytest.raises(AttributeError):
        t.routes[0].service = "x"  # type: ignore[misc]


def test_unknown_extra_keys_are_ignored():
    t = Table.from_wire([route(eps=[{**ep("a"), "weight": 3, "zone": "z"}], tls=True, future={"x": 1})])
    assert len(t.routes) == 1 and t.routes[0].endpoints[0].instance_id == "a"


@pytest.mark.parametrize("bad", [
    None, 3, "routes", {"service": "web"}, [None], [1], ["x"],
])
def test_garbage_wire_gives_an_empty_table(bad):
    assert Table.from_wire(bad).routes == ()


@pytest.mark.parametrize("broken", [
    {"host": "web.localhost"},                                  # no service
    {"service": "", "host": "web.localhost"},                   # empty service
    {"service": "web"},                                         # no host
    {"service": "web", "host": ""},
    {"service": "web", "host": 5},
    {"service": "web", "host": "h", "path_prefix": "api"},      # prefix without a slash
    {"service": "web", "host": "h", "path_prefix": 7},
    {"service": "web", "host": "h", "path_prefix": "/a?b"},
    {"service": "web", "host": "h", "endpoints": "a"},
    {"service": "web", "host": "h", "namespace": 3},
    {"service": 3, "host": "h"},
])
def test_malformed_route_is_skipped_others_kept(broken):
    t = Table.from_wire([broken, route()])
    assert [r.service for r in t.routes] == ["web"]


@pytest.mark.parametrize("bad_ep", [
    {"instance_id": "x", "address": "127.0.0.1"},                 # no port
    {"instance_id": "x", "address": "127.0.0.1", "port": "80"},
    {"instance_id": "x", "address": "127.0.0.1", "port": 0},
    {"instance_id": "x", "address": "127.0.0.1", "port": 70000},
    {"instance_id": "x", "address": "127.0.0.1", "port": True},
    {"instance_id": "", "address": "127.0.0.1", "port": 80},
    {"address": "127.0.0.1", "port": 80},
    {"instance_id": "x", "address": "", "port": 80},
    {"instance_id": "x", "address": "127.0.0.1", "port": 80, "node": 5},
    "x", None,
])
def test_malformed_endpoint_is_skipped(bad_ep):
    t = Table.from_wire([route(eps=[bad_ep, ep("ok", 81)])])
    assert [e.instance_id for e in t.routes[0].endpoints] == ["ok"]


def test_missing_endpoints_means_no_ready_instance_and_defaults_apply():
    t = Table.from_wire([{"service": "web", "host": "Web.Localhost."}])
    r = t.routes[0]
    assert (r.namespace, r.host, r.path_prefix, r.endpoints) == ("default", "web.localhost", "/", ())


def test_duplicate_instance_ids_and_duplicate_routes_keep_the_first():
    t = Table.from_wire([route(eps=[ep("a", 1), ep("a", 2)]), route(service="other")])
    assert [r.service for r in t.routes] == ["web"]
    assert [e.port for e in t.routes[0].endpoints] == [1]


def test_to_wire_round_trips():
    wire = [route(prefix="/api", eps=[ep("a", 1), ep("b", 2)]), route(service="s2", host="x.localhost", eps=[])]
    t = Table.from_wire(wire)
    assert Table.from_wire(t.to_wire()) == t
    json.dumps(t.to_wire())
    assert t.endpoint_keys() == {("127.0.0.1", 1), ("127.0.0.1", 2)}


def test_prefix_trailing_slash_is_normalized():
    t = Table.from_wire([route(prefix="/api/")])
    assert t.routes[0].path_prefix == "/api"
    assert rt.normalize_prefix("///") == "/"


# ---- matching --------------------------------------------------------------------------------

@pytest.mark.parametrize("header,expected", [
    ("web.localhost", "web.localhost"), ("WEB.LocalHost", "web.localhost"), ("web.localhost:8000", "web.localhost"),
    ("web.localhost.", "web.localhost"), ("web.localhost.:80", "web.localhost"), ("[::1]:8000", "::1"),
    ("[::1]", "::1"), ("::1", "::1"), ("  web.localhost ", "web.localhost"), (None, ""), ("", ""), ("[", ""),
])
def test_normalize_host(header, expected):
    assert rt.normalize_host(header) == expected


def test_match_host_case_port_and_trailing_dot():
    t = Table.from_wire([route()])
    for h in ("web.localhost", "WEB.localhost:8000", "web.localhost.", "Web.Localhost.:1"):
        r = match(t, h, "/")
        assert r is not None and r.service == "web"
    assert match(t, "other.localhost", "/") is None
    assert match(t, None, "/") is None
    assert match(t, "web.localhost.evil", "/") is None


def test_match_ipv6_host():
    t = Table.from_wire([route(host="[::1]")])
    assert match(t, "[::1]:8000", "/x").service == "web"


@pytest.mark.parametrize("path,ok", [
    ("/api", True), ("/api/", True), ("/api/x/y", True), ("/api?q=1", True),
    ("/apix", False), ("/ap", False), ("/", False), ("/API", False), ("/x/api", False),
])
def test_prefix_segment_boundaries(path, ok):
    assert rt.prefix_matches("/api", path) is ok


def test_longest_prefix_wins_and_root_catches_the_rest():
    t = Table.from_wire([route(service="root", prefix="/"), route(service="api", prefix="/api"),
                         route(service="v2", prefix="/api/v2"), route(service="other", host="o.localhost", prefix="/api/v2/x")])
    assert match(t, "web.localhost", "/api/v2/users").service == "v2"
    assert match(t, "web.localhost", "/api/v2").service == "v2"
    assert match(t, "web.localhost", "/api/v22").service == "api"
    assert match(t, "web.localhost", "/api/v1").service == "api"
    assert match(t, "web.localhost", "/apiv2").service == "root"
    assert match(t, "web.localhost", "/").service == "root"
    assert match(t, "web.localhost", "/api/v2/x").service == "v2"  # the other host's route is not ours


def test_no_root_route_means_no_match_outside_prefixes():
    t = Table.from_wire([route(prefix="/api")])
    assert match(t, "web.localhost", "/") is None
    assert match(t, "web.localhost", "/api/x").service == "web"


@pytest.mark.parametrize("target,expected", [
    ("/a?b", (None, "/a?b")), ("*", (None, "*")), ("http://Web.localhost:8000/x?y", ("Web.localhost:8000", "/x?y")),
    ("http://web.localhost", ("web.localhost", "/")), ("http://web.localhost?q", ("web.localhost", "/?q")),
    ("HTTPS://u:p@h/x", ("h", "/x")), ("weird", (None, "weird")),
])
def test_split_target(target, expected):
    assert rt.split_target(target) == expected


# ---- choice ----------------------------------------------------------------------------------

E = tuple(Endpoint(i, "n", "127.0.0.1", 1000 + k) for k, i in enumerate("abc"))


def test_choose_least_outstanding():
    assert choose(E, {"a": 2, "b": 0, "c": 1}, set(), 0).instance_id == "b"
    assert choose(E, {"a": 2, "b": 3, "c": 1}, set(), 7).instance_id == "c"


def test_choose_round_robin_among_ties():
    picks = [choose(E, {}, set(), turn).instance_id for turn in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]
    picks = [choose(E, {"a": 1}, set(), turn).instance_id for turn in range(4)]
    assert picks == ["b", "c", "b", "c"]


def test_choose_respects_exclusions_and_gives_none_when_all_tried():
    assert choose(E, {"a": 0, "b": 5, "c": 9}, {"a"}, 0).instance_id == "b"
    assert choose(E, {}, {"a", "b", "c"}, 0) is None
    assert choose((), {}, set(), 0) is None


@given(st.lists(st.integers(0, 5), min_size=1, max_size=6), st.integers(0, 1000), st.data())
def test_choose_property_minimal_and_never_excluded(loads, turn, data):
    eps = tuple(Endpoint(f"i{k}", "n", "h", 1000 + k) for k in range(len(loads)))
    outstanding = {e.instance_id: n for e, n in zip(eps, loads)}
    exclude = set(data.draw(st.lists(st.sampled_from([e.instance_id for e in eps]), unique=True)))
    got = choose(eps, outstanding, exclude, turn)
    allowed = [e for e in eps if e.instance_id not in exclude]
    if not allowed:
        assert got is None
    else:
        assert got in allowed
        assert outstanding[got.instance_id] == min(outstanding[e.instance_id] for e in allowed)


@given(st.integers(1, 6), st.integers(0, 50))
def test_choose_property_round_robin_is_fair(n, start):
    eps = tuple(Endpoint(f"i{k}", "n", "h", 1000 + k) for k in range(n))
    counts = Counter(choose(eps, {}, set(), t).instance_id for t in range(start, start + 3 * n))
    assert set(counts.values()) == {3}


# ---- hypothesis: matching properties ----------------------------------------------------------

segment = st.text(alphabet="abcxyz09-", min_size=1, max_size=4)
prefixes = st.lists(segment, min_size=0, max_size=3).map(lambda s: "/" + "/".join(s))


@given(st.lists(prefixes, min_size=1, max_size=5, unique=True), st.lists(segment, max_size=4),
       st.sampled_from(["", "?q=1", "/"]))
def test_match_property_longest_matching_prefix(prefs, segs, suffix):
    t = Table.from_wire([route(service=f"s{k}", prefix=p) for k, p in enumerate(prefs)])
    path = "/" + "/".join(segs) + suffix
    got = match(t, "web.localhost", path)
    candidates = [r for r in t.routes if rt.prefix_matches(r.path_prefix, path)]
    if not candidates:
        assert got is None
    else:
        assert got is not None and len(got.path_prefix) == max(len(r.path_prefix) for r in candidates)
        # and the match is on a segment boundary
        rest = path[len(got.path_prefix):]
        assert got.path_prefix == "/" or rest == "" or rest[0] in "/?"


@given(st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z0-9-]{1,8}){0,3}", fullmatch=True),
       st.sampled_from(["", ":80", ":8000", "."]), st.booleans())
def test_match_property_host_variants(host, tail, upper):
    t = Table.from_wire([route(host=host)])
    h = host.upper() if upper else host
    assert match(t, h + tail, "/anything").service == "web"


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(
                        st.sampled_from(["service", "host", "path_prefix", "endpoints", "namespace",
                                         "instance_id", "address", "port", "node", "x"]), c, max_size=6),
                    max_leaves=20))
def test_from_wire_never_raises(wire):
    t = Table.from_wire(wire)
    Table.from_wire(t.to_wire())
    match(t, "web.localhost", "/")


# ---- heads -----------------------------------------------------------------------------------

def test_retryable_methods():
    for m in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"):
        assert rt.retryable(m, False) and not rt.retryable(m, True)
    for m in ("POST", "PATCH", "CONNECT"):
        assert not rt.retryable(m, False)


def test_strip_hop_by_hop_including_connection_named_headers():
    h = [(b"Host", b"a"), (b"Connection", b"keep-alive, X-Secret"), (b"Keep-Alive", b"timeout=5"),
         (b"X-Secret", b"1"), (b"Transfer-Encoding", b"chunked"), (b"TE", b"trailers"), (b"Upgrade", b"h2c"),
         (b"Proxy-Authorization", b"x"), (b"Accept", b"*/*"), (b"Trailer", b"x")]
    assert rt.strip_hop_by_hop(h) == [(b"Host", b"a"), (b"Accept", b"*/*")]


def parse_request(raw: bytes) -> tuple[str, bytes, dict[bytes, list[bytes]]]:
    got: dict[bytes, list[bytes]] = {}
    url: list[bytes] = []

    class P:
        def on_url(self, u):
            url.append(u)

        def on_header(self, n, v):
            got.setdefault(n.lower(), []).append(v)

    p = httptools.HttpRequestParser(P())
    p.feed_data(raw)
    return p.get_method().decode(), b"".join(url), got


def test_upstream_request_head_forwarded_headers():
    h = [(b"Host", b"web.localhost:8000"), (b"X-Forwarded-For", b"10.0.0.1"), (b"X-Forwarded-Proto", b"https"),
         (b"X-Forwarded-Host", b"spoof"), (b"Connection", b"close"), (b"Content-Length", b"3"), (b"Accept", b"a")]
    head = rt.upstream_request_head("POST", b"/x?y", h, "127.0.0.2", body="length")
    assert head.startswith(b"POST /x?y HTTP/1.1\r\n") and head.endswith(b"\r\n\r\n")
    method, url, got = parse_request(head + b"abc")
    assert (method, url) == ("POST", b"/x?y")
    assert got[b"host"] == [b"web.localhost:8000"]
    assert got[b"x-forwarded-for"] == [b"10.0.0.1, 127.0.0.2"]
    assert got[b"x-forwarded-proto"] == [b"http"]
    assert got[b"x-forwarded-host"] == [b"web.localhost:8000"]
    assert got[b"content-length"] == [b"3"]
    assert b"connection" not in got and got[b"accept"] == [b"a"]


def test_upstream_request_head_chunked_and_upgrade():
    h = [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked"), (b"Expect", b"100-continue")]
    _, _, got = parse_request(rt.upstream_request_head("PUT", b"/", h, "1.2.3.4", body="chunked") + b"0\r\n\r\n")
    assert got[b"transfer-encoding"] == [b"chunked"] and b"expect" not in got and got[b"x-forwarded-for"] == [b"1.2.3.4"]
    h = [(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k")]
    raw = rt.upstream_request_head("GET", b"/ws", h, "1.2.3.4", body="none", upgrade=b"websocket")
    assert b"Connection: Upgrade\r\n" in raw and b"Upgrade: websocket\r\n" in raw and b"Sec-WebSocket-Key: k" in raw
    assert raw.count(b"Upgrade: ") == 1


def test_forwarded_for_merges_multiple_headers():
    assert rt.forwarded_for([(b"x-forwarded-for", b"1.1.1.1"), (b"X-Forwarded-For", b" 2.2.2.2 ")], "3.3.3.3") \
        == b"1.1.1.1, 2.2.2.2, 3.3.3.3"
    assert rt.forwarded_for([], "::1") == b"::1"


@pytest.mark.parametrize("method,status,has_len,http11,ka,expected", [
    ("GET", 200, True, True, True, ("length", True)),
    ("GET", 200, False, True, True, ("chunked", True)),
    ("GET", 200, False, False, True, ("close", False)),
    ("GET", 200, True, False, False, ("length", False)),
    ("HEAD", 200, True, True, True, ("none", True)),
    ("HEAD", 200, False, False, True, ("none", True)),
    ("GET", 204, False, True, True, ("none", True)),
    ("GET", 304, True, True, False, ("none", False)),
    ("GET", 100, False, True, True, ("none", True)),
])
def test_response_framing(method, status, has_len, http11, ka, expected):
    assert rt.response_framing(method, status, has_len, http11, ka) == expected


def test_response_head():
    h = [(b"Content-Length", b"5"), (b"Connection", b"keep-alive"), (b"Transfer-Encoding", b"chunked"), (b"X-A", b"1")]
    assert rt.response_head(200, b"OK", h, "length", True, True) == \
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n"
    assert rt.response_head(200, b"OK", h, "chunked", True, True) == \
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert rt.response_head(200, b"", h, "close", False, False) == \
        b"HTTP/1.1 200 -\r\nX-A: 1\r\nConnection: close\r\n\r\n"
    assert rt.response_head(200, b"OK", [], "length", True, False) == b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"


def test_upgrade_response_head_keeps_upgrade_headers():
    h = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Accept", b"x"), (b"Keep-Alive", b"1")]
    assert rt.upgrade_response_head(101, b"Switching Protocols", h) == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n")


def test_chunk_framing():
    assert rt.chunk(b"hello") == b"5\r\nhello\r\n"
    assert rt.chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


@pytest.mark.parametrize("status,code", [(404, "no_route"), (503, "no_ready_instance"), (502, "bad_gateway"),
                                         (504, "gateway_timeout"), (400, "bad_request")])
def test_error_response_is_json(status, code):
    raw = rt.error_response(status, code, "msg 'x'", keep_alive=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert b"Content-Length: %d" % len(body) in head
    assert json.loads(body) == {"error": {"code": code, "message": "msg 'x'"}}
    head_only = rt.error_response(status, code, "m", head=True)
    assert head_only.endswith(b"\r\n\r\n") and b"Connection" not in head_only


@pytest.mark.parametrize("status,cls", [(101, "1xx"), (200, "2xx"), (204, "2xx"), (302, "3xx"), (404, "4xx"),
                                        (599, "5xx"), (999, "5xx"), (0, "5xx")])
def test_status_class(status, cls):
    assert rt.status_class(status) == cls
