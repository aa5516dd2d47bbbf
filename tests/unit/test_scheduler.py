"""Unit tests for the pure placement scheduler (orchestrator.core.scheduler)."""
from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.constraints import parse_constraint
from orchestrator.core.scheduler import (
    FILTERS,
    SCORERS,
    Decision,
    NodeInfo,
    NodeState,
    Request,
    place,
    unschedulable_reason,
)

GiB = 1024**3


def node(name, labels=None, cpus=4.0, memory=8 * GiB, **kw):
    return NodeInfo(name=name, labels=labels or {}, cpus=cpus, memory=memory, **kw)


def reqs(service, n, start=0, **kw):
    return [Request(key=f"{service}-{i}", service=service, **kw) for i in range(start, start + n)]


def placed_counts(decisions):
    return Counter(d.node for d in decisions if d.node is not None)


def cons(*texts):
    return tuple(parse_constraint(t) for t in texts)


# ---- examples ----------------------------------------------------------------------------

def test_spread_balances_replicas_over_equal_nodes():
    nodes = [node("a"), node("b"), node("c")]
    decisions = place(reqs("web", 6, cpus=0.5, memory=GiB), nodes)
    assert [d.key for d in decisions] == [f"web-{i}" for i in range(6)]
    assert placed_counts(decisions) == {"a": 2, "b": 2, "c": 2}
    # Deterministic: name breaks the tie, round-robin order.
    assert [d.node for d in decisions] == ["a", "b", "c", "a", "b", "c"]


def test_spread_without_resources_still_balances():
    decisions = place(reqs("web", 7), [node("a"), node("b"), node("c")])
    assert placed_counts(decisions) == {"a": 3, "b": 2, "c": 2}


def test_spread_prefers_less_loaded_node_when_service_counts_tie():
    nodes = [node("a", used_memory=6 * GiB), node("b", used_memory=GiB), node("c", used_memory=3 * GiB)]
    decisions = place(reqs("web", 1, memory=GiB), nodes)
    assert decisions[0].node == "b"


def test_binpack_fills_one_node_until_memory_is_full():
    nodes = [node("a", memory=4 * GiB), node("b", memory=4 * GiB), node("c", memory=4 * GiB)]
    decisions = place(reqs("db", 6, memory=GiB, strategy="binpack"), nodes)
    assert [d.node for d in decisions] == ["a", "a", "a", "a", "b", "b"]


def test_binpack_prefers_the_fullest_node_that_fits():
    nodes = [node("a", memory=4 * GiB, used_memory=GiB),
             node("b", memory=4 * GiB, used_memory=3 * GiB),
             node("c", memory=4 * GiB, used_memory=2 * GiB)]
    decisions = place(reqs("db", 4, memory=GiB, strategy="binpack"), nodes)
    # b has 1 GiB left, then c fills up (2 left), then a.
    assert [d.node for d in decisions] == ["b", "c", "c", "a"]


@pytest.mark.parametrize(
    "constraint, allowed",
    [
        ("zone==b", {"b1", "b2"}),
        ("zone!=b", {"a1", "c1", "x1"}),
        ("zone in (a, c)", {"a1", "c1"}),
        ("disk exists", {"a1", "b2"}),
        ("node.name==c1", {"c1"}),
        ("node.name!=a1", {"b1", "b2", "c1", "x1"}),
    ],
)
def test_constraints_restrict_placement(constraint, allowed):
    nodes = [
        node("a1", {"zone": "a", "disk": "ssd"}),
        node("b1", {"zone": "b"}),
        node("b2", {"zone": "b", "disk": "hdd"}),
        node("c1", {"zone": "c"}),
        node("x1", {}),
    ]
    decisions = place(reqs("web", 10, constraints=cons(constraint)), nodes)
    assert all(d.node in allowed for d in decisions)
    assert set(placed_counts(decisions)) == allowed


def test_several_constraints_all_apply():
    nodes = [node("a", {"zone": "a", "disk": "ssd"}), node("b", {"zone": "a"}), node("c", {"zone": "b", "disk": "ssd"})]
    decisions = place(reqs("web", 3, constraints=cons("zone==a", "disk exists")), nodes)
    assert {d.node for d in decisions} == {"a"}


def test_unsatisfiable_memory_reports_reasons_per_filter():
    nodes = [node("a", {"zone": "b"}, memory=GiB),
             node("b", {"zone": "b"}, memory=GiB),
             node("c", {"zone": "a"}, memory=16 * GiB)]
    [decision] = place(reqs("big", 1, memory=2 * GiB, constraints=cons("zone==b")), nodes)
    assert decision == Decision("big-0", None, "0/3 nodes available: 2 insufficient memory, 1 did not match zone==b")


def test_reason_groups_sort_by_count_then_text():
    nodes = [node("a", ready=False), node("b", availability="drained"), node("c", availability="paused"),
             node("d", cpus=1.0), node("e", cpus=1.0)]
    [decision] = place(reqs("x", 1, cpus=2.0), nodes)
    assert decision.reason == ("0/5 nodes available: 2 insufficient cpu, 1 node down, "
                               "1 node drained, 1 node paused")


def test_each_node_is_counted_once_under_its_first_failing_filter():
    # Down *and* too small: reported as down only.
    [decision] = place(reqs("x", 1, memory=2 * GiB), [node("a", memory=GiB, ready=False)])
    assert decision.reason == "0/1 nodes available: 1 node down"


def test_no_nodes_registered():
    assert place(reqs("x", 2), []) == [
        Decision("x-0", None, "0/0 nodes available: no nodes registered"),
        Decision("x-1", None, "0/0 nodes available: no nodes registered"),
    ]
    assert unschedulable_reason({}, 0) == "0/0 nodes available: no nodes registered"


def test_empty_request_list():
    assert place([], [node("a")]) == []


def test_paused_drained_and_down_nodes_get_nothing():
    nodes = [node("a", availability="paused"), node("b", availability="drained"),
             node("c", ready=False), node("d")]
    decisions = place(reqs("web", 5), nodes)
    assert {d.node for d in decisions} == {"d"}
    decisions = place(reqs("web", 1), nodes[:3])
    assert decisions[0].node is None
    assert decisions[0].reason == "0/3 nodes available: 1 node down, 1 node drained, 1 node paused"


def test_host_port_conflicts():
    nodes = [node("a"), node("b")]
    decisions = place(reqs("web", 3, host_ports=((8080, "tcp"),)), nodes)
    assert {decisions[0].node, decisions[1].node} == {"a", "b"}
    assert decisions[2] == Decision("web-2", None, "0/2 nodes available: 2 host port 8080/tcp in use")


def test_host_port_protocol_and_existing_ports():
    nodes = [node("a", used_ports=frozenset({(53, "udp")})), node("b", used_ports=frozenset({(53, "tcp")}))]
    [d] = place(reqs("dns", 1, host_ports=((53, "tcp"),)), nodes)
    assert d.node == "a"
    # Different services still conflict on the same host port.
    decisions = place(reqs("one", 1, host_ports=((80, "tcp"),)) + reqs("two", 1, host_ports=((80, "tcp"),)), nodes)
    assert {d.node for d in decisions} == {"a", "b"}


def test_max_per_node():
    nodes = [node("a"), node("b")]
    decisions = place(reqs("web", 5, max_per_node=2), nodes)
    assert placed_counts(decisions) == {"a": 2, "b": 2}
    assert decisions[4] == Decision("web-4", None, "0/2 nodes available: 2 max 2 per node reached")


def test_max_per_node_counts_existing_instances():
    nodes = [node("a", service_counts={"web": 1}, total_instances=1), node("b")]
    decisions = place(reqs("web", 3, max_per_node=1), nodes)
    assert [d.node for d in decisions] == ["b", None, None]


def test_avoid_is_a_last_resort():
    nodes = [node("a"), node("b"), node("c")]
    decisions = place(reqs("web", 4, avoid=frozenset({"a"})), nodes)
    assert "a" not in {d.node for d in decisions}
    # With the others full, the avoided node is used rather than failing.
    nodes = [node("a", memory=4 * GiB), node("b", memory=GiB)]
    decisions = place(reqs("web", 3, memory=GiB, avoid=frozenset({"a"})), nodes)
    assert [d.node for d in decisions] == ["b", "a", "a"]
    decisions = place(reqs("db", 3, memory=GiB, avoid=frozenset({"a"}), strategy="binpack"), nodes)
    assert [d.node for d in decisions] == ["b", "a", "a"]


def test_existing_usage_is_respected():
    nodes = [node("a", memory=4 * GiB, used_memory=4 * GiB), node("b", memory=4 * GiB, used_memory=2 * GiB)]
    decisions = place(reqs("web", 3, memory=GiB), nodes)
    assert [d.node for d in decisions] == ["b", "b", None]
    assert decisions[2].reason == "0/2 nodes available: 2 insufficient memory"


def test_existing_service_counts_steer_spread():
    nodes = [node("a", service_counts={"web": 3}, total_instances=3), node("b", service_counts={"web": 1}, total_instances=1),
             node("c")]
    decisions = place(reqs("web", 4), nodes)
    # Fill up to a balanced 3/3/3 (plus the initial 1 and 3).
    assert placed_counts(decisions) == {"b": 2, "c": 2}


def test_cpu_fractions_sum_without_refusing_on_rounding():
    # 0.1 added ten times is 0.9999999999999999 or 1.0000000000000002 depending on order.
    decisions = place(reqs("w", 11, cpus=0.1), [node("a", cpus=1.0)])
    assert [d.node for d in decisions] == ["a"] * 10 + [None]
    assert decisions[10].reason == "0/1 nodes available: 1 insufficient cpu"


def test_zero_requests_skip_capacity_checks():
    # An already over-committed node still takes instances that request nothing.
    nodes = [node("a", cpus=1.0, memory=GiB, used_cpus=2.0, used_memory=2 * GiB)]
    assert place(reqs("w", 2), nodes)[1].node == "a"


def test_later_groups_see_earlier_placements():
    nodes = [node("a", memory=2 * GiB), node("b", memory=2 * GiB)]
    decisions = place(reqs("one", 2, memory=GiB) + reqs("two", 2, memory=GiB) + reqs("three", 1, memory=GiB), nodes)
    assert [d.node for d in decisions] == ["a", "b", "a", "b", None]


def test_interleaved_requests_keep_their_order():
    nodes = [node("a"), node("b")]
    requests = [Request("x1", "x"), Request("y1", "y"), Request("x2", "x"), Request("y2", "y")]
    assert [d.key for d in place(requests, nodes)] == ["x1", "y1", "x2", "y2"]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="strategy"):
        place(reqs("w", 1, strategy="random"), [node("a")])


def test_inputs_are_not_mutated():
    counts = {"web": 1}
    info = node("a", service_counts=counts, total_instances=1)
    place(reqs("web", 3, cpus=1.0), [info])
    assert info.used_cpus == 0.0 and counts == {"web": 1} and info.total_instances == 1


# ---- properties --------------------------------------------------------------------------

CONSTRAINTS = cons("zone==a", "zone!=b", "zone in (a, c)", "disk exists", "node.name==n1", "node.name!=n0")
PORTS = [(80, "tcp"), (80, "udp"), (443, "tcp")]
SERVICES = ["s0", "s1", "s2"]


@st.composite
def node_infos(draw, max_nodes=6):
    count = draw(st.integers(0, max_nodes))
    out = []
    for i in range(count):
        cpus = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
        memory = draw(st.sampled_from([256, 512, 1024, 2048]))
        counts = draw(st.dictionaries(st.sampled_from(SERVICES), st.integers(0, 3), max_size=3))
        labels = {}
        if zone := draw(st.sampled_from([None, "a", "b", "c"])):
            labels["zone"] = zone
        if draw(st.booleans()):
            labels["disk"] = "ssd"
        out.append(NodeInfo(
            name=f"n{i}",
            labels=labels,
            cpus=cpus,
            memory=memory,
            ready=draw(st.sampled_from([True, True, True, False])),
            availability=draw(st.sampled_from(["active", "active", "active", "paused", "drained"])),
            used_cpus=draw(st.floats(0, 1)) * cpus,
            used_memory=draw(st.integers(0, memory)),
            used_ports=frozenset(draw(st.sets(st.sampled_from(PORTS), max_size=2))),
            service_counts=counts,
            total_instances=sum(counts.values()) + draw(st.integers(0, 3)),
        ))
    return out


@st.composite
def request_lists(draw, node_names=("n0", "n1", "n2", "n3")):
    # Runs of identical requirements (like the replicas of a service) exercise the grouping.
    out = []
    for _ in range(draw(st.integers(0, 8))):
        template = dict(
            service=draw(st.sampled_from(SERVICES)),
            cpus=draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0])),
            memory=draw(st.sampled_from([0, 128, 256, 512])),
            host_ports=tuple(sorted(draw(st.sets(st.sampled_from(PORTS), max_size=2)))),
            constraints=tuple(draw(st.lists(st.sampled_from(CONSTRAINTS), max_size=2))),
            strategy=draw(st.sampled_from(["spread", "binpack"])),
            max_per_node=draw(st.sampled_from([None, None, 1, 2, 3])),
            avoid=frozenset(draw(st.sets(st.sampled_from(node_names), max_size=2))),
        )
        for _ in range(draw(st.integers(1, 6))):
            out.append(Request(key=f"r{len(out)}", **template))
    return out


def naive_place(requests, nodes):
    """Reference: every filter on every node for every request, then the min score key."""
    states = [NodeState(n, i) for i, n in enumerate(nodes)]
    decisions = []
    for req in requests:
        passing, rejections = [], Counter()
        for s in states:
            reason = next((r for f in FILTERS if (r := f(s, req)) is not None), None)
            if reason is None:
                passing.append(s)
            else:
                rejections[reason] += 1
        if passing:
            best = min(passing, key=lambda s: SCORERS[req.strategy](s, req))
            best.add(req)
            decisions.append(Decision(req.key, best.name))
        else:
            decisions.append(Decision(req.key, None, unschedulable_reason(rejections, len(states))))
    return decisions


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(nodes=node_infos(), requests=request_lists())
def test_matches_the_naive_reference(nodes, requests):
    assert place(requests, nodes) == naive_place(requests, nodes)


@PROPS
@given(nodes=node_infos(), requests=request_lists())
def test_placement_invariants(nodes, requests):
    decisions = place(requests, nodes)
    assert [d.key for d in decisions] == [r.key for r in requests]
    assert place(requests, nodes) == decisions  # deterministic
    by_name = {n.name: n for n in nodes}
    cpus = {n.name: n.used_cpus for n in nodes}
    memory = {n.name: n.used_memory for n in nodes}
    ports = {n.name: set(n.used_ports) for n in nodes}
    per_service = {n.name: Counter(n.service_counts) for n in nodes}
    for req, d in zip(requests, decisions):
        if d.node is None:
            assert d.reason and d.reason.startswith(f"0/{len(nodes)} nodes available: ")
            # Nobody could have taken it: every node fails some filter at this point,
            # and the counts in the reason cover every node exactly once.
            for n in nodes:
                fits = (n.ready and n.availability == "active"
                        and all(c.matches(n.labels, n.name) for c in req.constraints)
                        and (req.cpus == 0 or cpus[n.name] + req.cpus <= n.cpus + 1e-9)
                        and (req.memory == 0 or memory[n.name] + req.memory <= n.memory)
                        and not (set(req.host_ports) & ports[n.name])
                        and (req.max_per_node is None or per_service[n.name][req.service] < req.max_per_node))
                assert not fits
            if nodes:
                # Split only before "<count> ": constraint texts like "zone in (a, c)" contain ", ".
                groups = re.split(r", (?=\d+ )", d.reason.split(": ", 1)[1])
                counted = sum(int(part.split(" ", 1)[0]) for part in groups)
                assert counted == len(nodes)
            continue
        assert d.reason is None
        n = by_name[d.node]
        assert n.ready and n.availability == "active"
        assert all(c.matches(n.labels, n.name) for c in req.constraints)
        assert not (set(req.host_ports) & ports[n.name]), "host port used twice on one node"
        assert req.max_per_node is None or per_service[n.name][req.service] < req.max_per_node
        if req.cpus:
            assert cpus[n.name] + req.cpus <= n.cpus + 1e-6, "cpu over-committed"
        if req.memory:
            assert memory[n.name] + req.memory <= n.memory, "memory over-committed"
        cpus[n.name] += req.cpus
        memory[n.name] += req.memory
        ports[n.name] |= set(req.host_ports)
        per_service[n.name][req.service] += 1



@PROPS
@given(
    node_count=st.integers(1, 8),
    services=st.lists(st.sampled_from(SERVICES), max_size=60),
    existing_load=st.integers(0, 5),
)
def test_spread_keeps_each_service_balanced_on_equal_nodes(node_count, services, existing_load):
    # Equal, uncapped nodes (other services' load may differ): per-service counts stay within one.
    nodes = [node(f"n{i}", total_instances=(i * existing_load) % 7) for i in range(node_count)]
    requests = [Request(key=f"r{i}", service=s) for i, s in enumerate(services)]
    decisions = place(requests, nodes)
    assert all(d.node is not None for d in decisions)
    for service in SERVICES:
        counts = Counter(d.node for r, d in zip(requests, decisions) if r.service == service)
        per_node = [counts.get(n.name, 0) for n in nodes]
        assert max(per_node) - min(per_node) <= 1


@settings(PROPS, max_examples=100)
@given(nodes=node_infos(max_nodes=4), requests=request_lists())
def test_no_two_requests_share_a_host_port_on_a_node(nodes, requests):
    taken = {n.name: set(n.used_ports) for n in nodes}
    for req, d in zip(requests, place(requests, nodes)):
        if d.node is not None:
            for port in req.host_ports:
                assert port not in taken[d.node]
                taken[d.node].add(port)
