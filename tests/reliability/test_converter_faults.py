"""4. Converters that crash, hang, eat memory, write garbage or too much: each ends as a removed
part with its reason, the workers carry on, and no child process (soffice included) is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Action
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.office import OfficePool
from gateway.sanitize.registry import REGISTRY, sanitize_part
from gateway.settings import SanitizeSettings
from tests.reliability.fakes import (
    FAULTS,
    fault_sanitizer,
    orphan_soffice,
    settle,
    tiny_pdf,
    zombies_and_converters,
)
from tests.reliability.scenarios import EXPECTED_REASON, converter_faults

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_removes_the_part_with_its_reason(fault: str) -> None:
    # A custom registry dict: the real dispatch and output checks around one fault plugin.
    registry = {**REGISTRY, "pdf": fault_sanitizer}
    limits = SanitizeSettings()
    ctx = Context(limits=limits, pages=PageBudget(limits.max_pages_per_message))
    report, files = sanitize_part(
        tiny_pdf(), f"{fault}.pdf", "application/pdf", ctx, "2", registry=registry
    )
    assert files == ()
    assert report.action is Action.REMOVED
    assert report.reasons == (EXPECTED_REASON[fault],)
    assert settle(zombies_and_converters) == []


async def test_faults_through_the_whole_gateway(tmp_path: Path, clamd_address: str) -> None:
    row = await converter_faults(tmp_path, clamd_address, rounds=1)
    print(row.as_dict())
    assert row.accepted == len(FAULTS) + 1 and row.delivered == row.accepted, row
    assert row.lost == 0 and row.quarantined == 0, row
    assert row.wrong_outcomes == [], row
    assert row.processes_left == 0, row


RTF = rb"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Hello from a hanging converter.\par}"


@pytest.mark.parametrize("pool", [0, 1])
def test_real_libreoffice_timeout_leaves_no_soffice(pool: int) -> None:
    """Real soffice with a conversion limit too short to finish: killed, nothing left over."""
    before = orphan_soffice()
    limits = SanitizeSettings(office_pool=pool, min_seconds=0.2)
    office = OfficePool.from_settings(limits)
    try:
        ctx = Context(limits=limits, pages=PageBudget(100), office=office)
        report, files = sanitize_part(RTF, "slow.rtf", "application/rtf", ctx, "2")
    finally:
        office.close()
    # Whatever LibreOffice managed, nothing unsanitized passes and the part says why.
    if report.action is Action.REMOVED:
        assert report.reasons[0] in ("conversion_timeout", "conversion_failed"), report
    else:
        assert all(f.content_type == "application/pdf" for f in files)
    assert settle(lambda: orphan_soffice() - before) == set()
    assert settle(zombies_and_converters) == []
