"""Watched folder: inbox → spool → sanitizers → outbox / failed, with a real gateway."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pydantic import ValidationError

from gateway.ingress.watch import FolderWatcher
from gateway.settings import WatchSettings, load_settings
from gateway.spool import Spool
from tests.checks import check_clean_file, pdf_active_keys
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(180)


def js_pdf() -> bytes:
    """A one-page PDF that runs JavaScript when opened (built here, licence-clean)."""
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    js = pdf.make_indirect(
        pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('x')"))
    )
    pdf.Root.OpenAction = js
    buf = io.BytesIO()
    pdf.save(buf)
    data = buf.getvalue()
    assert "/OpenAction" in pdf_active_keys(data)
    return data


def folders(tmp: Path) -> WatchSettings:
    return WatchSettings(inbox=tmp / "in", outbox=tmp / "out", failed=tmp / "failed", interval=0.1)


def test_overlapping_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        WatchSettings(inbox=tmp_path / "a", outbox=tmp_path / "a" / "out")
    with pytest.raises(ValidationError):
        WatchSettings(inbox=tmp_path / "a", outbox=tmp_path / "b", failed=tmp_path / "a")
    with pytest.raises(ValidationError):
        load_settings(None, watch={"inbox": str(tmp_path / "x")})  # outbox missing


def test_only_stable_regular_files_are_taken(tmp_path: Path) -> None:
    settings = folders(tmp_path)
    spool = Spool(tmp_path / "spool")
    watcher = FolderWatcher(settings, spool, asyncio.Event())
    inbox = tmp_path / "in"
    (inbox / "a.txt").write_bytes(b"hello")
    (inbox / ".hidden").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the inbox")
    os.symlink(secret, inbox / "link.txt")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "b.csv").write_bytes(b"a,b\n")
    assert watcher.poll_once() == []  # first sight: maybe still growing
    with open(inbox / "a.txt", "ab") as fh:
        fh.write(b" world")  # grew: wait again
    os.utime(inbox / "a.txt", ns=(time.time_ns(), time.time_ns() + 10_000_000))
    taken = watcher.poll_once()
    assert len(taken) == 1  # sub/b.csv is stable now; a.txt changed
    taken += watcher.poll_once()
    assert len(taken) == 2
    names = set()
    while (job := spool.claim()) is not None:
        names.add(job.meta.extra["relpath"])
        assert job.meta.kind == "file"
        spool.done(job)
    assert names == {"a.txt", "sub/b.csv"}
    assert not (inbox / "a.txt").exists()
    assert (inbox / "link.txt").is_symlink() and secret.exists()  # never followed nor taken
    assert (inbox / ".hidden").exists()


async def wait_for(predicate: Any, timeout: float = 90) -> None:
    await eventually_async(predicate, timeout=timeout)


async def test_dropped_files_come_out_rebuilt(gateway_factory: Any, tmp_path: Path) -> None:
    w = tmp_path / "w"
    gw = await gateway_factory(
        None,
        watch={"inbox": str(w / "in"), "outbox": str(w / "out"), "failed": str(w / "failed"),
               "interval": "0.1s"},
    )  # fmt: skip
    (w / "in" / "案内.pdf").write_bytes(js_pdf())
    (w / "in" / "メモ.txt").write_bytes("①髙﨑の件".encode("cp932"))
    (w / "in" / "tool.exe").write_bytes(
        b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 100
    )
    out, failed = w / "out", w / "failed"
    await wait_for(lambda: len(list(out.glob("*.report.json"))) == 2
                   and len(list(failed.glob("*.report.json"))) == 1)  # fmt: skip
    pdf = (out / "案内.pdf").read_bytes()
    check_clean_file("application/pdf", pdf)
    assert (out / "メモ.txt").read_text(encoding="utf-8") == "①髙﨑の件"
    report = json.loads((out / "案内.pdf.report.json").read_text(encoding="utf-8"))
    assert report["status"] == "done" and report["outputs"] == ["案内.pdf"]
    bad = json.loads((failed / "tool.exe.report.json").read_text(encoding="utf-8"))
    assert bad["status"] == "withheld" and bad["reasons"]
    assert (failed / "tool.exe").exists()  # the original stays on the Internet side
    assert not any(out.glob("*.exe"))
    assert list((w / "in").iterdir()) == []
    row = await asyncio.to_thread(gw.store.get, report["id"])
    assert row is not None and row.status == "done" and row.kind == "file"


async def test_report_names_go_through_the_name_cleaner(
    gateway_factory: Any, tmp_path: Path
) -> None:
    w = tmp_path / "w"
    await gateway_factory(
        None,
        watch={"inbox": str(w / "in"), "outbox": str(w / "out"), "failed": str(w / "failed"),
               "interval": "0.1s"},
    )  # fmt: skip
    # RLO makes "請求書\u202etxt.exe" read as "請求書exe.txt"; CR/LF would split report lines.
    (w / "in" / "請求書\u202etxt.exe\r\nX.txt").write_bytes("本文".encode())
    out = w / "out"
    await wait_for(lambda: len(list(out.glob("*.report.json"))) == 1)
    names = [p.name for p in out.iterdir()]
    for name in names:
        assert "\u202e" not in name and "\r" not in name and "\n" not in name, names
    (report,) = [n for n in names if n.endswith(".report.json")]
    assert report == "請求書txt.exeX.txt.report.json"
