"""Prometheus metrics of the server (served at /metrics)."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

LOOP_SECONDS = Histogram("dockyard_reconcile_pass_seconds", "Duration of one reconcile pass", registry=REGISTRY)
PLACEMENT_SECONDS = Histogram(
    "dockyard_placement_seconds", "Time to place the pending instances of one pass", registry=REGISTRY
)
NODES = Gauge("dockyard_nodes", "Nodes by status and availability", ["status", "availability"], registry=REGISTRY)
PENDING = Gauge("dockyard_pending_instances", "Instances waiting for a node", registry=REGISTRY)
SERVICES = Gauge("dockyard_services", "Services known to the server", registry=REGISTRY)
INSTANCES = Gauge("dockyard_instances", "Instances by observed state", ["state"], registry=REGISTRY)
REQUESTS = Counter("dockyard_http_requests_total", "HTTP requests", ["method", "status"], registry=REGISTRY)
SYNCS = Counter("dockyard_agent_syncs_total", "Agent sync calls answered", registry=REGISTRY)
