"""Migrations on a real database, SQLite and PostgreSQL: a database made by the previous
revision upgrades without losing a row, and the migrated schema is what the models say."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from orchestrator.db import MIGRATIONS_DIR
from orchestrator.models import Base
from tests import pg


def _cfg(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    u = pg.empty_database()
    yield u
    pg.drop_database(u)


def test_a_database_of_revision_0003_moves_into_default_without_loss(url):
    command.upgrade(_cfg(url), "0003")
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("INSERT INTO services (name, stack, spec, replicas, revision, generation, version, created_at, "
                       "updated_at, rollout_phase, rollout_reason, rollout_started_at, status_message) VALUES "
                       "('web', 'shop', '{\"image\": \"busybox:1\"}', 2, 1, 1, 1, 1.0, 1.0, 'complete', '', 0, '')"))
        c.execute(text("INSERT INTO revisions (service_name, number, spec, change_cause, created_at) VALUES "
                       "('web', 1, '{\"image\": \"busybox:1\"}', 'created', 1.0)"))
        c.execute(text("INSERT INTO instances (id, service_name, slot, revision, desired_state, state, host_ports, "
                       "restart_count, last_error, created_at, updated_at) VALUES "
                       "('i1', 'web', 0, 1, 'running', 'running', '[]', 0, '', 1.0, 1.0)"))
        c.execute(text("INSERT INTO events (time, kind, service, message) VALUES (1.0, 'service_created', 'web', 'made')"))
        c.execute(text("INSERT INTO events (time, kind, node, message) VALUES (2.0, 'node_ready', 'n1', 'hello')"))
        c.execute(text("INSERT INTO tokens (id, name, role, hash, created_at) VALUES ('t1', 'ci', 'viewer', 'h', 1.0)"))
    command.upgrade(_cfg(url), "head")
    with eng.connect() as c:
        assert c.execute(text("SELECT name, namespace, stack, replicas FROM services")).all() == [("web", "default", "shop", 2)]
        assert c.execute(text("SELECT service_name, number FROM revisions")).all() == [("web", 1)]
        assert c.execute(text("SELECT id, service_name, state FROM instances")).all() == [("i1", "web", "running")]
        assert c.execute(text("SELECT service, namespace FROM events ORDER BY id")).all() == [("web", "default"), (None, None)]
        assert c.execute(text("SELECT id, namespaces FROM tokens")).all() == [("t1", None)]
        assert c.execute(text("SELECT name, parent FROM namespaces")).all() == [("default", None)]
        # a key of another namespace fits (up to 63 + 1 + 63 characters)
        long_key = "n" * 63 + "/" + "s" * 63
        c.execute(text("INSERT INTO namespaces (name, created_at) VALUES (:n, 1.0)"), {"n": "n" * 63})
        c.execute(text("INSERT INTO services (name, namespace, spec, replicas, revision, generation, version, created_at, "
                       "updated_at, rollout_phase, rollout_reason, rollout_started_at, status_message) VALUES "
                       "(:k, :n, '{}', 1, 1, 1, 1, 1.0, 1.0, 'complete', '', 0, '')"), {"k": long_key, "n": "n" * 63})
        c.commit()
    eng.dispose()


def test_the_migrated_schema_is_what_the_models_say(url):
    command.upgrade(_cfg(url), "head")
    eng = create_engine(url)
    with eng.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    eng.dispose()
    assert diff == [], diff
