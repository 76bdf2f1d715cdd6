"""Alembic migrations for the store (run by ``Store.create_schema``)."""
