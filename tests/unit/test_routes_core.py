"""The routing table's pure core: routes from specs, conflicts, ready endpoints, digests."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core import routes as core

WEB = {"expose": [{"port": 8080}]}


def inst(iid: str, service: str = "web", node: str | None = "n1", desired: str = "running", state: str = "running",
         healthy: bool | None = None, ports: tuple = ((8080, 32000),)) -> core.Endpointable:
    return core.Endpointable(iid, service, node, desired, state, healthy, ports)


def test_keys_default_the_host_to_service_dot_localhost():
    assert core.keys("web", WEB) == [("web.localhost", "/", 8080)]
    assert core.keys("web", {"expose": [{"port": 1, "host": "a.example", "path_prefix": "/api"}]}) == [("a.example", "/api", 1)]
    assert core.keys("web", {}) == []


def test_conflict_names_the_other_service():
    others = {"shop": {"expose": [{"port": 1, "host": "web.localhost"}]}, "web": WEB}
    assert "'shop'" in core.conflict("web", WEB, others)
    assert core.conflict("web", {"expose": [{"port": 1, "path_prefix": "/x"}]}, others) is None
    assert core.conflict("web", {}, others) is None
    assert core.conflict("web", WEB, {"web": WEB}) is None  # itself


def test_only_ready_instances_on_ready_nodes_are_endpoints():
    instances = [inst("a"), inst("b", state="starting"), inst("c", healthy=False), inst("d", desired="stopped"),
                 inst("e", node="n2"), inst("f", ports=()), inst("g", node=None), inst("h", healthy=True),
                 inst("i", service="other")]
    nodes = {"n1": ("10.0.0.1", "ready"), "n2": ("10.0.0.2", "down")}
    table = core.table({"web": WEB}, instances, nodes)
    assert table == [{"service": "web", "namespace": "default", "host": "web.localhost", "path_prefix": "/",
                      "port": 8080, "endpoints": [
                          {"instance_id": "a", "node": "n1", "address": "10.0.0.1", "port": 32000},
                          {"instance_id": "h", "node": "n1", "address": "10.0.0.1", "port": 32000}]}]
    assert core.endpoints_of(table, "web")[0]["container_port"] == 8080


def test_a_node_without_address_is_loopback_and_host_network_uses_the_container_port():
    table = core.table({"web": {**WEB, "network_mode": "host"}}, [inst("a", ports=())], {"n1": ("", "ready")})
    assert table[0]["endpoints"] == [{"instance_id": "a", "node": "n1", "address": "127.0.0.1", "port": 8080}]


def test_host_ports_keep_tcp_only():
    assert core.host_ports([{"container_port": 80, "host_port": 3, "protocol": "tcp"},
                            {"container_port": 53, "host_port": 4, "protocol": "udp"},
                            {"container_port": 81, "host_port": None}]) == ((80, 3),)


names = st.text("abc", min_size=1, max_size=3)
instances = st.lists(st.builds(inst, names, st.sampled_from(["web", "api"]), st.sampled_from(["n1", "n2", None]),
                               st.sampled_from(["running", "stopped"]), st.sampled_from(["running", "starting", "exited"]),
                               st.sampled_from([None, True, False])), max_size=12, unique_by=lambda i: i.id)


@given(instances, st.sampled_from(["ready", "down"]))
def test_table_is_order_independent_and_lists_only_endpoints(items, n2):
    specs = {"web": WEB, "api": {"expose": [{"port": 8080, "host": "api.example"}]}}
    nodes = {"n1": ("a", "ready"), "n2": ("b", n2)}
    t1, t2 = core.table(specs, items, nodes), core.table(specs, list(reversed(items)), nodes)
    assert t1 == t2 and core.digest(t1) == core.digest(t2)
    listed = {e["instance_id"] for r in t1 for e in r["endpoints"]}
    assert listed == {i.id for i in items if core.is_endpoint(i, nodes.get(i.node or "", ("", "down"))[1] == "ready")}


@given(instances)
def test_a_different_table_has_a_different_digest(items):
    nodes = {"n1": ("a", "ready"), "n2": ("b", "ready")}
    t = core.table({"web": WEB}, items, nodes)
    if t[0]["endpoints"]:
        fewer = [{**t[0], "endpoints": t[0]["endpoints"][1:]}]
        assert core.digest(fewer) != core.digest(t)
