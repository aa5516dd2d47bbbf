"""Compose -> Dockyard translation: three realistic files checked key by key, then each rule."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.compose import (
    ComposeError,
    Translation,
    convert_memory,
    load,
    parse_duration,
    stack_name,
    translate,
)
from orchestrator.spec import ServiceApply, parse_memory

DATA = Path(__file__).resolve().parents[1] / "data"

NO_DNS = ("there is no DNS between them; an HTTP service given Dockyard `expose` routes is reached through the "
          "node's gateway ($DOCKYARD_GATEWAY, Host <service>.localhost; docs/gateway.md), any other by its published "
          "host port on the node's address")


def one(service: dict, *, stack: str = "s", base_dir: Path = Path(".")) -> tuple[dict, list[str]]:
    """Translate a single service named 'app'."""
    t = translate({"services": {"app": service}}, stack=stack, base_dir=base_dir)
    return t.services["app"], t.warnings


def ports(*items) -> list[dict]:
    return one({"image": "nginx", "ports": list(items)})[0]["ports"]


def p(container: int, host: int | None = None, protocol: str = "tcp") -> dict:
    return {"container_port": container, **({"host_port": host} if host else {}), "protocol": protocol}


# ---------------------------------------------------------------- the three files

def test_webapp_file():
    t = load(DATA / "compose-webapp.yml", volume_root="/srv/dockyard")
    assert isinstance(t, Translation)
    assert list(t.services) == ["web", "worker", "db"]
    env_file = {
        "LOG_LEVEL": "debug", "DATABASE_NAME": "shop", "SECRET_KEY": "change me",
        "CACHE_URL": "redis://redis:6379/1",
        "ALLOWED_HOSTS": "shop.example.com,www.shop.example.com", "EMPTY": "",
    }
    assert t.services["web"] == {
        "image": "registry.example.com/shop/web:1.8.2",
        "command": ["gunicorn", "shop.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4"],
        "env": {
            **env_file,
            "LOG_LEVEL": "info",  # environment (via the x- anchor) wins over env_file
            "DATABASE_HOST": "db",
            "DJANGO_SETTINGS_MODULE": "shop.settings.production",
            "FEATURE_NEW_CHECKOUT": "true",  # SENTRY_DSN has no value and is not set: skipped, as Compose does
        },
        "ports": [p(8000, 80), p(9100, 9100)],
        "labels": {"com.example.team": "storefront", "com.example.tier": "frontend",
                   "com.example.release": "stable"},
        "stop_timeout": 90,
        "health": {"type": "exec", "command": ["curl", "-fsS", "http://localhost:8000/healthz"],
                   "interval": 10.0, "timeout": 3.0, "retries": 5, "start_period": 60.0},
        "resources": {"cpus": 1.5, "memory": 512 * 2**20},
        "restart": {"policy": "on-failure"},
        "placement": {"constraints": ["zone!=edge"], "max_per_node": 2},
        "update": {"max_surge": 1, "max_unavailable": 0, "failure_action": "rollback",
                   "min_ready_seconds": 30.0},
        "replicas": 3,
        "stack": "webapp",
    }
    assert t.services["worker"] == {
        "image": "registry.example.com/shop/web:1.8.2",
        "command": ["worker", "--loglevel=info", "--concurrency=8"],
        "entrypoint": ["celery", "-A", "shop"],
        "env": {**env_file, "DATABASE_HOST": "db", "CELERY_BROKER_URL": "redis://redis:6379/0"},
        "labels": {"com.example.team": "storefront", "com.example.tier": "backend"},
        "init": True,
        "volumes": [{"source": "/srv/dockyard/webapp/media", "target": "/srv/media", "read_only": False}],
        "resources": {"memory": 2**30},  # a reservation stands in when there is no limit
        "restart": {"policy": "always"},  # unless-stopped
        "update": {"max_surge": 0, "max_unavailable": 2},  # stop-first is Swarm's default
        "replicas": 2,  # from scale
        "stack": "webapp",
    }
    assert t.services["db"] == {
        "image": "postgres:16-alpine",
        "env": {"POSTGRES_DB": "shop", "POSTGRES_USER": "shop",
                "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"},
        "volumes": [{"source": "/srv/dockyard/webapp/pgdata", "target": "/var/lib/postgresql/data", "read_only": False},
                    {"source": str(DATA / "db_password.txt"), "target": "/run/secrets/db_password", "read_only": True}],
        "stop_timeout": 120,
        "health": {"type": "exec",
                   "command": ["/bin/sh", "-c", "pg_isready -U ${POSTGRES_USER} -d ${POSTGRES_DB}"],
                   "interval": 5.0, "timeout": 5.0, "retries": 10, "start_period": 0.0},
        "resources": {"cpus": 2.0, "memory": 2 * 2**30},
        "restart": {"policy": "always"},
        "placement": {"constraints": ["disk==ssd", "node.name==db-1"]},
        "replicas": 1,
        "stack": "webapp",
    }
    assert t.depends_on == {"web": {"db": "service_healthy"}, "worker": {}, "db": {}}
    assert t.levels == [["worker", "db"], ["web"]]
    assert t.warnings == [
        "web: 'build' is not supported and was not applied; the image "
        "'registry.example.com/shop/web:1.8.2' is used as is",
        "web.environment: 'SENTRY_DSN' has no value and is not set in the environment or .env; it was skipped",
        "web.ports: host address 127.0.0.1 in '127.0.0.1:9100:9100' is ignored; "
        "Dockyard publishes on all addresses",
        "web.deploy.resources.reservations.cpus: not applied; web.deploy.resources.limits.cpus is used both "
        "to place and to cap",
        "web.deploy.resources.reservations.memory: not applied; web.deploy.resources.limits.memory is used "
        "both to place and to cap",
        "web.deploy.restart_policy: 'max_attempts' is not supported and was not applied",
        "web.deploy.placement.constraints: constraint 'node.role == worker' has no Dockyard "
        "equivalent and was skipped",
        "web.deploy.update_config: 'delay' is not supported and was not applied",
        "worker.environment: 'HOME' has no value and is not set in the environment or .env; it was skipped",
        "worker: label 'dockyard.service' uses the reserved prefix 'dockyard.' and was skipped",
        "db: 'shm_size' is not supported and was not applied",
        "networks: not separate; every container runs on its node's default bridge network",
        f"services: containers cannot look each other up by service name (web, worker, db): {NO_DNS}",
    ]
    # without a volume root, the named volumes are refused, naming the service and the key
    with pytest.raises(ComposeError, match=r"^worker\.volumes\[0\]: named volume 'media' .*--volume-root"):
        load(DATA / "compose-webapp.yml")


def test_monitoring_file():
    t = load(DATA / "compose-monitoring.yml", volume_root="/var/lib/dockyard")
    # No top-level name: the stack is the directory's name.
    assert {b["stack"] for b in t.services.values()} == {"data"}
    assert list(t.services) == ["prometheus", "grafana", "node-exporter", "alertmanager"]
    assert t.services["prometheus"] == {
        "image": "prom/prometheus:v2.53.0",
        "command": ["--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.retention.time=15d", "--web.enable-lifecycle"],
        "ports": [p(9090, 9090)],
        "volumes": [{"source": "/var/lib/dockyard/data/prometheus-data", "target": "/prometheus", "read_only": False},
                    {"source": str(DATA / "prometheus.yml"), "target": "/etc/prometheus/prometheus.yml",
                     "read_only": True}],
        "health": {"type": "exec",
                   "command": ["/bin/sh", "-c", "wget -qO- http://localhost:9090/-/ready || exit 1"],
                   "interval": 15.0, "timeout": 30.0, "retries": 3, "start_period": 0.0},
        "resources": {"memory": 2 * 2**30},
        "restart": {"policy": "always"},
        "placement": {"constraints": ["monitoring==true"]},
        "update": {"max_surge": 0, "max_unavailable": "100%", "failure_action": "pause"},
        "replicas": 1,
        "stack": "data",
    }
    assert t.services["grafana"] == {
        "image": "grafana/grafana:11.1.0",
        "env": {"GF_SECURITY_ADMIN_USER": "admin", "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_SERVER_ROOT_URL": "https://grafana.example.com", "GF_INSTALL_PLUGINS": ""},
        "ports": [p(3000, 3000)],
        "volumes": [{"source": "/var/lib/dockyard/data/grafana-data", "target": "/var/lib/grafana", "read_only": False}],
        "labels": {"org.opencontainers.image.title": "grafana",
                   "com.example.dashboard-url": "https://grafana.example.com"},
        "pull": "always",
        "health": {"type": "exec",
                   "command": ["/bin/sh", "-c", "wget -qO- http://localhost:3000/api/health || exit 1"],
                   "interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 30.0},
        "restart": {"policy": "on-failure"},
        "replicas": 1,
        "stack": "data",
    }
    assert t.services["node-exporter"] == {
        "image": "prom/node-exporter:v1.8.1",
        # '$$' is Compose's escape for '$'; the quotes are removed by the shell-like split
        "command": ["--path.rootfs=/host",
                    "--collector.filesystem.mount-points-exclude=^/(sys|proc|dev)($|/)"],
        "ports": [p(9100, 9100)],
        "pid_mode": "host",
        "volumes": [{"source": "/", "target": "/host", "read_only": True}],
        "resources": {"cpus": 0.2, "memory": 64 * 2**20},
        "replicas": 1,
        "stack": "data",
    }
    assert t.services["alertmanager"] == {
        "image": "prom/alertmanager:v0.27.0",
        "entrypoint": ["/bin/alertmanager", "--config.file=/etc/alertmanager/alertmanager.yml"],
        "ports": [p(9093, 9093), p(9094, 9094, "udp"), p(9094, 9094)],
        "placement": {"max_per_node": 1},
        "update": {"max_surge": 0, "max_unavailable": 1},
        "replicas": 2,
        "stack": "data",
    }
    assert t.levels == [["prometheus", "node-exporter", "alertmanager"], ["grafana"]]
    assert t.depends_on["grafana"] == {"prometheus": "service_started"}
    assert t.warnings == [
        "service 'node_exporter' was renamed to 'node-exporter' (Dockyard names are DNS labels)",
        "prometheus.deploy.restart_policy: 'delay' is not supported and was not applied",
        "prometheus.deploy.restart_policy: 'window' is not supported and was not applied",
        "prometheus: 'user' is not supported and was not applied",
        "grafana.restart: the retry limit in 'on-failure:5' is not supported; restarts are "
        "unlimited with back-off",
        "node-exporter.ports: mode 'ingress' has no routing mesh here; the port is published on "
        "each node running a replica",
        "node-exporter.volumes: option 'rslave' in '/:/host:ro,rslave' is not supported and was ignored",
        "node-exporter.deploy.mode: 'global' is not supported; the service runs as a replicated one",
        "alertmanager.deploy.placement: 'preferences' is not supported and was not applied",
        "alertmanager.deploy.update_config: 'delay' is not supported and was not applied",
        "alertmanager.deploy.update_config: 'max_failure_ratio' is not supported and was not applied",
        "alertmanager.deploy.update_config.failure_action: 'continue' is not supported; "
        "Dockyard's default (rollback) applies",
        "services: containers cannot look each other up by service name (prometheus, grafana, node-exporter, "
        f"alertmanager): {NO_DNS}",
    ]


def test_queue_file():
    t = load(DATA / "compose-queue.yml", environ={"RABBITMQ_PASSWORD": "s3cret"})
    assert list(t.services) == ["rabbitmq", "order-consumer", "gateway"]
    assert t.services["rabbitmq"] == {
        "image": "rabbitmq:3.13-management-alpine",
        "env": {"RABBITMQ_DEFAULT_USER": "orders",
                "RABBITMQ_DEFAULT_PASS": "s3cret"},  # ${RABBITMQ_PASSWORD:-guest}, from the environment
        "ports": [p(5672, 5672), p(15672, 15672), p(25672)],
        "stop_timeout": 45,
        "health": {"type": "exec", "command": ["/bin/sh", "-c", "rabbitmq-diagnostics -q ping"],
                   "interval": 30.0, "timeout": 10.0, "retries": 5, "start_period": 40.0},
        "resources": {"cpus": 1.0, "memory": 1536 * 2**20},
        "restart": {"policy": "always"},
        "placement": {"constraints": ["queue==true"]},
        "replicas": 1,
        "stack": "order-queue",  # top-level name 'Order Queue' made into a DNS label
    }
    assert t.services["order-consumer"] == {
        "image": "ghcr.io/example/order-consumer:2024.06.1",
        "command": ["python", "-m", "consumer", "--queue", "orders", "--prefetch", "20"],
        "env": {"AMQP_URL": "amqp://orders@rabbitmq:5672/", "WORKERS": "4", "DRY_RUN": "false"},
        "init": True,
        "resources": {"cpus": 0.5, "memory": 256 * 2**20},
        "restart": {"policy": "on-failure"},
        "update": {"max_surge": 2, "max_unavailable": 0, "min_ready_seconds": 60.0},
        "replicas": 6,
        "stack": "order-queue",
    }
    assert t.services["gateway"] == {
        "image": "nginx:1.27-alpine",
        "command": ["nginx", "-g", "daemon off;"],
        "entrypoint": ["/docker-entrypoint.sh"],
        "ports": [p(80, 8000), p(81, 8001), p(443, 8443),
                  p(6000, 6000, "udp"), p(6001, 6001, "udp"), p(6002, 6002, "udp")],
        "labels": {"traefik.enable": "true", "com.example.public": ""},
        "pull": "if-not-present",
        "health": {"type": "exec", "command": ["wget", "-q", "--spider", "http://127.0.0.1/"],
                   "interval": 20.0, "timeout": 2.0, "retries": 3, "start_period": 0.0},
        "restart": {"policy": "never"},  # `restart: no`, unquoted, read the YAML 1.2 way
        "placement": {"constraints": ["role==edge"]},
        "replicas": 2,
        "stack": "order-queue",
    }
    assert t.levels == [["rabbitmq", "gateway"], ["order-consumer"]]
    assert t.warnings == [
        "service 'order_consumer' was renamed to 'order-consumer' (Dockyard names are DNS labels)",
        "rabbitmq: 'hostname' is not supported and was not applied",
        "rabbitmq: 'ulimits' is not supported and was not applied",
        "order-consumer.deploy: 'endpoint_mode' is not supported and was not applied",
        "order-consumer.deploy: 'rollback_config' is not supported and was not applied",
        "order-consumer.deploy.resources.reservations.cpus: not applied; "
        "order-consumer.deploy.resources.limits.cpus is used both to place and to cap",
        "order-consumer.deploy.resources.reservations.memory: not applied; "
        "order-consumer.deploy.resources.limits.memory is used both to place and to cap",
        "order-consumer.deploy.restart_policy: 'delay' is not supported and was not applied",
        "order-consumer.deploy.restart_policy: 'max_attempts' is not supported and was not applied",
        "order-consumer.deploy.restart_policy: 'window' is not supported and was not applied",
        "order-consumer: 'logging' is not supported and was not applied",
        "gateway.ports: host address ::1 in '[::1]:8443:443' is ignored; Dockyard publishes on "
        "all addresses",
        "gateway.deploy.placement.constraints: constraint 'node.platform.os == linux' has no "
        "Dockyard equivalent and was skipped",
        "gateway: 'extra_hosts' is not supported and was not applied",
        f"services: containers cannot look each other up by service name (rabbitmq, order-consumer, gateway): {NO_DNS}",
    ]
    # unset, the default applies
    assert load(DATA / "compose-queue.yml").services["rabbitmq"]["env"]["RABBITMQ_DEFAULT_PASS"] == "guest"


@pytest.mark.parametrize("name", ["compose-webapp.yml", "compose-monitoring.yml", "compose-queue.yml"])
def test_every_body_is_a_valid_apply(name):
    for body in load(DATA / name, volume_root="/srv/dockyard").services.values():
        assert ServiceApply.model_validate(body).image == body["image"]


def test_load_stack_override_and_yaml_errors(tmp_path):
    assert {b["stack"] for b in load(DATA / "compose-queue.yml", stack="orders").services.values()} == {"orders"}
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  web: [unclosed\n")
    with pytest.raises(ComposeError, match="not valid YAML"):
        load(bad)
    with pytest.raises(ComposeError, match="cannot read"):
        load(tmp_path / "missing.yml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ComposeError, match="mapping at the top level"):
        load(bad)


def test_load_defaults_stack_to_directory_label(tmp_path):
    d = tmp_path / "My_Project.v2"
    d.mkdir()
    (d / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    assert load(d / "compose.yaml").services["web"]["stack"] == "my-project-v2"


def test_load_reads_yaml_1_2_scalars(tmp_path):
    # PyYAML's YAML 1.1 would read 22:22 as 1342 and `no` as False; Compose reads YAML 1.2.
    f = tmp_path / "compose.yml"
    f.write_text("services:\n  ssh:\n    image: sshd\n    ports: [22:22]\n    restart: no\n"
                 "    environment: {ENABLED: yes, MODE: 010, RATIO: 0.5, DEBUG: on}\n"
                 "    labels: {released: 2024-06-01}\n")
    body = load(f).services["ssh"]
    assert body["ports"] == [p(22, 22)]
    assert body["restart"] == {"policy": "never"}
    assert body["env"] == {"ENABLED": "yes", "MODE": "10", "RATIO": "0.5", "DEBUG": "on"}
    assert body["labels"] == {"released": "2024-06-01"}  # not a datetime.date


def test_stack_name():
    assert stack_name("Order Queue") == "order-queue"
    assert stack_name("--a__b--") == "a-b"
    assert len(stack_name("x" * 100)) == 63
    with pytest.raises(ComposeError):
        stack_name("___")


# ---------------------------------------------------------------- ports

def test_ports_short_syntax():
    assert ports("8080:80") == [p(80, 8080)]
    assert ports("80") == [p(80)]
    assert ports(80) == [p(80)]
    assert ports("8080:80/udp") == [p(80, 8080, "udp")]
    assert ports("53/udp") == [p(53, None, "udp")]
    assert ports("53:53/UDP") == [p(53, 53, "udp")]
    assert ports("8000-8001:80-81") == [p(80, 8000), p(81, 8001)]
    assert ports("3000-3002") == [p(3000), p(3001), p(3002)]
    assert ports("127.0.0.1::80") == [p(80)]


def test_ports_host_address_is_warned():
    body, warnings = one({"image": "nginx", "ports": ["127.0.0.1:8080:80", "[::1]:8443:443/tcp"]})
    assert body["ports"] == [p(80, 8080), p(443, 8443)]
    assert warnings == [
        "app.ports: host address 127.0.0.1 in '127.0.0.1:8080:80' is ignored; Dockyard publishes on all addresses",
        "app.ports: host address ::1 in '[::1]:8443:443/tcp' is ignored; Dockyard publishes on all addresses",
    ]


def test_ports_long_syntax():
    assert ports({"target": 80, "published": 8080, "protocol": "udp", "mode": "host"}) == [p(80, 8080, "udp")]
    assert ports({"target": 80}) == [p(80)]
    assert ports({"target": "80", "published": "8080"}) == [p(80, 8080)]
    body, warnings = one({"image": "nginx", "ports": [{"target": 80, "published": 80, "host_ip": "10.0.0.1",
                                                       "app_protocol": "http"}]})
    assert body["ports"] == [p(80, 80)]
    assert warnings == ["app.ports: 'app_protocol' is not supported and was not applied",
                        "app.ports: host_ip 10.0.0.1 is ignored; Dockyard publishes on all addresses"]


def test_port_host_range_for_one_container_port_is_not_fixed():
    body, warnings = one({"image": "nginx", "ports": ["9000-9010:80"]})
    assert body["ports"] == [p(80)]
    assert "cannot be fixed" in warnings[0]


def test_port_unsupported_protocol_is_skipped_with_warning():
    body, warnings = one({"image": "nginx", "ports": ["8080:80", "9999:9999/sctp"]})
    assert body["ports"] == [p(80, 8080)]
    assert warnings == ["app.ports: protocol 'sctp' is not supported; port 9999 was skipped"]


@pytest.mark.parametrize("bad, message", [
    ("80:90-91", "different lengths"),
    ("8000-8002:80-81", "different lengths"),
    ("a:80", "invalid port or port range 'a'"),
    ("1:2:3:4", "invalid port '1:2:3:4'"),
    ("90-80", "invalid port or port range '90-80'"),
    ({"published": 80}, "needs 'target'"),
    ([80], "invalid port entry"),
])
def test_bad_ports(bad, message):
    with pytest.raises(ComposeError, match=message) as e:
        ports(bad)
    assert str(e.value).startswith("app.ports: ")


def test_out_of_range_port_fails_validation():
    with pytest.raises(ComposeError, match=r"service 'app' does not make a valid Dockyard service: ports\.0"):
        ports("70000")


def test_duplicate_host_port_fails_validation():
    with pytest.raises(ComposeError, match="host port 8080/tcp is listed twice"):
        ports("8080:80", "8080:81")


# ---------------------------------------------------------------- durations and sizes

@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5),
    ("2m", 120.0), ("1h2m3s", 3723.0), ("0", 0.0), (10, 10.0), (2.5, 2.5), ("250us", 0.00025),
])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "30", "1x", "s", "-5s", "1m 30s", True, None, [1], -1])
def test_bad_durations(bad):
    with pytest.raises(ComposeError, match=r"^here: invalid duration"):
        parse_duration(bad, "here")


def test_stop_grace_period_rounds_up():
    assert one({"image": "x", "stop_grace_period": "1500ms"})[0]["stop_timeout"] == 2
    assert one({"image": "x", "stop_grace_period": "1m"})[0]["stop_timeout"] == 60


@pytest.mark.parametrize("compose, nbytes", [
    # Docker's rules (go-units RAMInBytes): binary, case-insensitive, optional 'i' and 'b'
    ("512M", 512 * 2**20), ("512m", 512 * 2**20), ("128m", 128 * 2**20), ("1G", 2**30), ("1gb", 2**30),
    ("64k", 64 * 2**10), ("2GiB", 2 * 2**30), ("1.5G", int(1.5 * 2**30)), ("100 MB", 100 * 2**20),
    ("100b", 100), ("268435456", 268435456), (268435456, 268435456), ("1t", 2**40), ("100T", 100 * 2**40),
    ("2p", 2 * 2**50), (1.5e9, 1500000000), ("0.5k", 512),
])
def test_memory_units(compose, nbytes):
    assert convert_memory(compose, "x") == nbytes


@pytest.mark.parametrize("bad", ["lots", "512X", "M", True, -1.0, "1e9", "1Ei", "-5m", None])
def test_bad_memory(bad):
    with pytest.raises(ComposeError, match=r"^x: invalid size .*binary, as in Docker: '128m' is 128 MiB"):
        convert_memory(bad, "x")


def test_memory_beyond_64_bits_is_refused():
    with pytest.raises(ComposeError, match="too large"):
        convert_memory("8589934592g", "x")  # 2^33 GiB = 2^63 bytes
    with pytest.raises(ComposeError, match="too large"):
        convert_memory(2**64, "x")
    assert convert_memory("8589934591g", "x") == (2**33 - 1) * 2**30


def test_resources_limits_reservations_and_legacy_keys():
    limits = {"image": "x", "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "128M"}}}}
    assert one(limits)[0]["resources"] == {"cpus": 0.5, "memory": 128 * 2**20}
    reserv = {"image": "x", "deploy": {"resources": {"reservations": {"cpus": 0.25, "memory": "64M"}}}}
    assert one(reserv) == ({"image": "x", "resources": {"cpus": 0.25, "memory": 64 * 2**20}, "replicas": 1,
                            "stack": "s"}, [])
    # limits win per resource; a reservation fills in the other one
    mixed = {"image": "x", "deploy": {"resources": {"limits": {"cpus": 1}, "reservations": {"memory": "1G"}}}}
    assert one(mixed)[0]["resources"] == {"cpus": 1.0, "memory": 2**30}
    # plain-compose (non-Swarm) keys, Docker's binary units: 128m is 128 MiB
    assert one({"image": "x", "cpus": 1.5, "mem_limit": "128m"})[0]["resources"] == {"cpus": 1.5, "memory": 128 * 2**20}
    assert one({"image": "x", "mem_reservation": "64m"})[0]["resources"] == {"memory": 64 * 2**20}
    body, warnings = one({"image": "x", "mem_limit": "256m", "mem_reservation": "256m",
                          "deploy": {"resources": {"limits": {"memory": "512M", "pids": 100}}}})
    assert body["resources"] == {"memory": 512 * 2**20}
    assert warnings == ["app.deploy.resources: 'pids' is not supported and was not applied",
                        "app.mem_limit: not applied; app.deploy.resources.limits.memory is used both to place "
                        "and to cap",
                        "app.mem_reservation: not applied; app.deploy.resources.limits.memory is used both to "
                        "place and to cap"]
    # the same number twice is no conflict; swap beyond the limit is not given
    assert one({"image": "x", "mem_limit": "1g", "memswap_limit": "1g"})[1] == []
    assert one({"image": "x", "mem_limit": "1g", "memswap_limit": "2g"})[1] == [
        "app.memswap_limit: not applied; a Dockyard container gets no swap beyond its memory limit"]


def test_too_little_memory_fails_validation():
    with pytest.raises(ComposeError, match="resources.memory.*at least 6Mi"):
        one({"image": "x", "mem_limit": "1m"})


# ---------------------------------------------------------------- placement

def test_constraint_conversion():
    body, warnings = one({"image": "x", "deploy": {"placement": {
        "constraints": ["node.labels.zone == a", "node.labels.zone!=b", "node.hostname == h1",
                        "node.hostname != h2", "node.labels.com.example/tier == web",
                        "node.role == manager", "node.id == abc", "engine.labels.os == linux"],
        "max_replicas_per_node": 3,
        "preferences": [{"spread": "node.labels.zone"}],
    }}})
    assert body["placement"] == {
        "constraints": ["zone==a", "zone!=b", "node.name==h1", "node.name!=h2", "com.example/tier==web"],
        "max_per_node": 3,
    }
    where = "app.deploy.placement"
    assert warnings == [
        f"{where}: 'preferences' is not supported and was not applied",
        f"{where}.constraints: constraint 'node.role == manager' has no Dockyard equivalent and was skipped",
        f"{where}.constraints: constraint 'node.id == abc' has no Dockyard equivalent and was skipped",
        f"{where}.constraints: constraint 'engine.labels.os == linux' has no Dockyard equivalent and was skipped",
    ]


@pytest.mark.parametrize("bad", ["node.labels.zone", "zone = a", "node.labels.zone == a b", 5])
def test_bad_constraint(bad):
    with pytest.raises(ComposeError, match=r"^app.deploy.placement.constraints: invalid constraint"):
        one({"image": "x", "deploy": {"placement": {"constraints": [bad]}}})


def test_only_unsupported_constraints_leave_no_placement():
    body, warnings = one({"image": "x", "deploy": {"placement": {"constraints": ["node.role == manager"]}}})
    assert "placement" not in body
    assert len(warnings) == 1


def test_bad_max_replicas_per_node():
    with pytest.raises(ComposeError, match="placement.max_per_node"):
        one({"image": "x", "deploy": {"placement": {"max_replicas_per_node": 0}}})


# ---------------------------------------------------------------- environment

def test_environment_list_and_map():
    body, warnings = one({"image": "x", "environment": ["A=1", "B=", "C=x=y", "BARE"]})
    assert body["env"] == {"A": "1", "B": "", "C": "x=y"}
    assert warnings == ["app.environment: 'BARE' has no value and is not set in the environment or .env; "
                        "it was skipped"]
    body, warnings = one({"image": "x", "environment": {"A": 1, "B": "", "C": True, "D": 0.5, "E": "e"}})
    assert body["env"] == {"A": "1", "B": "", "C": "true", "D": "0.5", "E": "e"}
    assert warnings == []
    assert one({"image": "x", "environment": None, "labels": None}) == ({"image": "x", "replicas": 1, "stack": "s"}, [])


def test_environment_without_a_value_comes_from_the_variables():
    svc = {"image": "x", "environment": ["HOME", "MISSING"], "labels": ["bare"]}
    t = translate({"services": {"app": svc}}, stack="s", environ={"HOME": "/root"})
    assert t.services["app"]["env"] == {"HOME": "/root"}
    assert t.services["app"]["labels"] == {"bare": ""}
    t = translate({"services": {"app": {"image": "x", "environment": {"HOME": None}}}}, stack="s", environ={"HOME": "/h"})
    assert t.services["app"]["env"] == {"HOME": "/h"}


def test_env_file_precedence(tmp_path):
    (tmp_path / "base.env").write_text(
        "# comment\n\nA=from-base\nB=from-base\nexport C='single $quoted'\nD=\"line\\nbreak\"\n"
        "E=value # trailing comment\nF=a#b\nNOVALUE\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "override.env").write_text("B=from-override\nG=g\n")
    body, warnings = one({"image": "x", "env_file": ["base.env", "sub/override.env"],
                          "environment": {"A": "from-environment"}}, base_dir=tmp_path)
    assert body["env"] == {
        "A": "from-environment",  # environment beats every env_file
        "B": "from-override",  # a later file beats an earlier one
        "C": "single $quoted", "D": "line\nbreak", "E": "value", "F": "a#b", "G": "g",
    }
    assert warnings == ["app.env_file: base.env line 9: 'NOVALUE' has no value and was skipped"]


def test_env_file_single_string_and_long_syntax(tmp_path):
    (tmp_path / ".env.web").write_text("A=1\n")
    assert one({"image": "x", "env_file": ".env.web"}, base_dir=tmp_path)[0]["env"] == {"A": "1"}
    optional = {"image": "x", "env_file": [{"path": ".env.web"}, {"path": "missing.env", "required": False}]}
    assert one(optional, base_dir=tmp_path)[0]["env"] == {"A": "1"}


def test_missing_env_file_is_an_error(tmp_path):
    with pytest.raises(ComposeError, match=r"^app.env_file: cannot read .*nope.env"):
        one({"image": "x", "env_file": "nope.env"}, base_dir=tmp_path)


def test_env_names_docker_accepts_are_accepted():
    env = {"discovery.type": "single-node", "xpack.security.enabled": "false", "my-var": "1", "1X": "a", "ü": "x"}
    assert one({"image": "x", "environment": env})[0]["env"] == env


@pytest.mark.parametrize("bad", ["A\x00B", ""])
def test_invalid_env_name_fails_validation(bad):
    with pytest.raises(ComposeError, match="invalid environment variable name .*without '=' or NUL"):
        one({"image": "x", "environment": {bad: "a"}})


# ---------------------------------------------------------------- commands, labels, misc

def test_command_and_entrypoint_forms():
    body, _ = one({"image": "x", "command": "sh -c 'echo hi; sleep 1'", "entrypoint": ["/init", "--"]})
    assert body["command"] == ["sh", "-c", "echo hi; sleep 1"]
    assert body["entrypoint"] == ["/init", "--"]
    assert one({"image": "x", "entrypoint": "/bin/app --flag", "command": ["a", 1]})[0] == {
        "image": "x", "command": ["a", "1"], "entrypoint": ["/bin/app", "--flag"], "replicas": 1, "stack": "s"}
    with pytest.raises(ComposeError, match="app.command: cannot split"):
        one({"image": "x", "command": "echo 'unbalanced"})
    with pytest.raises(ComposeError, match="app.entrypoint: must be a string or a list of strings"):
        one({"image": "x", "entrypoint": {"a": 1}})


def test_labels_merge_and_reserved_prefix():
    body, warnings = one({"image": "x", "labels": ["a=1", "b", "dockyard.node=n1"],
                          "deploy": {"labels": {"a": "2", "c": None}}})
    assert body["labels"] == {"a": "2", "b": "", "c": ""}  # deploy.labels win on a clash
    assert warnings == ["app: label 'dockyard.node' uses the reserved prefix 'dockyard.' and was skipped"]


def test_init_and_pull_policy():
    assert one({"image": "x", "init": True, "pull_policy": "never"})[0] == {
        "image": "x", "init": True, "pull": "never", "replicas": 1, "stack": "s"}
    assert one({"image": "x", "pull_policy": "if_not_present"})[0]["pull"] == "if-not-present"
    body, warnings = one({"image": "x", "pull_policy": "build"})
    assert "pull" not in body
    assert warnings == ["app: pull_policy 'build' is not supported; images are pulled if not present"]
    with pytest.raises(ComposeError, match="app.init: must be true or false"):
        one({"image": "x", "init": "yes"})


def test_replicas_and_scale():
    assert one({"image": "x"})[0] == {"image": "x", "replicas": 1, "stack": "s"}
    assert one({"image": "x", "scale": 0})[0]["replicas"] == 0
    assert one({"image": "x", "scale": 3, "deploy": {"replicas": 3}})[0]["replicas"] == 3
    with pytest.raises(ComposeError, match="app.scale: 2 conflicts with deploy.replicas 3"):
        one({"image": "x", "scale": 2, "deploy": {"replicas": 3}})
    with pytest.raises(ComposeError, match="app.deploy.replicas: must be a non-negative integer"):
        one({"image": "x", "deploy": {"replicas": "three"}})


# ---------------------------------------------------------------- healthcheck

@pytest.mark.parametrize("test, command", [
    (["CMD", "curl", "-f", "http://localhost/"], ["curl", "-f", "http://localhost/"]),
    (["CMD-SHELL", "curl -f http://localhost/ || exit 1"], ["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"]),
    ("curl -f http://localhost/ || exit 1", ["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"]),
])
def test_healthcheck_forms(test, command):
    body, warnings = one({"image": "x", "healthcheck": {"test": test, "interval": "1m30s", "timeout": "500ms",
                                                        "retries": 7, "start_period": "2m"}})
    assert body["health"] == {"type": "exec", "command": command, "interval": 90.0, "timeout": 0.5,
                              "retries": 7, "start_period": 120.0}
    assert warnings == []


def test_healthcheck_docker_defaults():
    body, _ = one({"image": "x", "healthcheck": {"test": ["CMD", "true"]}})
    assert body["health"] == {"type": "exec", "command": ["true"], "interval": 30.0, "timeout": 30.0,
                              "retries": 3, "start_period": 0.0}


@pytest.mark.parametrize("hc", [{"disable": True, "test": ["CMD", "true"]}, {"test": ["NONE"]}])
def test_healthcheck_disabled(hc):
    assert one({"image": "x", "healthcheck": hc}) == ({"image": "x", "replicas": 1, "stack": "s"}, [])


def test_healthcheck_without_test_and_unknown_keys():
    body, warnings = one({"image": "x", "healthcheck": {"interval": "5s"}})
    assert "health" not in body
    assert "no 'test'" in warnings[0]
    _, warnings = one({"image": "x", "healthcheck": {"test": "true", "start_interval": "1s"}})
    assert warnings == ["app.healthcheck: 'start_interval' is not supported and was not applied"]


@pytest.mark.parametrize("hc, message", [
    ({"test": ["CMD"]}, r"app.healthcheck.test: a list must be"),
    ({"test": ["RUN", "x"]}, r"app.healthcheck.test: a list must be"),
    ({"test": 5}, r"app.healthcheck.test: must be a string or a list"),
    ({"test": "true", "interval": "often"}, r"app.healthcheck.interval: invalid duration 'often'"),
    ({"test": "true", "retries": 0}, r"health.retries"),
    ("curl localhost", r"app.healthcheck: must be a mapping"),
])
def test_bad_healthcheck(hc, message):
    with pytest.raises(ComposeError, match=message):
        one({"image": "x", "healthcheck": hc})


# ---------------------------------------------------------------- restart

@pytest.mark.parametrize("restart, policy", [
    ("no", "never"), (False, "never"), ("always", "always"), ("on-failure", "on-failure"),
    ("unless-stopped", "always"),
])
def test_top_level_restart(restart, policy):
    assert one({"image": "x", "restart": restart}) == (
        {"image": "x", "restart": {"policy": policy}, "replicas": 1, "stack": "s"}, [])


@pytest.mark.parametrize("condition, policy", [("any", "always"), ("on-failure", "on-failure"),
                                               ("none", "never"), (None, "always")])
def test_deploy_restart_policy(condition, policy):
    rp = {} if condition is None else {"condition": condition}
    body, _ = one({"image": "x", "deploy": {"restart_policy": rp or {"max_attempts": 2}}})
    assert body["restart"] == {"policy": policy}


def test_restart_policy_beats_restart_and_warns():
    body, warnings = one({"image": "x", "restart": "always",
                          "deploy": {"restart_policy": {"condition": "none", "delay": "5s",
                                                        "max_attempts": 3, "window": "1m"}}})
    assert body["restart"] == {"policy": "never"}
    assert warnings == [
        "app.deploy.restart_policy: 'delay' is not supported and was not applied",
        "app.deploy.restart_policy: 'max_attempts' is not supported and was not applied",
        "app.deploy.restart_policy: 'window' is not supported and was not applied",
        "app: 'restart' is overridden by deploy.restart_policy",
    ]


@pytest.mark.parametrize("svc, message", [
    ({"restart": "sometimes"}, "app.restart: must be no, always, on-failure"),
    ({"restart": "always:3"}, "app.restart: must be no, always, on-failure"),
    ({"deploy": {"restart_policy": {"condition": "always"}}}, "app.deploy.restart_policy.condition: must be any"),
])
def test_bad_restart(svc, message):
    with pytest.raises(ComposeError, match=message):
        one({"image": "x", **svc})


# ---------------------------------------------------------------- update_config

def update(**uc) -> tuple[dict, list[str]]:
    body, warnings = one({"image": "x", "deploy": {"replicas": 4, "update_config": uc}})
    return body["update"], warnings


def test_update_orders():
    assert update() == ({"max_surge": 0, "max_unavailable": 1}, [])  # Swarm: parallelism 1, stop-first
    assert update(parallelism=2, order="stop-first") == ({"max_surge": 0, "max_unavailable": 2}, [])
    assert update(parallelism=2, order="start-first") == ({"max_surge": 2, "max_unavailable": 0}, [])
    assert update(parallelism=0, order="start-first")[0] == {"max_surge": "100%", "max_unavailable": 0}
    assert update(parallelism=0)[0] == {"max_surge": 0, "max_unavailable": "100%"}


def test_update_failure_action_and_monitor():
    assert update(failure_action="pause", monitor="1m30s")[0] == {
        "max_surge": 0, "max_unavailable": 1, "failure_action": "pause", "min_ready_seconds": 90.0}
    assert update(failure_action="rollback")[0]["failure_action"] == "rollback"
    result, warnings = update(failure_action="continue", delay="10s", max_failure_ratio=0.2)
    assert "failure_action" not in result
    assert warnings == [
        "app.deploy.update_config: 'delay' is not supported and was not applied",
        "app.deploy.update_config: 'max_failure_ratio' is not supported and was not applied",
        "app.deploy.update_config.failure_action: 'continue' is not supported; Dockyard's default (rollback) applies",
    ]


@pytest.mark.parametrize("uc, message", [
    ({"order": "whatever"}, "app.deploy.update_config.order: must be 'start-first' or 'stop-first'"),
    ({"failure_action": "explode"}, "app.deploy.update_config.failure_action: must be rollback, pause"),
    ({"parallelism": -1}, "app.deploy.update_config.parallelism: must be a non-negative integer"),
    ({"monitor": "soon"}, "app.deploy.update_config.monitor: invalid duration"),
])
def test_bad_update_config(uc, message):
    with pytest.raises(ComposeError, match=message):
        update(**uc)


# ---------------------------------------------------------------- host privileges and bind mounts

def test_privileges_map_to_spec_fields():
    body, warnings = one({"image": "x", "privileged": True, "cap_add": ["net_admin", "CAP_SYS_TIME", "NET_ADMIN"],
                          "network_mode": "host", "pid": "host"})
    assert warnings == []
    assert (body["privileged"], body["cap_add"], body["network_mode"], body["pid_mode"]) == (
        True, ["NET_ADMIN", "SYS_TIME"], "host", "host")
    spec = ServiceApply.model_validate(body)
    assert spec.privileged and spec.network_mode == "host" and spec.pid_mode == "host"
    body, _ = one({"image": "x", "privileged": False, "cap_add": [], "network_mode": "none"})
    assert "privileged" not in body and "cap_add" not in body and body["network_mode"] == "none"
    assert one({"image": "x", "network_mode": "bridge"})[0]["network_mode"] == "bridge"


@pytest.mark.parametrize("mode, message", [
    ("service:db", r"app.network_mode: 'service:db' shares another container's network namespace"),
    ("container:abc", r"app.network_mode: 'container:abc' shares another container's network namespace"),
    ("mynet", r"app.network_mode: 'mynet' is not supported; Dockyard knows 'bridge', 'host' and 'none'"),
])
def test_network_modes_without_an_equivalent_are_refused(mode, message):
    with pytest.raises(ComposeError, match=message):
        one({"image": "x", "network_mode": mode})


@pytest.mark.parametrize("svc, warning", [
    ({"pid": "service:db"}, "app.pid: 'service:db' is not supported and was not applied"),
    ({"cap_drop": ["ALL"]}, "app: 'cap_drop' is not supported and was not applied"),
])
def test_privilege_forms_without_an_equivalent_are_warned(svc, warning):
    body, warnings = one({"image": "x", **svc})
    assert len(warnings) == 1 and warnings[0].startswith(warning)
    assert not {"network_mode", "pid_mode", "cap_add"} & set(body)


@pytest.mark.parametrize("svc, message", [
    ({"privileged": "yes"}, "app.privileged: must be true or false"),
    ({"cap_add": "NET_ADMIN"}, "app.cap_add: must be a list of capability names"),
    ({"cap_add": ["bad-cap"]}, "service 'app' does not make a valid Dockyard service: cap_add.0"),
    ({"network_mode": "none", "ports": ["80"]}, "network_mode 'none' cannot publish ports"),
])
def test_bad_privileges(svc, message):
    with pytest.raises(ComposeError, match=message):
        one({"image": "x", **svc})


def test_bind_mounts_short_and_long_syntax():
    body, warnings = one({"image": "x", "volumes": [
        "/srv/data:/data",
        "/etc/app/conf.d:/etc/conf.d:ro",
        "/var/log:/logs:rw",
        {"type": "bind", "source": "/srv/media", "target": "/media", "read_only": True},
        {"type": "bind", "source": "/srv/cache/", "target": "/cache", "bind": {"create_host_path": True}},
    ]})
    assert warnings == []
    assert body["volumes"] == [
        {"source": "/srv/data", "target": "/data", "read_only": False},
        {"source": "/etc/app/conf.d", "target": "/etc/conf.d", "read_only": True},
        {"source": "/var/log", "target": "/logs", "read_only": False},
        {"source": "/srv/media", "target": "/media", "read_only": True},
        {"source": "/srv/cache/", "target": "/cache", "read_only": False},
    ]
    assert [v.source for v in ServiceApply.model_validate(body).volumes][-1] == "/srv/cache"


def test_anonymous_and_tmpfs_volumes_are_warned_not_applied():
    body, warnings = one({"image": "x", "volumes": [
        "/scratch",
        {"type": "tmpfs", "target": "/tmp"},
        {"type": "volume", "target": "/anon"},
        "/srv/keep:/keep",
    ]})
    assert body["volumes"] == [{"source": "/srv/keep", "target": "/keep", "read_only": False}]
    only = ("is not supported and was not applied: Dockyard only bind-mounts host paths; "
            "its data would not outlive the container anyway")
    assert warnings == [
        f"app.volumes: anonymous volume '/scratch' {only}",
        f"app.volumes: a 'tmpfs' mount (target '/tmp') {only}",
        f"app.volumes: an anonymous volume (target '/anon') {only}",
    ]


NAMED = {"services": {"app": {"image": "x", "volumes": [
    "data:/var/lib/data",
    {"type": "volume", "source": "cache", "target": "/cache", "read_only": True},
    {"source": "logs", "target": "/logs"},  # no type: a name is a named volume
]}}, "volumes": {"data": None, "cache": {}, "logs": {"name": "app-logs"}}}


def test_named_volumes_are_refused_without_a_volume_root():
    with pytest.raises(ComposeError, match=r"^app\.volumes\[0\]: named volume 'data' \('data:/var/lib/data'\): "
                                           r"Dockyard only bind-mounts host paths.*--volume-root DIR to bind it "
                                           r"to DIR/s/data on the node \(the server must --allow bind:DIR\)"):
        translate(NAMED, stack="s")


def test_named_volumes_become_bind_mounts_under_the_volume_root():
    t = translate(NAMED, stack="shop", volume_root="/srv/dockyard/")
    assert t.services["app"]["volumes"] == [
        {"source": "/srv/dockyard/shop/data", "target": "/var/lib/data", "read_only": False},
        {"source": "/srv/dockyard/shop/cache", "target": "/cache", "read_only": True},
        {"source": "/srv/dockyard/shop/app-logs", "target": "/logs", "read_only": False},  # its 'name'
    ]
    assert t.warnings == []


@pytest.mark.parametrize("compose, root, message", [
    ({"services": {"app": {"image": "x", "volumes": ["nope:/d"]}}}, "/v",
     r"app.volumes\[0\]: named volume 'nope' is not defined under the top-level 'volumes'"),
    ({"services": {"app": {"image": "x", "volumes": ["d:/d"]}}, "volumes": {"d": {"external": True}}}, "/v",
     r"volumes.d.external: an external volume is an existing Docker volume"),
    ({"services": {"app": {"image": "x", "volumes": ["d:/d"]}}, "volumes": {"d": {"driver": "nfs"}}}, "/v",
     r"volumes.d.driver: volume drivers and driver options are not supported"),
    ({"services": {"app": {"image": "x"}}, "volumes": {"d": {"driver_opts": {"type": "nfs"}}}}, "/v",
     r"volumes.d.driver: volume drivers"),
    ({"services": {"app": {"image": "x"}}, "volumes": []}, "/v", r"top-level 'volumes' must be a mapping"),
    ({"services": {"app": {"image": "x"}}}, "relative/dir", r"the volume root 'relative/dir' must be an absolute"),
])
def test_bad_named_volumes(compose, root, message):
    with pytest.raises(ComposeError, match=message):
        translate(compose, stack="s", volume_root=root)


def test_bind_mount_options_and_unsupported_keys_are_warned():
    body, warnings = one({"image": "x", "volumes": [
        "/srv/a:/a:ro,z",
        {"type": "bind", "source": "/srv/b", "target": "/b", "consistency": "cached",
         "bind": {"propagation": "rshared", "create_host_path": False}},
    ]})
    assert body["volumes"] == [{"source": "/srv/a", "target": "/a", "read_only": True},
                               {"source": "/srv/b", "target": "/b", "read_only": False}]
    assert warnings == [
        "app.volumes: option 'z' in '/srv/a:/a:ro,z' is not supported and was ignored",
        "app.volumes: 'consistency' is not supported and was not applied",
        "app.volumes.bind: 'propagation' is not supported and was not applied",
        "app.volumes.bind: 'create_host_path: false' is not supported; Docker creates a missing host path",
    ]


def test_relative_bind_paths_resolve_against_the_compose_file(tmp_path):
    body, warnings = one({"image": "x", "volumes": ["./conf:/etc/app", "../shared:/shared:ro", "~/x:/x"]},
                         base_dir=tmp_path / "proj")
    assert body["volumes"] == [
        {"source": str(tmp_path / "proj" / "conf"), "target": "/etc/app", "read_only": False},
        {"source": str(tmp_path / "shared"), "target": "/shared", "read_only": True},
    ]
    assert warnings[0] == (f"app.volumes: the relative path './conf' was resolved against the compose file's "
                           f"directory to '{tmp_path / 'proj' / 'conf'}', a path on the node that runs the container")
    assert warnings[2] == "app.volumes: '~/x' in '~/x:/x' was not applied: '~' is not expanded; use an absolute path"
    f = tmp_path / "proj" / "compose.yaml"
    f.parent.mkdir()
    f.write_text("services:\n  app:\n    image: x\n    volumes: [./data:/data]\n")
    assert load(f).services["app"]["volumes"][0]["source"] == str(tmp_path / "proj" / "data")


@pytest.mark.parametrize("volumes, message", [
    ("/a:/b", "app.volumes: must be a list"),
    ([5], "app.volumes: invalid volume entry 5"),
    (["/a:/b:ro:x"], "invalid volume '/a:/b:ro:x'"),
    (["/a:"], "invalid volume '/a:'"),
    (["/a:/b:rw,bogus"], "invalid volume option 'bogus'"),
    ([{"type": "bind", "target": "/b"}], "a bind mount needs 'source'"),
    ([{"type": "bind", "source": "/a"}], "a bind mount needs 'target'"),
    ([{"type": "bind", "source": "/a", "target": "/b", "read_only": "yes"}], r"app.volumes.read_only: must be true"),
    (["/a:relative"], "volumes.0.target"),
    (["/a:/b", "/c:/b"], "two volumes mount on /b"),
])
def test_bad_volumes(volumes, message):
    with pytest.raises(ComposeError, match=message):
        one({"image": "x", "volumes": volumes})


# ---------------------------------------------------------------- names, keys, malformed input

def test_service_rename_and_collision():
    t = translate({"services": {"My_Web": {"image": "x"}}}, stack="s")
    assert list(t.services) == ["my-web"]
    assert t.warnings == ["service 'My_Web' was renamed to 'my-web' (Dockyard names are DNS labels)"]
    with pytest.raises(ComposeError, match="service 'a-b': its name 'a-b' is already used"):
        translate({"services": {"a_b": {"image": "x"}, "a-b": {"image": "y"}}}, stack="s")
    with pytest.raises(ComposeError, match="service 'web.1': the name cannot be made into a DNS label"):
        translate({"services": {"web.1": {"image": "x"}}}, stack="s")


def test_unknown_and_extension_keys():
    t = translate({
        "x-defaults": {"a": 1}, "version": "3", "include": ["other.yml"], "name": "s",  # 'version' is obsolete
        "services": {"app": {"image": "x", "x-team": "core", "cap_drop": ["NET_RAW"],
                             "deploy": {"x-note": 1, "rollback_config": {}}}},
    }, stack="s")
    assert t.warnings == [
        "top-level 'include' is not supported and was not applied",
        "app.deploy: 'rollback_config' is not supported and was not applied",
        "app: 'cap_drop' is not supported and was not applied",
    ]


def test_top_level_name_different_from_stack_is_warned():
    t = translate({"name": "shop", "services": {"app": {"image": "x"}}}, stack="other")
    assert t.warnings == ["top-level 'name' 'shop' was ignored; the stack is 'other'"]


def test_build_without_image_is_an_error():
    with pytest.raises(ComposeError, match=r"^app.build: Dockyard does not build images: build it on a node "
                                           r"\(docker build -t NAME \.\).*then set 'app.image: NAME'"):
        one({"build": "."})


@pytest.mark.parametrize("compose, message", [
    ([], "must be a mapping at the top level"),
    ({}, "'services' must be a non-empty mapping"),
    ({"services": []}, "'services' must be a non-empty mapping"),
    ({"services": {"app": None}}, "service 'app': its definition must be a mapping"),
    ({"services": {"app": {"command": "x"}}}, "app.image: is required"),
    ({"services": {"app": {"image": "a b"}}}, r"service 'app' does not make a valid Dockyard service: image"),
    ({"services": {"app": {"image": "x", "deploy": []}}}, "app.deploy: must be a mapping, not list"),
    ({"services": {"app": {"image": "x", "environment": "A=1"}}}, "app.environment: must be a list"),
    ({"services": {"app": {"image": "x", "environment": {"A": {"b": 1}}}}}, r"app.environment.A: value must be"),
    ({"services": {"app": {"image": "x", "labels": [1]}}}, "app.labels: list items must be 'KEY=VALUE'"),
    ({"services": {"app": {"image": "x", "ports": "80:80"}}}, "app.ports: must be a list"),
    ({"services": {"app": {"image": "x", "env_file": 5}}}, "app.env_file: must be a path"),
    ({"services": {"app": {"image": "x", "env_file": [{"required": True}]}}}, "app.env_file: must be a path"),
    ({"services": {"app": {"image": "x", "stop_grace_period": "forever"}}}, "app.stop_grace_period: invalid"),
    ({"services": {"app": {"image": "x", "deploy": {"resources": {"limits": {"cpus": "lots"}}}}}},
     "app.deploy.resources.limits.cpus: invalid cpus 'lots'"),
])
def test_malformed_input(compose, message):
    with pytest.raises(ComposeError, match=message):
        translate(compose, stack="s")


def test_bad_stack():
    with pytest.raises(ComposeError, match="stack 'Bad_Stack' must be a DNS label"):
        translate({"services": {"app": {"image": "x"}}}, stack="Bad_Stack")


def test_compose_error_is_a_value_error():
    assert issubclass(ComposeError, ValueError)


def test_translate_does_not_mutate_input():
    compose = yaml.safe_load((DATA / "compose-webapp.yml").read_text())
    before = repr(compose)
    translate(compose, stack="webapp", base_dir=DATA, volume_root="/srv")
    assert repr(compose) == before
