"""kill -9 of a real `mugai serve` leaves no LibreOffice/converter process (issue 13 item 6),
and start-up removes what a previous run of the same instance left behind."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.e2e.test_restart import GatewayProcess, write_config
from tests.waiting import eventually, settle

pytestmark = pytest.mark.timeout(300)


def _tag(data_dir: Path) -> bytes:
    real = os.path.realpath(data_dir)
    return f"MUGAI_INSTANCE={hashlib.sha256(real.encode()).hexdigest()[:16]}".encode()


def _tagged(marker: bytes) -> dict[int, str]:
    """pid → comm of every live process carrying this instance's tag."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X"):
            continue
        if marker in environ.split(b"\0"):
            found[int(entry)] = comm
    return found


def _wait_for_soffice(marker: bytes) -> dict[int, str]:
    def started() -> dict[int, str]:
        procs = _tagged(marker)
        assert "soffice.bin" in procs.values(), procs
        return procs

    return eventually(
        started, timeout=90, interval=0.2, what="the warm LibreOffice listener started"
    )


def _wait_gone(marker: bytes, wait: float = 20.0) -> dict[int, str]:
    return settle(lambda: _tagged(marker), timeout=wait)


def _config(tmp_path: Path, clamd: str, isolation: str) -> tuple[Path, Path]:
    data = tmp_path / "var"
    cfg = tmp_path / "gateway.toml"
    write_config(cfg, data, "", clamd)
    text = cfg.read_text().replace("office_pool = 0", "office_pool = 1")
    cfg.write_text(text + f'network_isolation = "{isolation}"\n')
    return cfg, data


def test_kill9_of_serve_leaves_no_libreoffice(tmp_path: Path, clamd_address: str) -> None:
    cfg, data = _config(tmp_path, clamd_address, "required")
    gw = GatewayProcess(cfg, tmp_path / "serve.log")
    marker = _tag(data)
    try:
        procs = _wait_for_soffice(marker)
        assert "bwrap" in procs.values()  # the listener runs in its jail
    finally:
        gw.kill9()
    assert _wait_gone(marker) == {}, "converter processes outlived the gateway"


def test_startup_reaps_leftovers_of_a_previous_run(tmp_path: Path, clamd_address: str) -> None:
    # Without the jail (the operator's "off"), a killed gateway's soffice is orphaned...
    cfg, data = _config(tmp_path, clamd_address, "off")
    marker = _tag(data)
    first = GatewayProcess(cfg, tmp_path / "first.log")
    try:
        _wait_for_soffice(marker)
    finally:
        first.kill9()
    time.sleep(1.0)
    orphans = {pid for pid, comm in _tagged(marker).items() if comm == "soffice.bin"}
    assert orphans, "expected an orphaned soffice to exist without the jail"
    # ...and the next start of the same instance kills it before starting its own.
    second = GatewayProcess(cfg, tmp_path / "second.log")
    try:
        eventually(lambda: not set(_tagged(marker)) & orphans, timeout=30)
        assert "left by a previous run" in (tmp_path / "second.log").read_text(errors="replace")
    finally:
        second.kill9()
        # Clean up after "off" ourselves: kill whatever the second run left.
        for pid in _tagged(marker):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
