"""The rebuilt mail can be larger than the original (rendered pages): when clamd refuses to
scan it, the mail is quarantined as too_large_to_scan with its identity (subject, sender),
so the record and the withheld notice still say which mail it was."""

from __future__ import annotations

from email.message import EmailMessage

from gateway.errors import TooLargeToScan
from gateway.model import ScanResult
from gateway.pipeline import Pipeline, Quarantine
from gateway.settings import load_settings
from gateway.spool import JobMeta, new_id


class _OriginalOnly:
    def __init__(self) -> None:
        self.calls = 0

    async def scan(self, data: bytes) -> ScanResult:
        self.calls += 1
        if self.calls > 1:
            raise TooLargeToScan(f"{len(data)} bytes over clamd's StreamMaxLength")
        return ScanResult(clean=True)


async def test_output_too_large_to_scan_is_quarantined_with_its_report() -> None:
    m = EmailMessage()
    m["From"] = "Taro <taro@example.com>"
    m["To"] = "b@town.example.lg.jp"
    m["Subject"] = "見積書"
    m.set_content("本文")
    pipeline = Pipeline(load_settings(None), _OriginalOnly())
    try:
        rcpt = ("b@town.example.lg.jp",)
        meta = JobMeta(id=new_id(), kind="mail", mail_from="taro@example.com", rcpt_tos=rcpt)
        outcome = await pipeline.process(meta, m.as_bytes())
    finally:
        pipeline.close()
    assert isinstance(outcome, Quarantine)
    assert outcome.reason == "too_large_to_scan"
    assert outcome.report.subject == "見積書" and "taro@example.com" in outcome.report.header_from
