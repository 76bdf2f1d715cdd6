"""Database backends for the store and API tests: SQLite in tmp_path, and a real PostgreSQL.

PostgreSQL: one fresh database ``mugai_test_<random>`` per test session, created on the server
at ``MUGAI_PG_ADMIN_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped
at the end; tables are emptied between tests. An unreachable server fails the tests with a clear
message unless ``MUGAI_SKIP_PG=1``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from gateway.store.audit import GENESIS
from gateway.store.repository import Store

ADMIN_URL = os.environ.get("MUGAI_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]
_TABLES = (
    "messages, message_recipients, message_reasons, blobs, api_tokens, users, release_requests, "
    "audit_log"
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, migrated PostgreSQL database for this session."""
    if os.environ.get("MUGAI_SKIP_PG") == "1":
        pytest.skip("PostgreSQL tests skipped (MUGAI_SKIP_PG=1)")
    name = f"mugai_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL not reachable at {ADMIN_URL} ({exc}); start it, point "
            "MUGAI_PG_ADMIN_URL at one, or set MUGAI_SKIP_PG=1 to skip these tests",
            pytrace=False,
        )
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{name}"
        store = Store(url)
        store.create_schema()
        store.close()
        try:
            yield url
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def reset_pg(store: Store) -> None:
    with store.engine.begin() as conn:
        # TRUNCATE fires no row triggers, so the append-only audit table can be emptied here.
        conn.execute(text(f"TRUNCATE {_TABLES} CASCADE"))
        conn.execute(text("UPDATE audit_head SET seq = 0, hash = :g, mac = ''"), {"g": GENESIS})


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mugai.db'}"
    url: str = request.getfixturevalue("pg_database")
    store = Store(url)
    reset_pg(store)
    store.close()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = Store(store_url)
    st.create_schema()
    yield st
    st.close()
