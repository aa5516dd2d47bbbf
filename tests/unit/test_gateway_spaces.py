"""Namespaces and spaces in the gateway's pure routing core: the spaces map on the wire, the
chain walk, which route a request in a space gets, where the requested space comes from, and
the `dockyard-space` header on the forwarded request. End to end: test_gateway_proxy.py."""
from __future__ import annotations

import json

import httptools
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.gateway import routing as rt
from agent.gateway.__main__ import _load
from agent.gateway.routing import MAX_CHAIN, Table, lookup, requested_space, route_request, space_chain

SPACES = {"default": None, "alice": "default", "bob": "alice", "other": None}


def route(service: str, namespace: str = "default", host: str = "web.localhost", prefix: str = "/") -> dict:
    return {"service": service, "namespace": namespace, "host": host, "path_prefix": prefix,
            "endpoints": [{"instance_id": f"{namespace}-{service}", "address": "127.0.0.1", "port": 1000}]}


def served(t: Table, path: str = "/", space: str | None = None, host: str = "web.localhost") -> tuple[str, str] | None:
    r = lookup(t, host, path, space)
    return None if r is None else (r.namespace, r.service)


# ---- the spaces map on the wire --------------------------------------------------------------

@pytest.mark.parametrize("wire", [None, [], "x", 3, [("a", None)]])
def test_no_map_means_none(wire):
    assert rt.spaces_from_wire(wire) is None


def test_malformed_space_entries_are_dropped_others_kept():
    got = rt.spaces_from_wire({"default": None, "alice": "default", "": None, "bad": 5, "empty": "",
                               "list": ["default"], 7: None, "bob": "alice"})
    assert got == {"default": None, "alice": "default", "bob": "alice"}


def test_without_a_map_every_namespace_with_a_route_is_a_root():
    t = Table.from_wire([route("web"), route("api", "team", host="api.localhost")])
    assert t.spaces == {"default": None, "team": None}
    assert served(t) == ("default", "web")
    assert served(t, host="api.localhost") == ("team", "api")
    assert served(t, space="team", host="api.localhost") == ("team", "api")  # a root is a space of its own
    assert served(t, space="alice") is None


def test_a_garbage_map_is_no_map():
    assert Table.from_wire([route("web", "alice")], spaces="nonsense").spaces == {"alice": None}


def test_dedupe_is_per_namespace_host_and_prefix():
    t = Table.from_wire([route("web"), route("web2"), route("web", "alice"), route("api", "alice", prefix="/api"),
                         route("dup", "alice", prefix="/api/")], SPACES)
    assert [(r.namespace, r.service, r.path_prefix) for r in t.routes] == [
        ("default", "web", "/"), ("alice", "web", "/"), ("alice", "api", "/api")]


def test_round_trip_and_effective_map():
    t = Table.from_wire([route("web"), route("web", "alice"), route("api", "bob", prefix="/api")], SPACES)
    assert t.spaces_to_wire() == SPACES
    json.dumps(t.spaces_to_wire())
    assert Table.from_wire(t.to_wire(), t.spaces_to_wire()) == t
    assert Table.from_wire(t.to_wire()) != t  # the map is part of the table
    assert set(t.chains) == set(SPACES)
    hash(t)  # the map does not make the table unhashable


# ---- the chain -------------------------------------------------------------------------------

@pytest.mark.parametrize("spaces,start,chain", [
    (SPACES, "bob", ("bob", "alice", "default")),
    (SPACES, "default", ("default",)),
    (SPACES, "nobody", ("nobody",)),
    ({"a": "gone"}, "a", ("a", "gone")),          # a parent missing from the map ends the chain, on it
    ({"a": "a"}, "a", ("a",)),                     # a namespace its own parent
    ({"a": "b", "b": "a"}, "a", ("a", "b")),       # a cycle: stops on the repeat
    ({"a": "b", "b": "c", "c": "b"}, "a", ("a", "b", "c")),
])
def test_space_chain(spaces, start, chain):
    assert space_chain(spaces, start) == chain


def test_a_chain_longer_than_the_cap_is_cut():
    line = {f"n{i}": f"n{i + 1}" for i in range(100)} | {"n100": None}
    assert space_chain(line, "n0") == tuple(f"n{i}" for i in range(MAX_CHAIN))
    t = Table.from_wire([route("deep", "n40"), route("near", "n31", host="near.localhost")], line)
    assert served(t, space="n0") is None  # n40 is past the cap
    assert served(t, space="n0", host="near.localhost") == ("n31", "near")  # the 32nd is still walked
    assert served(t, space="n9") == ("n40", "deep")


def test_a_cycle_never_hangs_a_lookup():
    t = Table.from_wire([route("web", "c"), route("x", "a", host="x.localhost")], {"a": "b", "b": "c", "c": "a"})
    assert served(t, space="a") == ("c", "web")
    assert served(t, space="b", host="x.localhost") == ("a", "x")
    assert served(t, space="a", host="nobody.localhost") is None
    assert served(t) is None  # no roots at all


# ---- lookup ----------------------------------------------------------------------------------

T = Table.from_wire([
    route("web"), route("api", prefix="/api"),
    route("web", "alice"),                                     # alice's own web; api falls back to default
    route("api", "bob", prefix="/api"),                        # bob's own api; web falls back to alice
    route("admin", "bob", host="admin.localhost"),             # only in bob
    route("billing", "other", host="billing.localhost"),       # another root
], SPACES)


@pytest.mark.parametrize("space,path,expected", [
    (None, "/", ("default", "web")), (None, "/api/x", ("default", "api")),
    ("default", "/", ("default", "web")), ("default", "/api", ("default", "api")),
    ("alice", "/", ("alice", "web")),
    # alice has a route matching /api/x ("/"): the first namespace with a match wins, even
    # though default has a longer prefix
    ("alice", "/api/x", ("alice", "web")),
    ("bob", "/", ("alice", "web")),                            # one level up
    ("bob", "/api/x", ("bob", "api")),
    ("bob", "/apix", ("alice", "web")),
])
def test_lookup_walks_the_chain(space, path, expected):
    assert served(T, path, space) == expected


def test_two_levels_of_fallback():
    t = Table.from_wire([route("web"), route("api", "alice", prefix="/api")], SPACES)
    assert served(t, "/", "bob") == ("default", "web")
    assert served(t, "/api", "bob") == ("alice", "api")


def test_without_a_space_only_roots_serve():
    assert served(T, host="admin.localhost") is None
    assert served(T, space="bob", host="admin.localhost") == ("bob", "admin")
    assert served(T, space="alice", host="admin.localhost") is None  # a child's route is not an ancestor's
    assert served(T, host="billing.localhost") == ("other", "billing")
    # nothing on the chain: the roots serve it, as without a space (naming a space loses no route)
    assert served(T, space="bob", host="billing.localhost") == ("other", "billing")


def test_unknown_space_matches_nothing():
    assert served(T, space="carol") is None
    assert "carol" not in T.chains


def test_among_roots_the_first_route_for_a_host_and_prefix_wins():
    t = Table.from_wire([route("one", "r1"), route("two", "r2"), route("three", "r2", prefix="/x")],
                        {"r1": None, "r2": None})
    assert served(t) == ("r1", "one")
    assert served(t, "/x") == ("r2", "three")
    assert served(t, space="r2") == ("r2", "two")


def test_namespace_missing_from_a_given_map_is_no_root_and_no_space():
    t = Table.from_wire([route("web"), route("web", "ghost"), route("g", "ghost", host="g.localhost"),
                         route("x", "kid", host="g.localhost")], {"default": None, "kid": "ghost"})
    assert served(t) == ("default", "web")                     # ghost does not compete with default
    assert served(t, host="g.localhost") is None
    assert served(t, space="ghost") is None and "ghost" not in t.chains
    assert served(t, space="kid") == ("ghost", "web")          # but it is on kid's chain
    assert served(t, space="kid", host="g.localhost") == ("kid", "x")


def test_match_takes_a_space_too():
    assert rt.match(T, "Web.Localhost:8000", "/", "bob").namespace == "alice"
    assert rt.match(T, "web.localhost", "/").namespace == "default"


# ---- the requested space ---------------------------------------------------------------------

@pytest.mark.parametrize("host,expected", [
    ("alice.s.web.localhost", ("alice", "web.localhost")),
    ("alice.s.b.s.c", ("alice", "b.s.c")),                     # split at the first .s.
    ("a-1.s.x", ("a-1", "x")),
    ("a.b.s.web.localhost", (None, "a.b.s.web.localhost")),    # `a.b` is no DNS label
    ("-a.s.web", (None, "-a.s.web")), ("a-.s.web", (None, "a-.s.web")), ("a_b.s.web", (None, "a_b.s.web")),
    ("x" * 64 + ".s.web", (None, "x" * 64 + ".s.web")), ("x" * 63 + ".s.web", ("x" * 63, "web")),
    (".s.web", (None, ".s.web")), ("alice.s.", (None, "alice.s.")), ("s.web", (None, "s.web")),
    ("web.localhost", (None, "web.localhost")), ("", (None, "")),
])
def test_split_space_host(host, expected):
    assert rt.split_space_host(host) == expected


@pytest.mark.parametrize("values,expected", [
    ([b"dockyard-space=alice"], "alice"),
    ([b"k=v, dockyard-space = Alice ;prop=1;flag, z=1"], "alice"),
    ([b"dockyard-space=al%69ce"], "alice"),
    ([b"DOCKYARD-SPACE=bob"], "bob"),
    ([b"dockyard-space=, dockyard-space=bob"], "bob"),        # an empty entry is none
    ([b"a=1", b"dockyard-space=bob"], "bob"),                  # several baggage headers
    ([b"dockyard-space=bob", b"dockyard-space=carol"], "bob"),
    ([b"dockyard-spacex=bob"], None), ([b"dockyard-space"], None), ([b""], None), ([b",,;="], None), ([], None),
    ([b"x=dockyard-space=bob"], None),
])
def test_baggage_space(values, expected):
    assert rt.baggage_space(values) == expected


@pytest.mark.parametrize("host,header,baggage,expected", [
    ("web.localhost", None, (), (None, "web.localhost", "")),
    ("Alice.S.Web.Localhost:8000", None, (), ("alice", "web.localhost", "host")),
    ("alice.s.web.localhost", b"bob", [b"dockyard-space=carol"], ("alice", "web.localhost", "host")),
    ("web.localhost", b" Bob ", [b"dockyard-space=carol"], ("bob", "web.localhost", "header")),
    ("web.localhost", b"", [b"dockyard-space=carol"], ("carol", "web.localhost", "baggage")),
    ("web.localhost", b"  ", (), (None, "web.localhost", "")),
    ("web.localhost", None, [b"other=1"], (None, "web.localhost", "")),
    ("web.localhost", b"not a label!", (), ("not a label!", "web.localhost", "header")),  # then: unknown
    ("a.b.s.web.localhost", b"bob", (), ("bob", "a.b.s.web.localhost", "header")),
    # a host that is itself in the table is taken as it is
    ("shop.s.example.com", None, (), (None, "shop.s.example.com", "")),
    ("shop.s.example.com", b"bob", (), ("bob", "shop.s.example.com", "header")),
    (None, b"bob", (), ("bob", "", "header")),
])
def test_requested_space(host, header, baggage, expected):
    t = Table.from_wire([route("shop", host="shop.s.example.com"), route("web")], SPACES)
    assert requested_space(t, host, header, baggage) == expected


def test_route_request():
    r, space, host, source = route_request(T, "web.localhost:8000", "/api/x")
    assert (r.namespace, r.service, space, host, source) == ("default", "api", None, "web.localhost", "")
    r, space, host, source = route_request(T, "bob.s.web.localhost", "/")
    assert (r.namespace, r.service, space, host, source) == ("alice", "web", "bob", "web.localhost", "host")
    r, space, _, source = route_request(T, "web.localhost", "/api", b"bob")
    assert (r.namespace, space, source) == ("bob", "bob", "header")
    r, space, _, source = route_request(T, "web.localhost", "/", None, [b"dockyard-space=alice"])
    assert (r.namespace, space, source) == ("alice", "alice", "baggage")
    assert route_request(T, "web.localhost", "/", b"carol") == (None, "carol", "web.localhost", "header")
    assert route_request(T, "nobody.localhost", "/") == (None, None, "nobody.localhost", "")
    assert route_request(T, "web.localhost", "/", b"") == (T.by_host["web.localhost"][-1], None, "web.localhost", "")


# ---- the forwarded head ----------------------------------------------------------------------

def parse_headers(raw: bytes) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []

    class P:
        def on_header(self, n: bytes, v: bytes) -> None:
            got.append((n.lower(), v))

    httptools.HttpRequestParser(P()).feed_data(raw)
    return got


def test_forwarded_head_carries_the_requested_space_only():
    h = [(b"Host", b"web.localhost"), (b"Dockyard-Space", b"evil"), (b"dockyard-space", b"evil2"),
         (b"Baggage", b"dockyard-space=bob"), (b"Accept", b"*/*")]
    got = parse_headers(rt.upstream_request_head("GET", b"/", h, "1.2.3.4", body="none", space="alice"))
    assert [v for n, v in got if n == b"dockyard-space"] == [b"alice"]
    assert (b"baggage", b"dockyard-space=bob") in got and (b"accept", b"*/*") in got
    got = parse_headers(rt.upstream_request_head("GET", b"/", h[:1], "1.2.3.4", body="none"))
    assert not [n for n, _ in got if n == b"dockyard-space"]


# ---- the routes file of `python -m agent.gateway` --------------------------------------------

def test_routes_file_list_or_object(tmp_path):
    p = tmp_path / "routes.json"
    p.write_text(json.dumps([route("web")]))
    assert _load(str(p)) == ([route("web")], None)
    p.write_text(json.dumps({"routes": [route("web")], "spaces": SPACES}))
    assert _load(str(p)) == ([route("web")], SPACES)


# ---- hypothesis: the chain walk ----------------------------------------------------------------

NAMES = ["default", "a", "b", "c", "d", "e", "f"]
names = st.sampled_from(NAMES)
# any map over a few names: trees, cycles, self-parents, dangling parents, garbage entries
spaces_maps = st.dictionaries(names, st.none() | names | st.sampled_from(["gone", 5, ""]), max_size=len(NAMES))
hosts = st.sampled_from(["web.localhost", "api.localhost"])
prefixes = st.sampled_from(["/", "/api", "/api/v2", "/x"])
paths = st.sampled_from(["/", "/api", "/api/v2/users", "/apix", "/x/y", "/z"])
route_lists = st.lists(st.tuples(names, hosts, prefixes), max_size=16)


def table_of(routes: list[tuple[str, str, str]], spaces: dict) -> Table:
    return Table.from_wire([route(f"{ns}:{h}:{p}", ns, h, p) for ns, h, p in routes], spaces)


def model(t: Table, space: str, host: str, path: str) -> rt.Route | None:
    """The semantics, spelled out slowly: the first namespace on the chain with a matching
    route; the longest matching prefix within it; else what the roots serve without a space."""
    if space not in t.chains:
        return None  # an unknown space
    for ns in space_chain(t.spaces, space):
        candidates = [r for r in t.routes if r.namespace == ns and r.host == host
                      and rt.prefix_matches(r.path_prefix, path)]
        if candidates:
            return max(candidates, key=lambda r: len(r.path_prefix))
    return rt.lookup(t, host, path)


@settings(max_examples=300)
@given(spaces_maps, names)
def test_property_chain_never_loops_and_follows_parents(spaces, start):
    clean = rt.spaces_from_wire(spaces)
    chain = space_chain(clean, start)
    assert chain[0] == start and len(chain) <= MAX_CHAIN and len(set(chain)) == len(chain)
    for child, parent in zip(chain, chain[1:]):
        assert clean[child] == parent
    last = clean.get(chain[-1])  # the walk ended: a root, a missing name, a repeat or the cap
    assert last is None or last in chain or len(chain) == MAX_CHAIN


@settings(max_examples=500)
@given(route_lists, spaces_maps, names, st.none() | names, hosts, paths, st.booleans())
def test_property_lookup_is_the_first_namespace_on_the_chain_with_a_match(routes, spaces, space, parent, host, path,
                                                                          known):
    if known:  # most draws: the space is in the map, with a parent drawn too (so chains are deep)
        spaces = {**spaces, space: parent}
    t = table_of(routes, spaces)
    got = lookup(t, host, path, space)
    if space not in t.chains:
        assert got is None
        return
    assert got == model(t, space, host, path)
    on_chain = [r for r in t.routes if r.namespace in t.chains[space] and r.host == host
                and rt.prefix_matches(r.path_prefix, path)]
    if got is not None and on_chain:
        assert got.namespace in t.chains[space]
        assert got.host == host and rt.prefix_matches(got.path_prefix, path)
        # nobody earlier on the chain had a match, and within its namespace it is the longest
        earlier = t.chains[space][:t.chains[space].index(got.namespace)]
        assert not any(r.namespace in earlier and r.host == host and rt.prefix_matches(r.path_prefix, path)
                       for r in t.routes)
    elif not on_chain:  # nothing up the chain: exactly what a request without a space gets
        assert got == lookup(t, host, path)
    assert route_request(t, host, path, space.encode())[:2] == (got, space)


@settings(max_examples=300)
@given(route_lists, spaces_maps, hosts, paths)
def test_property_without_a_space_only_roots_serve(routes, spaces, host, path):
    t = table_of(routes, spaces)
    got = lookup(t, host, path)
    roots = {ns for ns, p in t.spaces.items() if p is None}
    root_matches = [r for r in t.routes if r.namespace in roots and r.host == host
                    and rt.prefix_matches(r.path_prefix, path)]
    if not root_matches:
        assert got is None
    else:
        assert got is not None and got.namespace in roots
        assert len(got.path_prefix) == max(len(r.path_prefix) for r in root_matches)
    assert route_request(t, host, path)[0] is got


@settings(max_examples=300)
@given(route_lists, spaces_maps, names, st.none() | names, hosts, prefixes, paths)
def test_property_a_childs_own_route_wins(routes, spaces, space, parent, host, prefix, path):
    if not rt.prefix_matches(prefix, path):
        prefix = "/"
    t = table_of([*routes, (space, host, prefix)], {**spaces, space: parent})
    got = lookup(t, host, path, space)
    assert got is not None and got.namespace == space  # whatever longer prefixes ancestors have
    assert len(got.path_prefix) >= len(prefix)


@settings(max_examples=300)
@given(route_lists, spaces_maps, names, st.none() | names, hosts, paths)
def test_property_removing_the_childs_routes_falls_back_to_the_nearest_ancestor(routes, spaces, space, parent,
                                                                                host, path):
    spaces = {**spaces, space: parent}
    t = table_of(routes, spaces)
    without = table_of([r for r in routes if r[0] != space], spaces)
    got = lookup(without, host, path, space)
    ancestors_with_match = [ns for ns in t.chains[space][1:]
                            if any(r.namespace == ns and r.host == host and rt.prefix_matches(r.path_prefix, path)
                                   for r in without.routes)]
    if not ancestors_with_match:
        assert got == lookup(without, host, path)  # the roots', as without a space (often none)
    else:
        assert got is not None and got.namespace == ancestors_with_match[0]
    mine = lookup(t, host, path, space)
    if mine is not None and mine.namespace != space:  # the child had no match: removing it changes nothing
        assert mine == got


@settings(max_examples=200)
@given(st.integers(1, 120), st.integers(0, 119))
def test_property_a_long_line_is_walked_at_most_max_chain_deep(depth, at):
    assume(at < depth)
    line = {f"n{i}": (f"n{i + 1}" if i + 1 < depth else None) for i in range(depth)}
    t = Table.from_wire([route("web", f"n{at}")], line)
    got = lookup(t, "web.localhost", "/", "n0")
    # past the cap the walk stops; the route is still found if its namespace is the root (the
    # roots serve what the chain does not)
    assert (got is not None) == (at < MAX_CHAIN or at == depth - 1)
    assert (lookup(t, "web.localhost", "/") is not None) == (at == depth - 1)


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=3) | st.integers(), c,
                                                                        max_size=5),
                    max_leaves=15), route_lists)
def test_property_garbage_spaces_never_raise(spaces, routes):
    t = table_of(routes, spaces)
    Table.from_wire(t.to_wire(), t.spaces_to_wire())
    for space in [None, *t.chains]:
        lookup(t, "web.localhost", "/", space)
