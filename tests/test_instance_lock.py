"""One `mugai serve` per data directory: a second one, started by mistake, must refuse before
it touches anything (its spool recovery would move the first one's claimed jobs back to the
queue, counted as crashes, and both would deliver them; its start-up reaps the converters)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app import InstanceLocked, lock_instance, serve
from gateway.settings import load_settings
from gateway.spool import JobMeta, Spool, new_id


def test_a_second_instance_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    first = lock_instance(tmp_path)
    try:
        with pytest.raises(InstanceLocked, match="another mugai serve"):
            lock_instance(tmp_path)
    finally:
        first.close()
    lock_instance(tmp_path).close()  # free again once the first one ended


def test_serve_refuses_before_recovering_the_spool(tmp_path: Path) -> None:
    settings = load_settings(None, storage={"data_dir": str(tmp_path)})
    spool = Spool(settings.spool_dir)
    spool.put(JobMeta(id=new_id(), kind="mail", rcpt_tos=("u@town.example.lg.jp",)), b"x")
    job = spool.claim()  # the first instance is handling it
    assert job is not None
    held = lock_instance(tmp_path)
    try:
        with pytest.raises(InstanceLocked):
            asyncio.run(serve(settings))
    finally:
        held.close()
    assert job.path.exists()  # still the first instance's, uncounted
    assert spool.depth() == 1 and not any(spool.queue.iterdir())
