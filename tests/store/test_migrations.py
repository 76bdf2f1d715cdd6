from __future__ import annotations

from sqlalchemy import inspect, text

from gateway.store import migrate
from gateway.store.repository import Store


def test_upgrade_head_creates_every_table_and_is_idempotent(store: Store) -> None:
    store.create_schema()  # a second run (every start runs it) changes nothing
    assert migrate.current(store.engine) == "0003"
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "messages",
        "message_recipients",
        "blobs",
        "api_tokens",
        "release_requests",
        "audit_log",
        "audit_head",
        "message_reasons",
        "alembic_version",
    } <= tables
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT seq FROM audit_head WHERE id = 1")).scalar() == 0


def test_migrations_ship_inside_the_package() -> None:
    assert (migrate.MIGRATIONS / "env.py").is_file()
    assert (migrate.MIGRATIONS / "versions" / "0001_initial.py").is_file()
    assert (migrate.MIGRATIONS / "script.py.mako").is_file()


def test_models_match_the_migration(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gateway.store.models import Base

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_0002_indexes_the_reasons_of_existing_records(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine, "0001")
    parts = [{"reasons": ["encrypted"], "children": [{"reasons": ["unsupported_type"]}]}]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (id, kind, message_id, status, mail_from, rcpt_tos, subject,"
                " header_from, filename, received_at, updated_at, reasons, detail, tokens, parts,"
                " scan, timings, size, sha256, attempts, node, legal_hold) VALUES ('m1', 'mail',"
                " '', 'delivered', '', '[]', '', '', '', '2026-01-01', '2026-01-01', :r, '', '[]',"
                " :p, '{}', '{}', 0, '', 1, '', 0)"
            ),
            {"r": json.dumps(["html_to_text"]), "p": json.dumps(parts)},
        )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        codes = conn.execute(text("SELECT reason FROM message_reasons ORDER BY reason")).scalars()
        assert list(codes) == ["encrypted", "html_to_text", "unsupported_type"]
    engine.dispose()
