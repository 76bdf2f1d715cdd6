"""3. clamd down, confused or hanging: nothing delivered unscanned, jobs retried, readiness
false, and the SMTP listener keeps accepting while scans hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import clamd_outage, clamd_slow

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("mode", ["down", "garbage", "truncated", "close", "hang"])
async def test_clamd_trouble_means_retry_never_delivery(
    tmp_path: Path, clamd_address: str, mode: str
) -> None:
    row = await clamd_outage(tmp_path, clamd_address, count=4, mode=mode)
    print(row.as_dict())
    assert row.delivered_during_fault == 0, row
    assert row.reasons == [("clamd_unavailable",)], row
    assert row.readyz_during == 503 and row.checks_during == {"clamd": False}, row
    assert row.readyz_after == 200, row
    assert row.accepted == 4 and row.delivered == 4 and row.lost == 0, row


async def test_hanging_clamd_does_not_stall_the_listener(
    tmp_path: Path, clamd_address: str
) -> None:
    row = await clamd_slow(tmp_path, clamd_address, count=12)
    print(row.as_dict())
    assert row.accepted_during_fault == 6, row  # of the 6 sent while scans hung
    assert row.delivered_during_fault == 0, row
    assert row.lost == 0 and row.delivered == 12, row
