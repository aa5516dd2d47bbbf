"""Alembic migrations for the Dockyard schema (applied at server start)."""
