"""2. Relay absent, then answering 451, then back; and expiry after max_queue_lifetime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import relay_expiry, relay_outage

pytestmark = pytest.mark.timeout(300)


async def test_everything_accepted_during_an_outage_is_delivered(
    tmp_path: Path, clamd_address: str
) -> None:
    row = await relay_outage(tmp_path, clamd_address, count=24)
    print(row.as_dict())
    assert row.accepted == 24 and row.delivered == 24, row
    assert row.lost == 0 and row.duplicated == 0 and row.quarantined == 0, row
    assert row.delivered_during_fault == 0, row
    assert row.backscatter == 0, row


async def test_order_of_arrival_with_one_worker_is_reported(
    tmp_path: Path, clamd_address: str
) -> None:
    # With one worker the retries run oldest first (spool ids are time-ordered), but a mail can
    # overtake another when the relay comes back between two of their retries: the order is
    # kept "where possible" and reported (docs/reliability.md), not guaranteed.
    row = await relay_outage(tmp_path, clamd_address, count=12, workers=1)
    print(row.as_dict())
    assert row.lost == 0 and row.delivered == 12 and row.duplicated == 0, row
    assert row.in_order is not None and 0 <= row.in_order <= 3, row  # reported, not promised


async def test_queue_lifetime_expiry_quarantines_a_burst(
    tmp_path: Path, clamd_address: str
) -> None:
    row = await relay_expiry(tmp_path, clamd_address, count=10)
    print(row.as_dict())
    assert row.accepted == 10 and row.quarantined == 10 and row.delivered == 0, row
    assert row.lost == 0
    assert row.reasons == [("relay_timeout",)], row
    assert row.spool_left == 0, row
    assert row.backscatter == 0, row
