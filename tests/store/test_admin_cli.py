from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.admin_cli import add_parsers, open_store
from gateway.settings import load_settings
from tests.store.tamper import tampering


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mugai")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "gateway.toml"
    url = "" if store_url.startswith("sqlite") else store_url
    path.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\ndatabase_url = "{url}"\n', encoding="utf-8"
    )
    return path


def test_token_create_list_revoke(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(["token", "create", "--config", str(config), "--role", "approver", "--name", "suzuki"])
        == 0
    )
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert token.startswith("mgt_") and " " not in token
    store = open_store(load_settings(config))
    try:
        who = store.authenticate(token)
        assert who is not None and who.role == "approver" and who.name == "suzuki"
    finally:
        store.close()
    assert run(["token", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "suzuki\tapprover" in listing and token not in listing
    assert run(["token", "revoke", "--config", str(config), "suzuki"]) == 0
    assert run(["token", "revoke", "--config", str(config), "suzuki"]) == 1


def test_token_create_refuses_bad_input(config: Path) -> None:
    assert (
        run(["token", "create", "--config", str(config), "--role", "admin", "--name", "bad name"])
        == 2
    )
    with pytest.raises(SystemExit):
        run(["token", "create", "--config", str(config), "--role", "root", "--name", "x"])
    assert run(["token", "list", "--config", str(config) + ".missing"]) == 2


def test_audit_verify_detects_an_edited_row(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b", "c"):
        assert (
            run(["token", "create", "--config", str(config), "--role", "viewer", "--name", name])
            == 0
        )
    assert run(["audit", "verify", "--config", str(config)]) == 0
    assert "intact: 6 entries" in capsys.readouterr().out  # user.create + token.create each
    store = open_store(load_settings(config))
    try:
        with tampering(store) as conn:
            conn.execute(text("UPDATE audit_log SET target = 'z' WHERE seq = 2"))
    finally:
        store.close()
    assert run(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "seq 2: hash mismatch (row edited)" in out


def test_purge_command(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["purge", "--config", str(config)]) == 0
    assert '"total": 0' in capsys.readouterr().out
