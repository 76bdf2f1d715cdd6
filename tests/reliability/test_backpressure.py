"""5. With the workers stalled, the backlog bound answers 451 instead of growing the spool;
the gateway accepts again once it has drained. (Disk full: test_disk_full.py and below.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.scenarios import backpressure, disk_full

pytestmark = pytest.mark.timeout(300)


async def test_backlog_bound_end_to_end(tmp_path: Path, clamd_address: str) -> None:
    row = await backpressure(tmp_path, clamd_address, count=12, backlog=5)
    print(row.as_dict())
    assert row.accepted == 6, row  # 5 up to the bound, 1 after draining
    assert row.refused_451 == 7 and row.other_codes == [], row
    assert row.spool_during_fault == 5, row
    assert row.accepted_after_fault is True, row
    assert row.delivered == 6 and row.lost == 0, row


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_whole_gateway_on_a_full_disk(tmp_path: Path, clamd_address: str) -> None:
    row = await disk_full(tmp_path, clamd_address, count=6)
    if row is None:
        pytest.skip("cannot mount a tmpfs here")
    print(row.as_dict())
    assert row.refused_451 == 6, row
    assert row.partial_spool_files == 0, row
    assert row.accepted == 6 and row.delivered == 6 and row.lost == 0, row
