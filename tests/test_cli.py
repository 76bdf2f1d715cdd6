"""The `mugai` command as an operator runs it (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checks import check_clean_file, check_delivered
from tests.ingress.test_watch import js_pdf
from tests.jp import cp50220, encoded_words

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def mugai(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, cwd=cwd or REPO, timeout=280,
    )  # fmt: skip


def scan_config(tmp_path: Path, address: str) -> str:
    cfg = tmp_path / "scan.toml"
    cfg.write_text(f'[clamav]\naddress = "{address}"\n', encoding="utf-8")
    return str(cfg)


def test_sanitize_pdf_and_message_exit_zero(tmp_path: Path, clamd_address: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "請求書.pdf").write_bytes(js_pdf())
    mail = (
        b"From: a@example.com\r\nSubject: "
        + encoded_words("①件名").encode()
        + b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
        + cp50220("本文㈱")
        + b"\r\n"
    )
    (tmp_path / "in" / "message.dat").write_bytes(mail)  # recognised by content
    out = tmp_path / "out"
    cfg = scan_config(tmp_path, clamd_address)
    res = mugai("sanitize", str(tmp_path / "in"), "--out", str(out), "--json", "--config", cfg)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["all_clean"] is True and report["scanned"] is True
    assert [i["scan"]["status"] for i in report["items"]] == ["clean", "clean"]
    check_clean_file("application/pdf", (out / "請求書.pdf").read_bytes())
    msg = check_delivered((out / "message.dat.sanitized.eml").read_bytes())
    assert msg["Subject"] == "①件名"
    assert json.loads((out / "report.json").read_text(encoding="utf-8")) == report


def test_sanitize_removed_part_exits_one(tmp_path: Path, clamd_address: str) -> None:
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 100)
    cfg = scan_config(tmp_path, clamd_address)
    res = mugai("sanitize", str(exe), "--out", str(tmp_path / "out"), "--json", "--config", cfg)
    assert res.returncode == 1, res.stderr
    item = json.loads(res.stdout)["items"][0]
    assert item["status"] == "withheld"
    assert item["part"]["reasons"] in (["unsupported_type"], ["type_mismatch"])
    assert not any((tmp_path / "out").glob("*.exe"))


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    assert mugai("sanitize", str(tmp_path / "missing.pdf")).returncode == 2
    assert mugai("no-such-command").returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nlisten = \n")
    res = mugai("check-config", "--config", str(bad))
    assert res.returncode == 2 and "invalid configuration" in res.stderr


def test_check_config_prints_effective_settings_with_masked_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[storage]\ndatabase_url = "postgresql://u:hunter2@db/mugai"\n')
    res = mugai("check-config", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["smtp"]["listen"] == "127.0.0.1:2525"
    assert "hunter2" not in res.stdout


def test_sanitize_does_not_import_the_store_api_or_server(tmp_path: Path) -> None:
    """`mugai sanitize` start-up: SQLAlchemy, alembic and the web stack are never imported.

    Structural, not timed: -X importtime lists every module the command line imported.
    """
    src = tmp_path / "note.txt"
    src.write_text("hello\n", encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway.cli", "sanitize", "--no-scan",
         "--out", str(tmp_path / "out"), str(src)],
        capture_output=True, text=True, cwd=REPO, timeout=280,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if "|" in line}
    assert "gateway.offline" in imported  # the listing is real
    for heavy in ("sqlalchemy", "alembic", "fastapi", "uvicorn", "starlette", "gateway.store"):
        assert heavy not in imported, f"mugai sanitize imported {heavy}"


def test_help_still_lists_every_command() -> None:
    res = mugai("--help")
    assert res.returncode == 0
    for word in ("sanitize", "user", "token", "audit", "replay"):
        assert word in res.stdout
