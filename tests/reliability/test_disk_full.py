"""A full spool filesystem: 451 4.3.0, no partial files, and recovery when space returns."""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ingress.smtp import start_smtp
from gateway.settings import load_settings
from gateway.spool import Spool


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (needs root, as in CI and on the developers' machines)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.example.com")
        c.mail("a@example.com")
        c.rcpt("u@town.example.lg.jp")
        return c.data(data)


async def test_full_disk_tempfails_and_recovers(small_fs: Path) -> None:
    settings = load_settings(
        None,
        smtp={"listen": "127.0.0.1:0", "accepted_domains": ["town.example.lg.jp"]},
        storage={"data_dir": str(small_fs)},
    )
    spool = Spool(settings.spool_dir)
    server = await start_smtp(settings, spool, asyncio.Event())
    port = server.sockets[0].getsockname()[1]
    filler = small_fs / "filler"
    try:
        with open(filler, "wb") as fh:  # eat nearly all the space
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        message = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 200
        code, reply = await asyncio.to_thread(send, port, message)
        assert code == 451 and reply.startswith(b"4.3.0"), (code, reply)
        assert os.listdir(spool.tmp) == [] and os.listdir(spool.queue) == []
        os.unlink(filler)  # space returns
        code, reply = await asyncio.to_thread(send, port, message)
        assert code == 250, (code, reply)
        job = spool.claim()
        assert job is not None and job.read() == message
    finally:
        server.close()
        shutil.rmtree(small_fs / "spool", ignore_errors=True)
