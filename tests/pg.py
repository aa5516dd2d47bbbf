"""PostgreSQL for the tests: a fresh database per test, cloned from a migrated template.

The server URL comes from DOCKYARD_TEST_POSTGRES (`make test` and .ci/run start one with
scripts/start-postgres.sh). Without it, a PostgreSQL test fails with the command to run:
a skipped backend would claim coverage the run does not give.
"""
from __future__ import annotations

import atexit
import os
import secrets
import threading

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

# one template per test process: several runs on one PostgreSQL server (a developer's and a
# helper's, or two checkouts at different migrations) must not drop or migrate each other's
TEMPLATE = f"dockyard_template_{os.getpid()}"
_made = threading.Lock()
_template_ready = False


def server_url() -> str:
    url = os.environ.get("DOCKYARD_TEST_POSTGRES")
    if not url:
        pytest.fail("PostgreSQL tests need a server: export DOCKYARD_TEST_POSTGRES=$(scripts/start-postgres.sh)")
    return url


def _admin():  # type: ignore[no-untyped-def]
    return create_engine(server_url(), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")


def _template() -> None:
    global _template_ready
    with _made:
        if _template_ready:
            return
        from orchestrator.db import migrate

        eng = _admin()
        with eng.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
            c.execute(text(f"CREATE DATABASE {TEMPLATE}"))
        eng.dispose()
        migrate(str(make_url(server_url()).set(database=TEMPLATE).render_as_string(hide_password=False)))
        _template_ready = True
        atexit.register(_drop_template)


def _drop_template() -> None:
    try:
        eng = _admin()
        with eng.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
        eng.dispose()
    except Exception:  # noqa: BLE001 - the server may be gone at exit; the name is unique anyway
        pass


def fresh_database() -> str:
    """The URL of a new, migrated, empty database."""
    _template()
    return _create(f" TEMPLATE {TEMPLATE}")


def _create(clause: str = "") -> str:
    name = f"t_{secrets.token_hex(6)}"
    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}{clause}"))
    eng.dispose()
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    eng.dispose()


def empty_database() -> str:
    """The URL of a new database with no schema at all (for migration tests)."""
    return _create()
