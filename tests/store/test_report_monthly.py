"""`mugai report`: the monthly CSV, on SQLite and PostgreSQL, read back with the csv module."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.report_monthly import HEADER, collect, parse_month, render, safe_cell
from gateway.store.repository import Store
from gateway.store.tokens import Principal
from tests.store.seed import add_message

JST = "Asia/Tokyo"


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _rows(data: bytes, encoding: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding), newline="")))


def _find(rows: list[list[str]], section: str, item: str, detail: str | None = None) -> int:
    hits = [r for r in rows if r[0] == section and r[1] == item and detail in (None, r[2])]
    assert len(hits) <= 1, hits
    return int(hits[0][3]) if hits else 0


def _november(store: Store) -> None:
    # 2026-10-31 15:30 UTC is 1 November 00:30 in Tokyo: November's.
    add_message(store, status="delivered", received_at=_at("2026-10-31T15:30:00"))
    add_message(store, status="delivered", received_at=_at("2026-11-15T03:00:00"))
    add_message(
        store,
        status="quarantined",
        reason="virus_found",
        mail_from='=HYPERLINK("http://evil.example/x")@evil.example',
        received_at=_at("2026-11-20T03:00:00"),
    )
    add_message(
        store,
        status="quarantined",
        reason="virus_found",
        mail_from="絵文字😀@example.jp",
        received_at=_at("2026-11-21T03:00:00"),
    )
    # 2026-11-30 15:30 UTC is already December in Tokyo; 2026-10-31 14:00 UTC still October.
    add_message(store, status="delivered", received_at=_at("2026-11-30T15:30:00"))
    add_message(store, status="delivered", received_at=_at("2026-10-31T14:00:00"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp932"])
def test_month_counts_in_both_encodings(store: Store, encoding: str) -> None:
    _november(store)
    data = render(collect(store, parse_month("2026-11", JST)), encoding)  # type: ignore[arg-type]
    rows = _rows(data, encoding)
    assert tuple(rows[0]) == HEADER
    assert _find(rows, "period", "2026-11") == 4
    assert _find(rows, "status", "delivered", "mail") == 2
    assert _find(rows, "status", "quarantined", "mail") == 2
    assert _find(rows, "reason", "virus_found", "message") == 2
    assert _find(rows, "reason", "macros_removed", "part") == 4
    assert _find(rows, "top_sender", "sender@example.com") == 2
    if encoding == "utf-8-sig":
        assert data.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8
        assert _find(rows, "top_sender", "絵文字😀@example.jp") == 1
    else:
        # cp932 has no emoji: replaced, the rest of the report intact.
        assert _find(rows, "top_sender", "絵文字?@example.jp") == 1
    assert b"\r\n" in data


def test_hostile_sender_is_no_formula(store: Store) -> None:
    _november(store)
    rows = _rows(render(collect(store, parse_month("2026-11", JST)), "utf-8-sig"), "utf-8-sig")
    senders = [r[1] for r in rows if r[0] == "top_sender"]
    evil = [s for s in senders if "hyperlink" in s]
    assert evil == ["'" + '=hyperlink("http://evil.example/x")@evil.example']
    for cell in (c for r in rows for c in r):
        assert not cell.startswith(("=", "+", "-", "@")), cell


@pytest.mark.parametrize(
    "value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", " =1", "a\r\n=1", "x" * 5000]
)
def test_safe_cell(value: str) -> None:
    cell = safe_cell(value)
    assert not cell.lstrip().startswith(("=", "+", "-", "@")) or cell.startswith("'")
    assert "\n" not in cell and "\r" not in cell and len(cell) <= 321


@pytest.mark.parametrize("value", ["moc.live\u202e@x.example", "a\x85b", "a\u2028b"])
def test_safe_cell_spells_out_reordering_and_breaking_characters(value: str) -> None:
    # A bidi override would reverse a sender address in Excel; NEL / LS break a line.
    cell = safe_cell(value)
    assert not any(c in cell for c in "\u202e\x85\u2028")
    assert "⟨U+" in cell


def test_releases_and_audited_actions_are_counted(store: Store) -> None:
    mid = add_message(store, status="quarantined", received_at=_at("2026-11-02T00:00:00"))
    alice = Principal(token_id=1, name="alice", role="operator")
    store.request_release(mid, "取引先に確認済み", alice)
    store.read_original(mid, alice)
    # Audit rows are stamped now; report the current month to see them.
    now = datetime.now(UTC).astimezone()
    period = parse_month(f"{now:%Y-%m}", "UTC")
    rows = _rows(render(collect(store, period), "utf-8-sig"), "utf-8-sig")
    assert _find(rows, "audit", "release.request") == 1
    assert _find(rows, "audit", "original.read") == 1
    nov = _rows(render(collect(store, parse_month("2026-11", JST)), "cp932"), "cp932")
    assert _find(nov, "audit", "release.request") == 0
    assert _find(rows, "release", "pending") == 1


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "11-2026", "", "2026-00", "1969-12"])
def test_bad_month_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_month(bad, JST)


def test_top_senders_is_bounded(store: Store) -> None:
    for i in range(5):
        add_message(store, mail_from=f"s{i}@example.com", received_at=_at("2026-11-03T00:00:00"))
    rows = collect(store, parse_month("2026-11", JST), top_senders=3)
    assert len([r for r in rows if r[0] == "top_sender"]) == 3


def test_cli_writes_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[storage]\ndata_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    store_dir = tmp_path / "var"
    store_dir.mkdir()
    store = Store(f"sqlite:///{store_dir / 'mugai.db'}")
    store.create_schema()
    add_message(store, received_at=_at("2026-11-05T00:00:00"))
    store.close()
    out = tmp_path / "2026-11.csv"
    argv = ["report", "--month", "2026-11", "--encoding", "cp932", "--out", str(out)]
    assert main([*argv, "--config", str(cfg)]) == 0
    rows = _rows(out.read_bytes(), "cp932")
    assert _find(rows, "period", "2026-11") == 1
    assert not list(tmp_path.glob(".*.tmp*"))
    assert main(["report", "--month", "2026-13", "--config", str(cfg)]) == 2
    assert (
        main(["report", "--month", "2026-11", "--encoding", "latin-1", "--config", str(cfg)]) == 2
    )
