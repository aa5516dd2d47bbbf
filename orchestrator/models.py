"""SQLAlchemy models: the desired state (and last observed state) of the cluster.

Times are UNIX epoch floats so the pure core can compare them with an injected `now`.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Cluster-wide key/value settings (e.g. the join token's hash)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the namespaces the token may see and change (None: all); a name outside them is a 404
    namespaces: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class Namespace(Base):
    """A namespace; one with a parent is a space (orchestrator/namespaces.py)."""

    __tablename__ = "namespaces"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(63), ForeignKey("namespaces.name"), nullable=True, index=True)
    quotas: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)


# A service's key (its name in default, `<namespace>/<name>` elsewhere: orchestrator/namespaces.py)
KEY = 127


class Node(Base):
    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    agent_url: Mapped[str] = mapped_column(String(255), default="")
    gateway: Mapped[str] = mapped_column(String(255), default="", server_default="")  # host:port, '' = none
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cpus: Mapped[float] = mapped_column(Float, default=0.0)
    memory: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    availability: Mapped[str] = mapped_column(String(16), default="active")
    last_heartbeat: Mapped[float] = mapped_column(Float, default=0.0)
    # when its agent's long poll was dropped by the agent's side (any server writes it); it
    # counts while no heartbeat is newer (core/liveness.py). None: never, or cleared when down
    suspect_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    engine_version: Mapped[str] = mapped_column(String(64), default="")
    credential_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)


class Service(Base):
    __tablename__ = "services"
    name: Mapped[str] = mapped_column(String(KEY), primary_key=True)  # the key
    namespace: Mapped[str] = mapped_column(String(63), default="default", server_default="default", index=True)
    stack: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    # the front door it came through: 'api' (/v1) or 'docker-api' (orchestrator/dockerapi/)
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    source_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # the autoscaler's recommendations and the rebalancer's moves (orchestrator/automation.py);
    # written by the leader's pass only
    automation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    replicas: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)  # the revision instances should run
    generation: Mapped[int] = mapped_column(Integer, default=1)  # bumps on every desired-state change
    version: Mapped[int] = mapped_column(Integer, default=1)  # optimistic concurrency token
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # rollout bookkeeping
    rollout_phase: Mapped[str] = mapped_column(String(16), default="complete")
    rollout_reason: Mapped[str] = mapped_column(Text, default="")
    rollout_started_at: Mapped[float] = mapped_column(Float, default=0.0)
    rollout_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status_message: Mapped[str] = mapped_column(Text, default="")


class Revision(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("service_name", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_name: Mapped[str] = mapped_column(String(KEY), ForeignKey("services.name", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    change_cause: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_node_desired", "node_name", "desired_state"),
        # at most one live instance per (service, revision, slot), whatever the code does
        Index("uq_instances_live_slot", "service_name", "revision", "slot", unique=True,
              sqlite_where=text("desired_state = 'running'"), postgresql_where=text("desired_state = 'running'")),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # no foreign key: an instance outlives its deleted service until its container is gone
    service_name: Mapped[str] = mapped_column(String(KEY), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    node_name: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    desired_state: Mapped[str] = mapped_column(String(16), default="running")  # running | stopped
    state: Mapped[str] = mapped_column(String(16), default="pending")
    container_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    host_ports: Mapped[list[Any]] = mapped_column(JSON, default=list)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    healthy: Mapped[bool | None] = mapped_column(nullable=True)
    ready_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[float] = mapped_column(Float, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    service: Mapped[str | None] = mapped_column(String(KEY), nullable=True, index=True)  # the key
    namespace: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)  # None: the cluster's
    node: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    instance: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Stack(Base):
    """A server-side stack: one application of several services, applied and rolled back as a
    unit (orchestrator/stacks/). `release` is the release its services should run; while
    `state` is 'rolling' the leader watches them (stacks/monitor.py), expecting `expect`."""

    __tablename__ = "stacks"
    key: Mapped[str] = mapped_column(String(KEY), primary_key=True)  # like a service's key
    name: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63), default="default", index=True)
    release: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default="rolling")  # deployed | rolling | failed | rolled_back
    reason: Mapped[str] = mapped_column(Text, default="")
    atomic: Mapped[bool] = mapped_column(default=True)
    rollout_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expect: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # service key -> revision
    started_at: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # every UPDATE checks the version it read: the leader's monitor (which reads without a lock)
    # loses to an apply that committed meanwhile, and its pass is retried (db.run)
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class StackRelease(Base):
    """One numbered release of a stack: each service's revision, replicas and spec, and the values."""

    __tablename__ = "stack_releases"
    __table_args__ = (UniqueConstraint("stack_key", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stack_key: Mapped[str] = mapped_column(String(KEY), ForeignKey("stacks.key", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending | deployed | superseded | failed
    services: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> {revision, replicas, spec}
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    package: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # {name, version}
    description: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)


class InstanceMetrics(Base):
    """What an instance's container used over its node's last metrics window (POST /v1/agent/metrics)."""

    __tablename__ = "instance_metrics"
    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(KEY), index=True)
    node: Mapped[str] = mapped_column(String(63), index=True)
    cpu: Mapped[float | None] = mapped_column(Float, nullable=True)  # cores
    memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes
    window: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class ServiceTraffic(Base):
    """What one node's gateway served for a service over its last metrics window."""

    __tablename__ = "service_traffic"
    node: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(KEY), primary_key=True, index=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    window: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class LeaderLease(Base):
    """The single row servers on one database compete for (orchestrator/coord/lease.py).
    Times are on the database's clock, so servers with skewed clocks agree on expiry."""

    __tablename__ = "leader_lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    acquired_at: Mapped[float] = mapped_column(Float, default=0.0)
    renewed_at: Mapped[float] = mapped_column(Float, default=0.0)
