"""``mugai sanitize`` writes its outputs only through the gateway's last gate (issue 10 item
4): the rebuilt message or file rescanned and checked by the egress checker. Simulated by a
sanitizer bug that lets a live link through: nothing is written, the item is withheld."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import gateway.offline
from gateway.model import Action, CleanFile, MessageReport, PartReport, ScanResult
from gateway.offline import sanitize_one
from gateway.pipeline import SanitizedMessage
from gateway.settings import load_settings

LIVE = b"see https://evil.example.com/login\n"


def _report() -> PartReport:
    return PartReport(index="1", filename="a.txt", declared_type="text/plain",
                      detected_type="text/plain", action=Action.KEPT, reasons=())  # fmt: skip


def test_file_output_with_a_live_link_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello\n")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(gateway.offline, "sanitize_part", lambda *a, **k: (
        _report(), (CleanFile("a.txt", "text/plain", LIVE),)))  # fmt: skip
    entry, clean = sanitize_one(src, out, load_settings(None), None, None)  # type: ignore[arg-type]
    assert not clean and entry["status"] == "withheld"
    assert entry["reason"] == "egress_live_link" and "egress_live_link" in entry["reasons"]
    assert list(out.iterdir()) == []


def test_message_output_with_a_live_link_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["To"] = "b@town.example.lg.jp"
    m["Subject"] = "x"
    m.set_content("hello")
    src = tmp_path / "m.eml"
    src.write_bytes(m.as_bytes())
    out = tmp_path / "out"
    out.mkdir()
    live = EmailMessage()
    live.set_content(LIVE.decode())

    def fake(*a: Any, **k: Any) -> SanitizedMessage:
        return SanitizedMessage(live.as_bytes(), MessageReport())

    monkeypatch.setattr(gateway.offline, "sanitize_message", fake)
    entry, clean = sanitize_one(src, out, load_settings(None), None, None)  # type: ignore[arg-type]
    assert not clean and entry["status"] == "withheld" and entry["reason"] == "egress_live_link"
    assert list(out.iterdir()) == []


def test_output_rescanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello\n")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(gateway.offline, "sanitize_part", lambda *a, **k: (
        _report(), (CleanFile("a.txt", "text/plain", b"EVIL\n"),)))  # fmt: skip

    def scan(data: bytes) -> ScanResult:
        return ScanResult(clean=b"EVIL" not in data, signature="Test.Sig")

    entry, _ = sanitize_one(src, out, load_settings(None), None, scan)  # type: ignore[arg-type]
    assert entry["status"] == "withheld" and entry["reason"] == "virus_found_output"
    assert list(out.iterdir()) == []
