"""`mugai sanitize` scans like the gateway (issue 12 item 7), attacked as an operator would.

- EICAR as a file, inside a message and inside a zip: exit 1, nothing written but the report;
- clamd unreachable: exit 3 "cannot scan", no output for the unscanned input;
- ``--no-scan``: every item says ``unscanned`` and the run is never ``all_clean``;
- a hostile file name cannot drive the terminal in the human summary;
- ``| head`` closing stdout early: no traceback, the exit code survives.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plugins.clamd import EICAR, EICAR_SIGNATURE, Clamd, free_tcp_port
from tests.test_cli import REPO, mugai, scan_config

pytestmark = pytest.mark.timeout(300)

TEXT = "請求書の本文です。\n".encode()


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "report.json")


def test_eicar_file_exits_one_and_writes_only_the_report(
    tmp_path: Path, clamd_address: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "eicar.txt").write_bytes(EICAR)  # text: would otherwise pass as is
    out = tmp_path / "out"
    cfg = scan_config(tmp_path, clamd_address)
    res = mugai("sanitize", str(tmp_path / "in"), "--out", str(out), "--json", "--config", cfg)
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    assert report["all_clean"] is False
    (item,) = report["items"]
    assert item["status"] == "withheld"
    assert item["scan"] == {"status": "infected", "signature": EICAR_SIGNATURE}
    assert item["reasons"] == ["virus_found"] and item["outputs"] == []
    assert _outputs(out) == []
    assert json.loads((out / "report.json").read_text(encoding="utf-8")) == report


def test_eicar_in_message_and_zip_among_clean_files(tmp_path: Path, clamd_address: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a_clean.txt").write_bytes(TEXT)
    (src / "b_mail.eml").write_bytes(
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--B\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="v.com"\r\n\r\n' + EICAR + b"\r\n--B--\r\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "ok")
        zf.writestr("inner/eicar.txt", EICAR)
    (src / "c_archive.zip").write_bytes(buf.getvalue())
    out = tmp_path / "out"
    cfg = scan_config(tmp_path, clamd_address)
    res = mugai("sanitize", str(src), "--out", str(out), "--json", "--config", cfg)
    assert res.returncode == 1, res.stderr
    items = {Path(i["input"]).name: i for i in json.loads(res.stdout)["items"]}
    assert items["a_clean.txt"]["status"] == "sanitized"
    assert items["a_clean.txt"]["scan"]["status"] == "clean"
    for name in ("b_mail.eml", "c_archive.zip"):
        assert items[name]["status"] == "withheld", name
        assert items[name]["scan"]["status"] == "infected", name
    assert _outputs(out) == ["a_clean.txt"]  # nothing of the infected inputs, in any form
    assert EICAR not in (out / "a_clean.txt").read_bytes()


def test_clamd_unreachable_exits_three_and_writes_nothing_unscanned(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "clean.txt").write_bytes(TEXT)
    out = tmp_path / "out"
    cfg = scan_config(tmp_path, f"127.0.0.1:{free_tcp_port()}")  # nobody listens
    for extra in ([], ["--json"]):
        res = mugai("sanitize", str(src), "--out", str(out), "--config", cfg, *extra)
        assert res.returncode == 3, res.stderr
        assert "cannot scan" in res.stderr
        assert "Traceback" not in res.stderr
        assert _outputs(out) == []
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        assert report["all_clean"] is False and report["scanned"] is False
        assert report["items"][0]["status"] == "cannot_scan"


def test_clamd_unix_socket_missing_exits_three(tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_bytes(TEXT)
    cfg = scan_config(tmp_path, f"unix:{tmp_path / 'no.sock'}")
    res = mugai(
        "sanitize", str(tmp_path / "clean.txt"), "--out", str(tmp_path / "o"), "--config", cfg
    )
    assert res.returncode == 3, res.stderr
    assert not (tmp_path / "o" / "clean.txt").exists()


def test_no_scan_says_unscanned_and_never_all_clean(tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_bytes(TEXT)
    out = tmp_path / "out"
    cfg = scan_config(tmp_path, f"127.0.0.1:{free_tcp_port()}")  # would fail if asked
    res = mugai("sanitize", str(tmp_path / "clean.txt"), "--out", str(out), "--config", cfg,
                "--no-scan", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["all_clean"] is False and report["scanned"] is False
    assert report["all_sanitized"] is True
    assert [i["scan"]["status"] for i in report["items"]] == ["unscanned"]
    assert _outputs(out) == ["clean.txt"]
    human = mugai("sanitize", str(tmp_path / "clean.txt"), "--out", str(out), "--config", cfg,
                  "--no-scan")  # fmt: skip
    assert human.returncode == 0
    assert "unscanned" in human.stdout


def test_human_summary_one_line_per_input_and_hostile_names_escaped(
    tmp_path: Path, clamd_address: str
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "clean.txt").write_bytes(TEXT)
    (src / "evil\u202etxt.exe").write_bytes(EICAR)
    (src / "setup.exe").write_bytes(b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 100)
    cfg = scan_config(tmp_path, clamd_address)
    res = mugai("sanitize", str(src), "--out", str(tmp_path / "out"), "--config", cfg)
    assert res.returncode == 1, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3, res.stdout
    by_name = {
        next(n for n in ("clean.txt", "evil", "setup.exe") if n in line): line for line in lines
    }
    assert by_name["clean.txt"].startswith("sanitized\t") and "reasons=-" in by_name["clean.txt"]
    assert by_name["evil"].startswith("withheld\t") and "virus_found" in by_name["evil"]
    assert EICAR_SIGNATURE in by_name["evil"]
    assert "\u202e" not in res.stdout and "\\u202e" in by_name["evil"]
    assert by_name["setup.exe"].startswith("withheld\t")
    assert "unsupported_type" in by_name["setup.exe"] or "type_mismatch" in by_name["setup.exe"]


@pytest.mark.parametrize("reader", ["head -n 1", "true"])  # true: closed before the first write
@pytest.mark.parametrize("json_flag", ["--json", ""])
def test_closed_stdout_piped_into_head(
    tmp_path: Path, clamd_address: str, json_flag: str, reader: str
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / f"note{i:02}.txt").write_bytes(TEXT)
    (src / "zz_eicar.txt").write_bytes(EICAR)
    cfg = scan_config(tmp_path, clamd_address)
    script = (
        f"{sys.executable} -m gateway.cli sanitize {src} --out {tmp_path / 'out'} "
        f'--config {cfg} {json_flag} | {reader}; echo "rc=${{PIPESTATUS[0]}}" >&2'
    )
    res = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=280
    )
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert "rc=1" in res.stderr  # the virus still decides the exit code, output or not
    assert len(res.stdout.splitlines()) == (1 if reader.startswith("head") else 0)
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert len(report["items"]) == 4  # the run finished; only the printing was cut


def test_file_over_clamd_stream_limit_is_cannot_scan_not_clean(
    tmp_path: Path, clamd_factory: Callable[..., Clamd]
) -> None:
    small = clamd_factory(StreamMaxLength="1K")
    (tmp_path / "big.txt").write_bytes(TEXT * 400)  # ~12 KiB: clamd refuses to look at it
    cfg = scan_config(tmp_path, small.unix_address)
    res = mugai("sanitize", str(tmp_path / "big.txt"), "--out", str(tmp_path / "o"),
                "--config", cfg)  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert "StreamMaxLength" in res.stderr and "did not scan" in res.stderr
    assert not (tmp_path / "o" / "big.txt").exists()


def test_clamd_refusing_mid_run_stops_there_and_never_says_clean(
    tmp_path: Path, clamd_factory: Callable[..., Clamd]
) -> None:
    small = clamd_factory(StreamMaxLength="1K")
    src = tmp_path / "in"
    src.mkdir()
    (src / "a_small.txt").write_bytes(TEXT)  # scanned, clean, written
    (src / "b_big.txt").write_bytes(TEXT * 400)  # clamd refuses it: the run stops here
    (src / "c_small.txt").write_bytes(TEXT)  # never reached
    out = tmp_path / "o"
    cfg = scan_config(tmp_path, small.unix_address)
    res = mugai("sanitize", str(src), "--out", str(out), "--json", "--config", cfg)
    assert res.returncode == 3, res.stderr
    assert res.stdout == ""  # no report on stdout that a tool could take for a result
    assert _outputs(out) == ["a_small.txt"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["all_clean"] is False and report["all_sanitized"] is False
    assert [(i["input"].rsplit("/", 1)[-1], i["status"]) for i in report["items"]] == [
        ("a_small.txt", "sanitized"),
        ("b_big.txt", "cannot_scan"),
    ]
