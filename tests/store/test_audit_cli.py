"""`mugai audit verify|init-key|rotate-key` against the tampering of issue 12 (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.admin_cli import open_store
from gateway.settings import load_settings
from tests.store.tamper import tampering
from tests.store.test_admin_cli import run
from tests.store.test_audit_seal import _rechain


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "gateway.toml"
    url = "" if store_url.startswith("sqlite") else store_url
    path.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\ndatabase_url = "{url}"\n',
        encoding="utf-8",
    )
    return path


def _entries(cfg: Path, n: int = 4) -> None:
    for i in range(n):
        assert run(["token", "create", "--config", str(cfg), "--role", "viewer",
                    "--name", f"u{i}"]) == 0  # fmt: skip


def test_first_use_creates_a_0600_key_and_an_anchor(config: Path) -> None:
    _entries(config, 1)
    settings = load_settings(config)
    key = settings.audit_key_file
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    assert list(settings.audit_anchor_dir.glob("anchor-*.log"))
    assert run(["audit", "init-key", "--config", str(config)]) == 2  # never overwritten


def test_rechained_deletion_exits_1_naming_the_entry(
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _entries(config)
    assert run(["audit", "verify", "--config", str(config)]) == 0
    store = open_store(load_settings(config))
    try:
        with tampering(store) as conn:
            conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
        _rechain(store)
    finally:
        store.close()
    capsys.readouterr()
    assert run(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "seq 2: MAC mismatch" in out


def test_deleted_key_file_exits_1(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _entries(config, 2)
    load_settings(config).audit_key_file.unlink()
    capsys.readouterr()
    assert run(["audit", "verify", "--config", str(config)]) == 1
    assert "CANNOT BE VERIFIED" in capsys.readouterr().out
    # And nothing else writes unMACed entries in the meantime.
    assert run(["token", "create", "--config", str(config), "--role", "viewer",
                "--name", "late"]) == 2  # fmt: skip


def test_rotate_key(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _entries(config, 2)
    assert run(["audit", "rotate-key", "--config", str(config)]) == 0
    _entries(config, 1)
    key = load_settings(config).audit_key_file
    assert len(key.read_text().splitlines()) == 2 and (key.stat().st_mode & 0o777) == 0o600
    capsys.readouterr()
    assert run(["audit", "verify", "--config", str(config)]) == 0
    # u0, u1: user.create + token.create each; then a second token for u0: token.create only.
    assert "intact: 5 entries" in capsys.readouterr().out


def test_truncation_and_stripped_macs_exit_1(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _entries(config)
    store = open_store(load_settings(config))
    try:
        with tampering(store) as conn:
            conn.execute(text("DELETE FROM audit_log WHERE seq > 2"))
            conn.execute(text("UPDATE audit_log SET mac = '', key_id = ''"))
            row = conn.execute(text("SELECT hash FROM audit_log WHERE seq = 2")).one()
            conn.execute(text("UPDATE audit_head SET seq = 2, hash = :h, mac = '' WHERE id = 1"),
                         {"h": row.hash})  # fmt: skip
    finally:
        store.close()
    capsys.readouterr()
    assert run(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "seq 1: differs from the anchor" in out and "seq 3: anchored" in out
