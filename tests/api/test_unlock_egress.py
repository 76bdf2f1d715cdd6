"""PPAP unlock goes through the same last gate as every delivery (issue 10 item 4): the new
message is checked before the relay sees it. Simulated here by a disarmer bug in the unlock
intro (which quotes the sender's file name): the checker refuses, nothing is delivered."""

from __future__ import annotations

import pytest

import gateway.unlock
from gateway.mime.defang import Disarmed
from tests.api.test_unlock import MEMBERS, PASSWORD, Ppap, audit_rows, deliver_ppap, ppap  # noqa: F401
from tests.unlock.ppap import zipcrypto_zip

pytestmark = pytest.mark.timeout(300)


async def test_unlock_is_refused_by_the_egress_gate(
    ppap: Ppap,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mid, part = await deliver_ppap(
        ppap, zipcrypto_zip(MEMBERS, PASSWORD), filename="evil-corp.me.zip"
    )
    monkeypatch.setattr(gateway.unlock, "disarm", lambda text: Disarmed(text, 0))
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "egress_live_link"
    assert len(ppap.sink.messages) == 1  # only the first (attachment withheld) delivery
    result = audit_rows(ppap, mid)[-1][1]
    assert result["outcome"] == "egress_live_link"
