"""Issue 13 (5): size limits that agree. Configurations whose message/upload/watch limits
exceed the declared clamd stream limit are refused (check-config and start-up alike), and a
clamd size-limit reply quarantines as too_large_to_scan instead of retrying for days."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from gateway.api.server import start_admin
from gateway.settings import load_settings
from tests.plugins.clamd import Clamd
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("section", "key"),
    [("smtp", "max_message_bytes"), ("files", "max_bytes"), ("watch", "max_file_bytes")],
)
def test_limit_over_the_stream_limit_is_refused(section: str, key: str) -> None:
    def limits(value: int) -> dict[str, Any]:
        base: dict[str, dict[str, Any]] = {
            "clamav": {"max_stream_bytes": 1_000_000},
            "smtp": {"max_message_bytes": 1_000_000},
            "files": {"max_bytes": 1_000_000},
            "watch": {"max_file_bytes": 1_000_000},
        }
        base[section][key] = value
        return base

    with pytest.raises(pydantic.ValidationError, match=f"{section}.{key}.*max_stream_bytes"):
        load_settings(None, **limits(1_000_001))
    load_settings(None, **limits(1_000_000))  # equal is fine


def test_defaults_agree_with_the_shipped_clamd_conf() -> None:
    settings = load_settings(None)
    conf = (REPO / "config" / "clamd.conf").read_text()
    line = next(x for x in conf.splitlines() if x.startswith("StreamMaxLength "))
    value = line.split()[1]
    units = {"K": 1024, "M": 1024 * 1024}
    declared = int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)
    assert settings.clamav.max_stream_bytes == declared
    assert settings.files.max_bytes <= declared and settings.smtp.max_message_bytes <= declared


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_cli_refuses_disagreeing_limits(tmp_path: Path, command: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[clamav]\nmax_stream_bytes = 31457280\n[files]\nmax_bytes = 104857600\n"
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[smtp]\nlisten = "127.0.0.1:0"\n'
        '[admin]\nlisten = "127.0.0.1:0"\n',
        encoding="utf-8",
    )
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", command, "--config", str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert res.returncode != 0, res.stdout
    assert "files.max_bytes (104857600) exceeds clamav.max_stream_bytes" in res.stderr
    assert not (tmp_path / "data" / "spool").exists()  # refused before anything started


async def test_upload_over_clamd_limit_is_quarantined_too_large_to_scan(
    gateway_factory: Any, clamd_factory: Callable[..., Clamd]
) -> None:
    # The operator lowered clamd's StreamMaxLength without telling mugai: the real clamd
    # refuses the stream; the upload must end withheld at once, not retry for five days.
    # (Just over the limit: far over it, clamd's reset can beat its answer; then the job is
    # retried, which tests/scan/test_clamd.py covers.)
    small = clamd_factory(StreamMaxLength="256K", MaxFileSize="256K")
    gw = await gateway_factory(
        None,
        clamav={"address": small.unix_address},
        files={"max_bytes": 2_000_000},
    )
    admin = await start_admin(gw.settings, gw)
    token, _ = gw.store.create_token("tanaka", "operator", "test")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin.port}", timeout=60) as c:
            r = await c.post(
                "/api/v1/files", headers=headers, files={"file": ("big.txt", b"a" * 300_000)}
            )
            assert r.status_code == 202, r.text
            fid = r.json()["id"]

            def finished() -> Any:
                row = gw.store.get(fid)
                assert row is not None and row.status not in ("processing", "deferred"), row
                return row

            row = await eventually_async(finished, timeout=60, interval=0.2)
            assert row.status == "quarantined", row
            assert row.reasons == ["too_large_to_scan"] and row.attempts >= 1
            assert gw.store.blob(fid, "sanitized") is None
            info = (await c.get(f"/api/v1/files/{fid}", headers=headers)).json()
            assert info["status"] == "withheld", info
    finally:
        await admin.stop()


async def test_mail_over_clamd_limit_is_quarantined(
    gateway_factory: Any, clamd_factory: Callable[..., Clamd], smtp_sink: Any
) -> None:
    from tests.plugins.gateway import asend

    small = clamd_factory(StreamMaxLength="256K", MaxFileSize="256K")
    gw = await gateway_factory(smtp_sink, clamav={"address": small.unix_address})
    body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 300
    mid = (await asend(gw, body)).rsplit(" ", 1)[1]
    await eventually_async(lambda: gw.store.status(mid) == "quarantined", timeout=60, interval=0.2)
    row = gw.store.get(mid)
    assert row is not None and row.reasons == ["too_large_to_scan"], row
    assert not any(b"y" * 998 in m.data for m in smtp_sink.messages)  # never delivered


async def test_declared_limit_refuses_without_asking_clamd() -> None:
    from gateway.errors import TooLargeToScan
    from gateway.scan.clamd import ClamdScanner

    # Port 1: nothing listens; the declared limit decides before any connection.
    scanner = ClamdScanner("127.0.0.1:1", timeout=2, max_stream_bytes=1000)
    with pytest.raises(TooLargeToScan):
        await scanner.scan(b"x" * 1001)
