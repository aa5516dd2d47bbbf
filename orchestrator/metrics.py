"""Prometheus metrics of the server (served at /metrics)."""
import gc
import time

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
API_QUEUED = Counter("dockyard_api_queued_total", "API requests that waited for a slot (more than the admission limit in progress)",
                     registry=REGISTRY)
API_REFUSED = Counter("dockyard_api_overloaded_total", "API requests answered 503 overloaded after waiting their queue timeout",
                      registry=REGISTRY)
READ_CACHE = Counter("dockyard_read_cache_total", "Service reads answered from the read cache (hit) or the database (miss)",
                     ["result"], registry=REGISTRY)
GC_PAUSE_SECONDS = Histogram(
    "dockyard_gc_pause_seconds", "Garbage-collector pauses of the server process (every thread waits them out)",
    ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=REGISTRY,
)


def watch_gc() -> None:
    """Time every collection into GC_PAUSE_SECONDS (a pause stalls every request in flight)."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            GC_PAUSE_SECONDS.labels(str(info.get("generation"))).observe(time.perf_counter() - started[0])

    if callback not in gc.callbacks:
        gc.callbacks.append(callback)


# leadership (orchestrator/coord/leader.py)
LEADER = Gauge("dockyard_leader", "1 while this server holds the leader lease", registry=REGISTRY)
EPOCH = Gauge("dockyard_leader_epoch", "The epoch of the lease this server last took", registry=REGISTRY)
LEASE_AGE = Gauge("dockyard_leader_lease_age_seconds", "Seconds since the lease was last renewed, by any server",
                  registry=REGISTRY)
TAKEOVERS = Counter("dockyard_leader_takeovers_total", "Times this server took the leader lease", registry=REGISTRY)
STEPDOWNS = Counter("dockyard_leader_stepdowns_total", "Times this server stopped leading (lost or released)",
                    registry=REGISTRY)
FENCED = Counter("dockyard_fenced_writes_total", "Leader writes refused because the lease was no longer ours",
                 registry=REGISTRY)
