"""1. kill -9 during a burst of several hundred mails, twice: nothing acknowledged is lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.scenarios import crash_burst

LONG = os.environ.get("MUGAI_LONG") == "1"
pytestmark = pytest.mark.timeout(900 if LONG else 400)


async def test_kill9_mid_burst_loses_nothing(tmp_path: Path, clamd_address: str) -> None:
    row = await crash_burst(tmp_path, clamd_address, total=1500 if LONG else 300, kills=2)
    print(row.as_dict())
    assert row.accepted >= 100, row  # the burst must be big enough to mean something
    assert row.lost == 0, row
    assert row.quarantined == 0, row
    # A duplicate needs a kill between the relay's 250 and our record: at most one per worker.
    assert row.duplicated <= 2 * 4, row
    assert row.backscatter == 0, row
