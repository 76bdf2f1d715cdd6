"""Workers: claim spooled jobs, run the pipeline, carry out the outcome.

Every claimed job ends in exactly one of: delivered, retry scheduled,
quarantined. One catch-all turns any unexpected exception into quarantine
with reason ``internal_error``; nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import zipfile
from dataclasses import replace
from typing import Any

from gateway.errors import (
    Permanent,
    RelayRejected,
    RelayTemporary,
    ScannerUnavailable,
    SpoolError,
    Transient,
)
from gateway.ingress.watch import deliver_watch_result
from gateway.metrics import CLAMD_ERRORS, JOBS, REASONS, RELAY_ERRORS, STAGE_SECONDS
from gateway.mime.notice import render_withheld_notice
from gateway.mime.rebuild import build_withheld_notice
from gateway.model import CleanFile
from gateway.pipeline import Deliver, MessageReport, Pipeline, Quarantine
from gateway.relay import Relay
from gateway.settings import Settings
from gateway.spool import Job, Spool
from gateway.store.repository import FINAL_STATUSES, Store, jsonable

log = logging.getLogger(__name__)


def _report_fields(report: MessageReport) -> dict[str, Any]:
    """The report as the store's keyword arguments (record_report, report_values)."""
    return {
        "parts": report.parts,
        "tokens": report.tokens,
        "subject": report.subject,
        "message_id": report.message_id,
        "header_from": report.header_from,
        "scan": report.scan,
        "timings": report.timings,
    }


def _observe(timings: dict[str, float]) -> None:
    for stage, seconds in timings.items():
        STAGE_SECONDS.labels(stage).observe(seconds)


def bundle_files(files: tuple[CleanFile, ...]) -> bytes:
    """One file as is; several (an unpacked archive) as a zip with unique UTF-8 names."""
    if len(files) == 1:
        return files[0].data
    buf = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            name, n = f.filename, 1
            while name in used:
                n += 1
                stem, dot, ext = f.filename.rpartition(".")
                name = f"{stem}-{n}.{ext}" if dot else f"{f.filename}-{n}"
            used.add(name)
            zf.writestr(name, f.data)
    return buf.getvalue()


class Worker:
    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        store: Store,
        pipeline: Pipeline,
        relay: Relay,
        wakeup: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.store = store
        self.pipeline = pipeline
        self.relay = relay
        self.wakeup = wakeup
        self._stopping = False
        self.processed = 0
        self._relay_failing = False

    # -- loop ---------------------------------------------------------------------
    async def run(self, concurrency: int) -> None:
        tasks = [asyncio.create_task(self._loop(i)) for i in range(concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    def stop(self) -> None:
        self._stopping = True
        self.wakeup.set()

    async def _loop(self, slot: int) -> None:
        while not self._stopping:
            try:
                job = await asyncio.to_thread(self.spool.claim)
            except SpoolError as exc:
                log.error("job=- claim failed: %s", exc.detail)
                job = None
            if job is None:
                await self._sleep()
                continue
            await self.handle(job)

    async def _sleep(self) -> None:
        due = await asyncio.to_thread(self.spool.next_due)
        timeout = 5.0 if due is None else max(0.05, min(5.0, due - time.time()))
        self.wakeup.clear()
        try:
            await asyncio.wait_for(self.wakeup.wait(), timeout)
        except TimeoutError:
            pass

    # -- one job -----------------------------------------------------------------
    async def handle(self, job: Job) -> None:
        jid = job.id
        try:
            raw = await asyncio.to_thread(job.read)
            status = await asyncio.to_thread(self.store.record_received, job.meta, raw)
            if status in FINAL_STATUSES:
                # Recovered after a crash that happened after the outcome was recorded.
                log.info("job=%s already %s; spool copy removed", jid, status)
                await asyncio.to_thread(self.spool.done, job)
                return
            if job.meta.kind == "file":
                await self._handle_file(job, raw)
                return
            outcome = await self.pipeline.process(job.meta, raw)
            if isinstance(outcome, Quarantine):
                await self._quarantine(job, outcome.reason, outcome.detail, outcome.report)
                return
            await self._deliver(job, outcome)
        except Transient as exc:
            await self._retry(job, exc)
        except Permanent as exc:
            await self._quarantine(job, exc.reason, exc.detail, None)
        except Exception as exc:  # noqa: BLE001 - the one catch-all: fail closed, keep the job
            log.exception("job=%s internal error", jid)
            try:
                await self._quarantine(job, "internal_error", type(exc).__name__, None)
            except Exception:  # noqa: BLE001
                # Even the store failed: keep the job in the spool and try again later.
                log.exception("job=%s could not quarantine; deferring", jid)
                await asyncio.to_thread(self.spool.defer, job, time.time() + 60)
        finally:
            self.processed += 1

    async def _handle_file(self, job: Job, raw: bytes) -> None:
        result = await self.pipeline.process_file(job.meta, raw)
        parts = (result.part,) if result.part is not None else ()
        status = "done" if result.files else "withheld"
        reasons = [result.reason] if result.reason else []
        blob = bundle_files(result.files) if result.files else None
        report = MessageReport(
            parts=parts,
            tokens=("CONV_ATTACH",) if result.files else ("DEL_ATTACH",),
            scan=result.scan,
            timings=result.timings,
        )
        await asyncio.to_thread(
            self.store.mark_file_result,
            job.id,
            status=status,
            reasons=reasons,
            sanitized=blob,
            attempts=job.meta.attempts + 1,
            report=Store.report_values(**_report_fields(report)),
        )
        if job.meta.extra.get("source") == "watch" and self.settings.watch.outbox is not None:
            summary = {
                "id": job.id,
                "file": job.meta.extra.get("relpath", job.meta.filename),
                "status": status,
                "reasons": reasons,
                "outputs": [f.filename for f in result.files],
                "part": jsonable(result.part) if result.part else None,
            }
            await asyncio.to_thread(
                deliver_watch_result, self.settings.watch, job.meta, raw, result.files, summary
            )
        await asyncio.to_thread(self.spool.done, job)
        JOBS.labels(status).inc()
        _observe(result.timings)
        log.info("job=%s file %s outputs=%d", job.id, status, len(result.files))

    async def _record_report(self, job: Job, report: MessageReport) -> None:
        _observe(report.timings)
        await asyncio.to_thread(self.store.record_report, job.id, **_report_fields(report))

    async def _deliver(self, job: Job, outcome: Deliver) -> None:
        meta = job.meta
        started = time.monotonic()
        try:
            result = await self.relay.send(meta.mail_from, meta.rcpt_tos, outcome.data)
        except (RelayTemporary, RelayRejected) as exc:
            kind = "temporary" if isinstance(exc, RelayTemporary) else "rejected"
            RELAY_ERRORS.labels(kind).inc()
            self._relay_failing = self._relay_failing or isinstance(exc, RelayTemporary)
            # Not delivered now: keep the report so operators find it (e.g. by Message-ID).
            await self._record_report(job, outcome.report)
            raise
        STAGE_SECONDS.labels("relay").observe(time.monotonic() - started)
        if self._relay_failing and result.accepted:
            # The relay is back: retry what waited now, oldest first, to keep the order of
            # arrival rather than each job's own retry time.
            self._relay_failing = False
            moved = await asyncio.to_thread(self.spool.expedite)
            if moved:
                log.info("job=%s relay back; %d deferred jobs retried now", job.id, moved)
                self.wakeup.set()
        if result.deferred and (result.accepted or result.rejected):
            # Only some recipients failed for now: retry just those.
            narrowed = replace(job.meta, rcpt_tos=tuple(result.deferred))
            job = replace(job, meta=narrowed)
            log.info("job=%s partially delivered; %d deferred", job.id, len(result.deferred))
        if result.deferred or (result.rejected and not result.accepted):
            await self._record_report(job, outcome.report)
        if result.deferred:
            await self._retry(job, RelayTemporary("; ".join(result.deferred.values())))
            return
        if result.rejected and not result.accepted:
            raise RelayRejected("; ".join(result.rejected.values()))
        _observe(outcome.report.timings)
        values = Store.report_values(**_report_fields(outcome.report))
        await asyncio.to_thread(
            self.store.mark_delivered, job.id, outcome.data, job.meta.attempts + 1, values
        )
        await asyncio.to_thread(self.spool.done, job)
        JOBS.labels("delivered").inc()
        log.info("job=%s delivered rcpts=%d", job.id, len(result.accepted))

    async def _quarantine(
        self, job: Job, reason: str, detail: str, report: MessageReport | None
    ) -> None:
        values = None
        if report is not None and (report.parts or report.subject or report.message_id
                                   or report.header_from):  # fmt: skip
            _observe(report.timings)
            values = Store.report_values(**_report_fields(report))
        await asyncio.to_thread(
            self.store.mark_quarantined,
            job.id,
            reason,
            detail,
            job.meta.attempts + 1,
            report.scan if report else None,
            values,  # one transaction: a quarantined record is never without its headers
        )
        if self.settings.notice.withheld_notice and job.meta.kind == "mail":
            await self._notify_withheld(job, reason, report)
        await asyncio.to_thread(self.spool.done, job)
        JOBS.labels("quarantined").inc()
        REASONS.labels(reason).inc()
        log.warning("job=%s quarantined reason=%s", job.id, reason)

    async def _notify_withheld(self, job: Job, reason: str, report: MessageReport | None) -> None:
        text = render_withheld_notice(
            job.id, reason, self.settings.notice.contact,
            sender=report.header_from if report else "",
            subject=report.subject if report else "", date=report.date if report else "",
        )  # fmt: skip
        data = build_withheld_notice(
            mail_from=f"postmaster@{self.settings.smtp.hostname}",
            rcpt=job.meta.rcpt_tos,
            text=text,
            mugai_id=job.id,
            hostname=self.settings.smtp.hostname,
        )
        try:
            await self.relay.send("", job.meta.rcpt_tos, data)
        except Exception as exc:  # noqa: BLE001 - the notice is best effort; the quarantine stands
            log.warning("job=%s withheld notice not sent: %s", job.id, type(exc).__name__)

    async def _retry(self, job: Job, exc: Transient) -> None:
        if isinstance(exc, ScannerUnavailable):
            CLAMD_ERRORS.inc()
        age = time.time() - job.meta.received_at
        delivery = self.settings.delivery
        if age >= delivery.max_queue_lifetime:
            reason = "relay_timeout" if isinstance(exc, RelayTemporary) else "queue_timeout"
            await self._quarantine(job, reason, exc.detail, None)
            return
        schedule = delivery.retry_schedule
        wait = schedule[min(job.meta.attempts, len(schedule) - 1)]
        due = min(time.time() + wait, job.meta.received_at + delivery.max_queue_lifetime)
        await asyncio.to_thread(
            self.store.mark_deferred, job.id, exc.reason, exc.detail, job.meta.attempts + 1
        )
        await asyncio.to_thread(self.spool.defer, job, due)
        JOBS.labels("deferred").inc()
        REASONS.labels(exc.reason).inc()
        log.info("job=%s deferred reason=%s wait=%.0fs", job.id, exc.reason, wait)
