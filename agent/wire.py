"""The bodies the agent sends the servers (join, sync, report items), as plain dicts.

The shapes and bounds are the server's pydantic models in orchestrator/protocol.py; the agent
builds the same dicts by hand so that it never imports pydantic (about 10 MiB of an agent's
resident memory, docs/performance.md). tests/unit/test_protocol.py checks that what these
functions build is what those models accept and would build themselves; a body the server
refuses (a bad node name, say) is answered 422 and its message logged by the agent.
"""
from __future__ import annotations

from typing import Any

ERROR_MAX = 4096  # characters of an instance's last error that travel (protocol.ERROR_MAX)
WAIT_MAX = 60.0  # seconds a long poll may wait (protocol.SyncIn.wait)


def report_item(instance_id: str, state: str, *, container_id: str | None = None, healthy: bool | None = None,
                exit_code: int | None = None, host_ports: list[dict[str, Any]] | None = None,
                restart_count: int = 0, error: str = "") -> dict[str, Any]:
    """One entry of an agent's report (protocol.ReportItem); a long Docker error is cut to
    ERROR_MAX characters instead of making the server refuse the whole report."""
    if len(error) > ERROR_MAX:
        error = error[:ERROR_MAX - 1] + "…"
    return {"instance_id": instance_id, "container_id": container_id, "state": state, "healthy": healthy,
            "exit_code": exit_code, "host_ports": list(host_ports or []), "restart_count": restart_count,
            "error": error}


def sync_request(known: str | None, wait: float, report: list[dict[str, Any]] | None,
                 routes_known: str | None) -> dict[str, Any]:
    """The body of POST /v1/agent/sync (protocol.SyncIn); the wait kept within its bounds."""
    return {"known": known, "wait": min(max(float(wait), 0.0), WAIT_MAX), "report": report,
            "routes_known": routes_known}


def join_request(*, join_token: str, node_name: str, address: str = "", agent_url: str = "", gateway: str = "",
                 labels: dict[str, str] | None = None, cpus: float = 0.0, memory: int = 0, agent_version: str = "",
                 engine_version: str = "", credential: str | None = None, agent_cert: str = "") -> dict[str, Any]:
    """The body of POST /v1/agent/join (protocol.JoinIn)."""
    return {"join_token": join_token, "node_name": node_name, "address": address, "agent_url": agent_url,
            "gateway": gateway, "labels": dict(labels or {}), "cpus": float(cpus), "memory": int(memory),
            "agent_version": agent_version, "engine_version": engine_version, "credential": credential,
            "agent_cert": agent_cert}


def metrics_body(window: float, instances: list[dict[str, Any]], traffic: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of POST /v1/agent/metrics (protocol.MetricsIn, with InstanceUsage and
    ServiceTraffic rows): every field present, as the model would dump it."""
    return {"window": float(window),
            "instances": [{"instance_id": i["instance_id"], "cpu": i.get("cpu"), "memory": i.get("memory")}
                          for i in instances],
            "traffic": [{"service": t["service"], "requests": t["requests"], "errors": t.get("errors", 0),
                         "latency_p95_ms": t.get("latency_p95_ms")} for t in traffic]}
