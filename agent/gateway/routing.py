"""The gateway's routing decisions, pure: which route a request belongs to, which endpoint of
it gets the request, and how request and response heads are rewritten on the way through.

No I/O and no clock here: `proxy.py` is the shell that feeds these functions what it reads
from sockets. Header lists are `[(name, value), ...]` of bytes as the parser hands them over
(names in their original case); comparisons are case-insensitive.

Spaces: routes live in namespaces, and a namespace may have a parent (then it is a *space*).
A request without a space is served by root namespaces only; a request in a space (Host
`<space>.s.<host>`, or a `dockyard-space` header, or a `dockyard-space` baggage entry) by the
first namespace of the chain space -> parent -> ... -> root that has a matching route.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import unquote

Headers = list[tuple[bytes, bytes]]
Spaces = Mapping[str, "str | None"]  # namespace -> its parent namespace (None: a root)

MAX_CHAIN = 32  # a space's chain (itself, its parent, ..., its root) is never walked further
SPACE_HEADER = b"dockyard-space"
SPACE_HOST_SEP = ".s."  # `<space>.s.<host>` addresses <host> in <space>
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True, slots=True)
class Endpoint:
    instance_id: str
    node: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    namespace: str
    host: str  # normalized: lower case, no port, no trailing dot
    path_prefix: str  # "/" or "/seg[/seg...]" without a trailing slash
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class Table:
    """The routes, the spaces map and the indexes `lookup` reads.

    `spaces` is the effective map: namespace -> parent (None: a root). Built without a map,
    every namespace that has a route is a root (the table before spaces existed). A namespace
    missing from a given map is no root and no space: its routes are served only to a space
    whose chain names it."""
    routes: tuple[Route, ...] = ()
    spaces: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    # host -> the routes of ROOT namespaces on it, longest prefix first: a request without a
    # space is one dict hit plus a short scan
    by_host: Mapping[str, tuple[Route, ...]] = field(default_factory=dict, compare=False, repr=False)
    # host -> namespace -> its routes on that host, longest prefix first (requests in a space)
    by_host_ns: Mapping[str, Mapping[str, tuple[Route, ...]]] = field(default_factory=dict, compare=False,
                                                                      repr=False)
    # every namespace of `spaces` -> its chain: itself, its parent, ..., its root
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_routes(cls, routes: Iterable[Route], spaces: Spaces | None = None) -> "Table":
        seen: set[tuple[str, str, str]] = set()
        kept: list[Route] = []
        for r in routes:
            k = (r.namespace, r.host, r.path_prefix)
            if k in seen:  # the first entry for a (namespace, host, prefix) wins
                continue
            seen.add(k)
            kept.append(r)
        eff: dict[str, str | None] = dict.fromkeys((r.namespace for r in kept), None) if spaces is None \
            else dict(spaces)
        by_ns: dict[str, dict[str, list[Route]]] = {}
        roots: dict[str, list[Route]] = {}
        root_seen: set[tuple[str, str]] = set()
        for r in kept:
            by_ns.setdefault(r.host, {}).setdefault(r.namespace, []).append(r)
            # among roots a (host, prefix) belongs to one service; should two claim it, the first wins
            if r.namespace in eff and eff[r.namespace] is None and (r.host, r.path_prefix) not in root_seen:
                root_seen.add((r.host, r.path_prefix))
                roots.setdefault(r.host, []).append(r)
        return cls(tuple(kept), eff,
                   {h: _longest_first(rs) for h, rs in roots.items()},
                   {h: {ns: _longest_first(rs) for ns, rs in d.items()} for h, d in by_ns.items()},
                   {ns: space_chain(eff, ns) for ns in eff})

    @classmethod
    def from_wire(cls, wire: Any, spaces: Any = None) -> "Table":
        """Build a table from the server's wire data; malformed entries are skipped, never
        raised on: one bad route (or space) must not take the others down with it.
        `spaces`: `{namespace: parent or None}`; None (or not a mapping): every namespace is
        a root."""
        routes = (r for r in map(_route_from_wire, wire) if r is not None) \
            if isinstance(wire, (list, tuple)) else ()
        return cls.from_routes(routes, spaces_from_wire(spaces))

    def to_wire(self) -> list[dict[str, Any]]:
        return [{"service": r.service, "namespace": r.namespace, "host": r.host,
                 "path_prefix": r.path_prefix,
                 "endpoints": [{"instance_id": e.instance_id, "node": e.node,
                                "address": e.address, "port": e.port} for e in r.endpoints]}
                for r in self.routes]

    def spaces_to_wire(self) -> dict[str, str | None]:
        return dict(self.spaces)

    def endpoint_keys(self) -> set[tuple[str, int]]:
        return {(e.address, e.port) for r in self.routes for e in r.endpoints}


def _longest_first(routes: list[Route]) -> tuple[Route, ...]:
    return tuple(sorted(routes, key=lambda r: -len(r.path_prefix)))


def spaces_from_wire(spaces: Any) -> dict[str, str | None] | None:
    """`{namespace: parent or None}` from the wire; an entry whose name is not a non-empty
    string or whose parent is neither None nor one is dropped. None (and anything that is not
    a mapping) gives None: no map, every namespace a root."""
    if not isinstance(spaces, Mapping):
        return None
    return {ns: p for ns, p in spaces.items()
            if isinstance(ns, str) and ns and (p is None or isinstance(p, str) and p)}


def space_chain(spaces: Spaces, space: str) -> tuple[str, ...]:
    """`space`, its parent, ..., its root. Stops on a repeat, at a parent missing from the
    map (which is still on the chain: it may have routes) and after MAX_CHAIN names, so a
    corrupt map cannot loop. Same walk as the server's (orchestrator/namespaces.py)."""
    out: list[str] = []
    ns: str | None = space
    while ns is not None and ns not in out and len(out) < MAX_CHAIN:
        out.append(ns)
        ns = spaces.get(ns)
    return tuple(out)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _port(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 65536:
        return None
    return v


def _endpoint_from_wire(e: Any) -> Endpoint | None:
    if not isinstance(e, Mapping):
        return None
    iid, addr, port = _str(e.get("instance_id")), _str(e.get("address")), _port(e.get("port"))
    node = e.get("node", "")
    if not iid or not addr or port is None or not isinstance(node, str):
        return None
    return Endpoint(iid, node, addr, port)


def _route_from_wire(r: Any) -> Route | None:
    if not isinstance(r, Mapping):
        return None
    service, host = _str(r.get("service")), _str(r.get("host"))
    namespace = r.get("namespace", "default")
    prefix = normalize_prefix(r.get("path_prefix", "/"))
    eps = r.get("endpoints", [])
    if not service or not host or not isinstance(namespace, str) or prefix is None \
            or not isinstance(eps, (list, tuple)):
        return None
    host = normalize_host(host)
    if not host:
        return None
    endpoints: list[Endpoint] = []
    ids: set[str] = set()
    for e in map(_endpoint_from_wire, eps):
        if e is not None and e.instance_id not in ids:
            ids.add(e.instance_id)
            endpoints.append(e)
    return Route(service, namespace, host, prefix, tuple(endpoints))


# ---- matching --------------------------------------------------------------------------------

def normalize_prefix(prefix: Any) -> str | None:
    if not isinstance(prefix, str) or not prefix.startswith("/") or "?" in prefix or "#" in prefix:
        return None
    stripped = prefix.rstrip("/")
    return stripped or "/"


def normalize_host(host: str | None) -> str:
    """`Web.Localhost:8000` -> `web.localhost`; `[::1]:8000` -> `::1`; `example.com.` -> `example.com`."""
    if not host:
        return ""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else ""
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".") if h != "." else ""


def prefix_matches(prefix: str, path: str) -> bool:
    """Segment-boundary match: `/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`."""
    if prefix == "/":
        return True
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or path[len(prefix)] in "/?"


def match(table: Table, host_header: str | None, path: str, space: str | None = None) -> Route | None:
    return lookup(table, normalize_host(host_header), path, space)


def lookup(table: Table, host: str, path: str, space: str | None = None) -> Route | None:
    """The route for a normalized host and a path. Without a space: the routes of root
    namespaces only. In a space: the first namespace of its chain that has a route matching
    (host, path), longest prefix within that namespace, else the roots' route as without a
    space; an unknown space matches nothing."""
    if space is None:
        routes = table.by_host.get(host)
        if routes:
            for r in routes:
                if prefix_matches(r.path_prefix, path):
                    return r
        return None
    chain = table.chains.get(space)
    if chain is None:
        return None
    by_ns = table.by_host_ns.get(host) or {}
    for ns in chain:
        routes = by_ns.get(ns)
        if routes:
            for r in routes:
                if prefix_matches(r.path_prefix, path):
                    return r
    # nothing up the chain: what a request without a space would get (a service of another
    # tree, e.g. a shared database's admin), so naming a space never loses a route
    return lookup(table, host, path)


# ---- the requested space ---------------------------------------------------------------------

def split_space_host(host: str) -> tuple[str | None, str]:
    """A normalized host `alice.s.web.localhost` -> ("alice", "web.localhost"), split at the
    first `.s.`; the space must be a DNS label and the host non-empty, else (None, host)."""
    i = host.find(SPACE_HOST_SEP)
    if i <= 0:
        return None, host
    space, rest = host[:i], host[i + len(SPACE_HOST_SEP):]
    if not rest or not _LABEL.match(space):
        return None, host
    return space, rest


def baggage_space(values: Iterable[bytes]) -> str | None:
    """The `dockyard-space` entry of W3C baggage headers (`k=v;prop, k2=v2`, values
    percent-encoded), lower-cased; the first non-empty one wins."""
    for v in values:
        for member in v.split(b","):
            k, eq, val = member.split(b";", 1)[0].partition(b"=")
            if eq and k.strip().lower() == SPACE_HEADER:
                got = unquote(val.strip().decode("latin-1")).strip().lower()
                if got:
                    return got
    return None


def route_request(table: Table, host_header: str | None, path: str, space_header: bytes | None = None,
                  baggage: Sequence[bytes] | None = None) -> tuple[Route | None, str | None, str, str]:
    """The whole routing decision for one request: (route or None, requested space or None,
    normalized host routed on, where the space came from: see `requested_space`).

    A miss with a space that is not in `table.chains` is an unknown space. A request without
    a space header, baggage or `.s.` in its host costs what `match` costs: one dict hit."""
    host = normalize_host(host_header)
    if space_header is None and baggage is None and SPACE_HOST_SEP not in host:
        routes = table.by_host.get(host)
        if routes:
            for r in routes:
                if prefix_matches(r.path_prefix, path):
                    return r, None, host, ""
        return None, None, host, ""
    space, host, source = requested_space(table, host, space_header, baggage or ())
    return lookup(table, host, path, space), space, host, source


def requested_space(table: Table, host_header: str | None, space_header: bytes | None = None,
                    baggage: Sequence[bytes] = ()) -> tuple[str | None, str, str]:
    """(requested space or None, normalized host to route on, where the space came from:
    "host", "header", "baggage" or "").

    In order: a Host of the form `<space>.s.<host>` (unless that whole host is itself a host
    in the table), the `dockyard-space` header, a `dockyard-space` baggage entry. Header
    values are lower-cased and not checked further: a name that is no namespace is an
    unknown space."""
    host = normalize_host(host_header)
    if SPACE_HOST_SEP in host and host not in table.by_host_ns:
        space, bare = split_space_host(host)
        if space is not None:
            return space, bare, "host"
    if space_header is not None:
        space = space_header.decode("latin-1").strip().lower()
        if space:
            return space, host, "header"
    if baggage:
        space = baggage_space(baggage)
        if space is not None:
            return space, host, "baggage"
    return None, host, ""


def split_target(target: str) -> tuple[str | None, str]:
    """Request target -> (host from an absolute-form target or None, origin-form path)."""
    if target.startswith("/") or target == "*":
        return None, target
    low = target[:8].lower()
    for scheme in ("http://", "https://"):
        if low.startswith(scheme):
            rest = target[len(scheme):]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
            path = rest[cut:] or "/"
            return rest[:cut].rsplit("@", 1)[-1], path if path.startswith("/") else "/" + path
    return None, target


# ---- backend choice --------------------------------------------------------------------------

def choose(endpoints: Sequence[Endpoint], outstanding: Mapping[str, int], exclude: set[str] | frozenset[str],
           turn: int) -> Endpoint | None:
    """Least outstanding requests; among the least loaded, round robin by `turn`."""
    best: list[Endpoint] = []
    low = -1
    for e in endpoints:
        if e.instance_id in exclude:
            continue
        n = outstanding.get(e.instance_id, 0)
        if low < 0 or n < low:
            low, best = n, [e]
        elif n == low:
            best.append(e)
    return best[turn % len(best)] if best else None


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def retryable(method: str, body_sent: bool) -> bool:
    """A request may go to another endpoint only if the first could not have acted on it."""
    return method in IDEMPOTENT and not body_sent


# ---- heads -----------------------------------------------------------------------------------

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
                        b"trailer", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
_REQUEST_DROPPED = HOP_BY_HOP | {b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-for", b"expect"}
_REQUEST_DROPPED_SPACE = _REQUEST_DROPPED | {SPACE_HEADER}


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    toks: set[bytes] = set()
    for n, v in headers:
        if n.lower() == b"connection":
            toks.update(t.strip().lower() for t in v.split(b","))
    toks.discard(b"")
    return frozenset(toks)


def strip_hop_by_hop(headers: Headers, also: frozenset[bytes] = HOP_BY_HOP) -> Headers:
    """Drop hop-by-hop headers, including any the Connection header names."""
    named = connection_tokens(headers)
    return [(n, v) for n, v in headers if (ln := n.lower()) not in also and ln not in named]


def header(headers: Headers, name: bytes) -> bytes | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def forwarded_for(headers: Headers, client_ip: str) -> bytes:
    prior = [v.strip() for n, v in headers if n.lower() == b"x-forwarded-for" and v.strip()]
    return b", ".join([*prior, client_ip.encode()])


def upstream_request_head(method: str, target: bytes, headers: Headers, client_ip: str, *,
                          body: str, upgrade: bytes | None = None, proto: bytes = b"http",
                          space: str | None = None) -> bytes:
    """The request head sent to a backend: always HTTP/1.1 keep-alive, the client's headers
    minus hop-by-hop ones, plus X-Forwarded-*. `body` is "none", "length" (the client's
    Content-Length goes through as is) or "chunked" (the proxy re-chunks). With a `space`,
    `dockyard-space: <space>` replaces any the client sent, so a backend that passes the
    header on gets its own outbound calls routed in the same space."""
    out = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    host = b""
    for n, v in strip_hop_by_hop(headers, _REQUEST_DROPPED if space is None else _REQUEST_DROPPED_SPACE):
        ln = n.lower()
        if ln == b"host":
            host = v
        elif ln == b"content-length" and body != "length":
            continue
        out += (n, b": ", v, b"\r\n")
    out += (b"X-Forwarded-For: ", forwarded_for(headers, client_ip), b"\r\n",
            b"X-Forwarded-Proto: ", proto, b"\r\n")
    if host:
        out += (b"X-Forwarded-Host: ", host, b"\r\n")
    if body == "chunked":
        out.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    if space is not None:
        out += (b"dockyard-space: ", space.encode("latin-1", "replace"), b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def response_has_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)


def response_framing(method: str, status: int, content_length: bool, client_http11: bool,
                     client_keep_alive: bool) -> tuple[str, bool]:
    """(how the body goes to the client, whether the client connection stays open).

    "none": no body; "length": the backend's Content-Length goes through; "chunked": the proxy
    chunks (the backend chunked, or ends its body by closing); "close": an HTTP/1.0 client
    reads until the proxy closes."""
    if not response_has_body(method, status):
        return "none", client_keep_alive
    if content_length:
        return "length", client_keep_alive
    if client_http11:
        return "chunked", client_keep_alive
    return "close", False


def response_head(status: int, reason: bytes, headers: Headers, framing: str, keep_alive: bool,
                  client_http11: bool) -> bytes:
    out = [b"HTTP/1.1 %d " % status, reason or b"-", b"\r\n"]
    for n, v in strip_hop_by_hop(headers):
        if framing in ("chunked", "close") and n.lower() == b"content-length":
            continue
        out += (n, b": ", v, b"\r\n")
    if framing == "chunked":
        out.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    elif not client_http11:
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def upgrade_response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    """101 Switching Protocols goes through with its Upgrade and Connection headers."""
    out = [b"HTTP/1.1 %d " % status, reason or b"-", b"\r\n"]
    for n, v in headers:
        ln = n.lower()
        if ln not in HOP_BY_HOP or ln in (b"connection", b"upgrade"):
            out += (n, b": ", v, b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def interim_head(status: int, reason: bytes, headers: Headers) -> bytes:
    out = [b"HTTP/1.1 %d " % status, reason or b"-", b"\r\n"]
    for n, v in strip_hop_by_hop(headers):
        out += (n, b": ", v, b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

_REASONS = {400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}


def error_response(status: int, code: str, message: str, *, keep_alive: bool = True, head: bool = False) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return b"".join([
        b"HTTP/1.1 %d %b\r\n" % (status, _REASONS.get(status, b"Error")),
        b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
        b"" if keep_alive else b"Connection: close\r\n",
        b"\r\n", b"" if head else body])


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"
