"""Benchmark the placement scheduler: prints seconds for 10,000 requests over 1,000 nodes.

Run: .venv/bin/python bench/bench_scheduler.py
Prints figures only; it asserts nothing (tests never check wall-clock time).
"""
from __future__ import annotations

import time

from orchestrator.core.constraints import parse_constraint
from orchestrator.core.scheduler import NodeInfo, Request, place

GiB = 1024**3
MiB = 1024**2


def make_nodes(count: int = 1000) -> list[NodeInfo]:
    nodes = []
    for i in range(count):
        nodes.append(NodeInfo(
            name=f"node-{i:04d}",
            labels={"zone": "abc"[i % 3], **({"disk": "ssd"} if i % 4 == 0 else {})},
            cpus=16.0,
            memory=64 * GiB,
            ready=i % 50 != 7,
            availability="drained" if i % 100 == 3 else "active",
            used_cpus=(i % 8) * 0.5,
            used_memory=(i % 16) * GiB,
            service_counts={f"old-{i % 20}": 2},
            total_instances=2,
        ))
    return nodes


def typical_requests(services: int = 100, replicas: int = 100) -> list[Request]:
    """100 services x 100 replicas, mixed strategies, constraints, limits and host ports."""
    constraints = [(), (parse_constraint("zone==a"),), (parse_constraint("zone in (b, c)"),),
                   (parse_constraint("disk exists"),)]
    out = []
    for s in range(services):
        for r in range(replicas):
            out.append(Request(
                key=f"svc-{s}-{r}",
                service=f"svc-{s}",
                cpus=0.1 * (1 + s % 4),
                memory=(64 + 64 * (s % 8)) * MiB,
                host_ports=((9000 + s, "tcp"),) if s % 10 == 0 else (),
                constraints=constraints[s % len(constraints)],
                strategy="binpack" if s % 3 == 0 else "spread",
                max_per_node=2 if s % 5 == 0 else None,
            ))
    return out


def distinct_requests(count: int = 10_000) -> list[Request]:
    """Worst case for grouping: every request differs from its neighbour."""
    return [Request(key=f"one-{i}", service=f"one-{i % 2}", cpus=0.1, memory=(64 + i % 7) * MiB)
            for i in range(count)]


def timed(label: str, requests: list[Request], nodes: list[NodeInfo], runs: int = 3) -> None:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        decisions = place(requests, nodes)
        best = min(best, time.perf_counter() - start)
    placed = sum(d.node is not None for d in decisions)
    print(f"{label}: {len(requests)} requests x {len(nodes)} nodes: {best:.3f}s "
          f"(best of {runs}; {placed} placed, {len(requests) - placed} unschedulable)")


if __name__ == "__main__":
    nodes = make_nodes()
    timed("typical (100 services x 100 replicas)", typical_requests(), nodes)
    timed("worst case (no two consecutive requests alike)", distinct_requests(), nodes, runs=1)
