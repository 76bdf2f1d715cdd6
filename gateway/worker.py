"""Workers: claim spooled jobs, run the pipeline, carry out the outcome.

Every claimed job ends in exactly one of: delivered, retry scheduled,
quarantined. One catch-all turns any unexpected exception into quarantine
with reason ``internal_error``; nothing is ever dropped.

Handling is total (issue 13): the whole of a job, recording its retry or quarantine
included, runs under one guard. When the store cannot record an outcome (disk full, a
locked database, PostgreSQL gone), the job goes back to the spool with a delay through the
file system alone and the failure is counted and shown by ``/readyz``; no exception ends a
worker slot, and a slot that dies anyway is restarted with back-off by its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from gateway.egress.check import check_message
from gateway.errors import (
    CrashLoop,
    EgressRefused,
    Permanent,
    RelayRejected,
    RelayTemporary,
    ScannerUnavailable,
    SpoolError,
    Transient,
)
from gateway.ingress.watch import deliver_watch_result
from gateway.metrics import (
    CLAMD_ERRORS,
    CRASH_LOOPS,
    JOBS,
    OUTCOME_FAILURES,
    REASONS,
    RELAY_ERRORS,
    STAGE_SECONDS,
    WORKER_RESTARTS,
)
from gateway.mime.notice import render_withheld_notice
from gateway.mime.rebuild import build_withheld_notice
from gateway.model import CleanFile, MessageReport
from gateway.pipeline import Deliver, Pipeline, Quarantine
from gateway.reasons import Reason
from gateway.relay import DeliveryResult, Relay
from gateway.serialize import plain
from gateway.settings import Settings
from gateway.spool import RECOVERIES, RELAYED, Job, Spool
from gateway.store.repository import Store
from gateway.vocab import FINAL_STATUSES, MessageStatus

log = logging.getLogger(__name__)
T = TypeVar("T")


def _observe(timings: dict[str, float]) -> None:
    for stage, seconds in timings.items():
        STAGE_SECONDS.labels(stage).observe(seconds)


def _describe(exc: BaseException) -> str:
    """For logs and /readyz: the driver's first line for store errors (SQLAlchemy's later
    lines carry the statement's parameters, i.e. message bytes), else the type alone."""
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).splitlines()
        first = lines[0][:200] if lines else ""
        return f"{type(orig).__name__}: {first}" if first else type(orig).__name__
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or ''}".rstrip(": ")
    return type(exc).__name__


def _null_sender(mail_from: str) -> bool:
    return mail_from.strip() in ("", "<>")


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


class SpoolFailure(Exception):
    """A spool operation inside a job failed (read-only or failing disk): the job is put
    back, never quarantined as internal_error (that could overwrite a delivered record)."""


class StoreFailure(Exception):
    """The store could not record a job's progress or outcome: the job goes back to the spool
    as it is (a database error must never turn into a quarantine or a lost mail)."""


@dataclass
class Health:
    """What ``/readyz`` needs to know about the workers (read on the event loop)."""

    slots: int = 0
    alive: int = 0
    restarts: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    store_error: str = ""  # last store failure, empty once a job went through again
    store_failures: int = 0
    spool_error: str = ""

    def progress(self) -> None:
        self.last_progress = time.monotonic()


def readiness(health: Health, ready_jobs: int, stall_after: float) -> dict[str, str]:
    """Problems that make the gateway not ready, by check name (empty ⇒ ready)."""
    problems: dict[str, str] = {}
    if health.alive < health.slots:
        problems["workers"] = f"{health.slots - health.alive} of {health.slots} worker slots dead"
    idle_for = time.monotonic() - health.last_progress
    if ready_jobs and idle_for > stall_after:
        problems["progress"] = f"{ready_jobs} jobs waiting, none finished for {idle_for:.0f}s"
    if health.store_error:
        problems["store_writes"] = f"outcomes not recorded: {health.store_error}"
    if health.spool_error:
        problems["spool_writes"] = f"spool failing: {health.spool_error}"
    return problems


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
        self.health = Health()
        # Suspects of a crash loop run alone (see _handle_alone).
        self._busy = 0
        self._quiet = asyncio.Condition()
        self._solo = asyncio.Event()
        self._solo.set()
        self._alone = asyncio.Lock()
        self.restart_backoff = 1.0
        self.max_restart_backoff = 60.0

    # -- loop ---------------------------------------------------------------------
    async def run(self, concurrency: int) -> None:
        """Run ``concurrency`` supervised slots until stopped (structured so that the
        throughput issue can run the same slots in several processes)."""
        self.health.slots = concurrency
        tasks = [
            asyncio.create_task(self._supervise(i), name=f"worker-{i}") for i in range(concurrency)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    def stop(self) -> None:
        self._stopping = True
        self.wakeup.set()

    async def _supervise(self, slot: int) -> None:
        """Restart a slot that died, with exponential back-off (a bug that kills every job
        must not spin the CPU); the back-off resets after a slot ran well for a while."""
        backoff = self.restart_backoff
        while not self._stopping:
            started = time.monotonic()
            self.health.alive += 1
            try:
                await self._loop(slot)
                return
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - supervision: log, count, restart
                log.error("job=- worker slot %d died (%s); restarting", slot, type(exc).__name__)
                log.debug("job=- worker slot %d traceback", slot, exc_info=True)
            finally:
                self.health.alive -= 1
            self.health.restarts += 1
            WORKER_RESTARTS.inc()
            if time.monotonic() - started > 60 * backoff:
                backoff = self.restart_backoff
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_restart_backoff)

    async def _loop(self, slot: int) -> None:
        while not self._stopping:
            await self._solo.wait()
            try:
                job = await asyncio.to_thread(self.spool.claim)
                self.health.spool_error = ""
            except (SpoolError, OSError) as exc:
                detail = exc.detail if isinstance(exc, SpoolError) else type(exc).__name__
                log.error("job=- claim failed: %s", detail)
                self.health.spool_error = detail
                job = None
            if job is None:
                self.health.progress()  # idle is progress: nothing is waiting on this slot
                await self._sleep()
                continue
            if not self._solo.is_set() and await self._give_back(job):
                # A crash suspect runs (or has just begun): a crash now charges every job in
                # active/, so nothing else may wait there. No await between this check and
                # _busy += 1, so the suspect either sees this job busy or it is given back.
                continue
            if job.meta.extra.get(RECOVERIES):
                await self._handle_alone(job)
                continue
            self._busy += 1
            try:
                await self.handle(job)
            finally:
                self._busy -= 1
                async with self._quiet:
                    self._quiet.notify_all()

    async def _give_back(self, job: Job) -> bool:
        """Back to the queue unchanged and uncounted; False if even that failed."""
        try:
            await asyncio.to_thread(self.spool.release, job)
        except OSError as exc:
            log.error("job=%s could not be given back: %s", job.id, _describe(exc))
            return False
        return True

    async def _handle_alone(self, job: Job) -> None:
        """A job that was claimed when the process died runs with no other job beside it, so
        that a further crash is charged to it alone: the innocent mails claimed alongside a
        poison mail must not end as crash_loop with it."""
        try:
            async with self._alone:
                self._solo.clear()  # other slots claim nothing new meanwhile
                try:
                    async with self._quiet:
                        await self._quiet.wait_for(lambda: self._busy == 0)
                    await self.handle(job)
                finally:
                    self._solo.set()
        except asyncio.CancelledError:
            # Shut down while waiting its turn: back to the queue uncounted (handle() does
            # the same once it runs).
            if job.path.exists():
                with contextlib.suppress(OSError):
                    await asyncio.shield(asyncio.to_thread(self.spool.release, job))
            raise

    async def _sleep(self) -> None:
        try:
            due = await asyncio.to_thread(self.spool.next_due)
        except OSError:
            due = None
        timeout = 5.0 if due is None else max(0.05, min(5.0, due - time.time()))
        self.wakeup.clear()
        try:
            await asyncio.wait_for(self.wakeup.wait(), timeout)
        except TimeoutError:
            pass

    # -- one job -----------------------------------------------------------------
    async def handle(self, job: Job) -> None:
        """Handle one claimed job; never raises (the guard that makes outcomes total)."""
        jid = job.id
        try:
            await self._handle(job)
            self.health.store_error = self.health.spool_error = ""
        except asyncio.CancelledError:
            # Shutdown, not a crash: give the job back uncounted (a crash leaves it in
            # active/, and only those count towards a crash loop).
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(self.spool.release, job))
            raise
        except BaseException as exc:  # noqa: BLE001 - the guard: nothing may end a slot
            # Recording the outcome failed (the store, or the spool itself): the job goes back
            # through the file system alone and is tried again after a delay.
            cause = exc.__cause__ or exc
            detail = _describe(cause)
            if isinstance(exc, SpoolFailure) or isinstance(cause, OSError):
                OUTCOME_FAILURES.labels("spool").inc()
                self.health.spool_error = detail
            else:
                OUTCOME_FAILURES.labels("store" if isinstance(exc, StoreFailure) else "other").inc()
                self.health.store_failures += 1
                self.health.store_error = detail
            log.error("job=%s outcome not recorded (%s); put back", jid, detail)
            await self._put_back(job)
        finally:
            self.processed += 1
            self.health.progress()

    async def _put_back(self, job: Job) -> None:
        due = time.time() + self.settings.delivery.store_retry
        try:
            await asyncio.to_thread(self.spool.postpone, job, due)
        except OSError as exc:
            # Even the spool failed: the file stays in active/ and the next start's recovery
            # puts it back; /readyz shows the spool as failing meanwhile.
            self.health.spool_error = _describe(exc)
            log.error("job=%s could not be put back: %s", job.id, self.health.spool_error)

    async def _handle(self, job: Job) -> None:
        jid = job.id
        try:
            try:
                await self._outcome(job)
            except Transient as exc:
                await self._retry(job, exc)
            except Permanent as exc:
                await self._quarantine(job, exc.reason, exc.detail, None)
        except SQLAlchemyError as exc:
            raise StoreFailure(type(exc).__name__) from exc
        except (StoreFailure, SpoolFailure):
            raise
        except Exception as exc:  # noqa: BLE001 - the one catch-all: fail closed, keep the job
            log.exception("job=%s internal error", jid)
            try:
                await self._quarantine(job, "internal_error", type(exc).__name__, None)
            except SQLAlchemyError as store_exc:
                raise StoreFailure(type(store_exc).__name__) from store_exc

    async def _spool_op(self, func: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(func, *args)
        except (OSError, SpoolError) as exc:
            # SpoolError is Transient: raised inside the retry path it would otherwise reach
            # the catch-all and quarantine a mail for a full disk.
            raise SpoolFailure(type(exc).__name__) from exc

    async def _outcome(self, job: Job) -> None:
        jid = job.id
        raw = await self._spool_op(job.read)
        status = await asyncio.to_thread(self.store.record_received, job.meta, raw)
        if status in FINAL_STATUSES:
            # Recovered after a crash that happened after the outcome was recorded.
            log.info("job=%s already %s; spool copy removed", jid, status)
            await self._spool_op(self.spool.done, job)
            return
        recoveries = int(job.meta.extra.get(RECOVERIES, 0))
        if recoveries >= self.settings.delivery.max_recoveries:
            # It was being handled each time the process died: never give it to the
            # pipeline again. The original is kept in quarantine for the operators.
            CRASH_LOOPS.inc()
            log.error("job=%s crash loop: claimed when the process died %d times", jid, recoveries)
            await self._quarantine(
                job, CrashLoop.reason, f"{recoveries} restarts while being handled", None
            )
            return
        if job.meta.kind == "file":
            await self._handle_file(job, raw)
            return
        outcome = await self.pipeline.process(job.meta, raw)
        if isinstance(outcome, Quarantine):
            await self._quarantine(job, outcome.reason, outcome.detail, outcome.report)
            return
        await self._deliver(job, outcome)

    async def _handle_file(self, job: Job, raw: bytes) -> None:
        result = await self.pipeline.process_file(job.meta, raw)
        parts = (result.part,) if result.part is not None else ()
        status = MessageStatus.DONE if result.files else MessageStatus.WITHHELD
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
            report=report,
        )
        if job.meta.extra.get("source") == "watch" and self.settings.watch.outbox is not None:
            summary = {
                "id": job.id,
                "file": job.meta.extra.get("relpath", job.meta.filename),
                "status": status,
                "reasons": reasons,
                "outputs": [f.filename for f in result.files],
                "part": plain(result.part) if result.part else None,
            }
            await asyncio.to_thread(
                deliver_watch_result, self.settings.watch, job.meta, raw, result.files, summary
            )
        await self._spool_op(self.spool.done, job)
        JOBS.labels(status).inc()
        _observe(result.timings)
        log.info("job=%s file %s outputs=%d", job.id, status, len(result.files))

    async def _record_report(self, job: Job, report: MessageReport) -> None:
        _observe(report.timings)
        await asyncio.to_thread(self.store.record_report, job.id, report)

    async def _deliver(self, job: Job, outcome: Deliver) -> None:
        meta = job.meta
        started = time.monotonic()
        try:
            # A bounce or notice (null sender) stays one: "<>" is no mailbox for the client.
            sender = "" if _null_sender(meta.mail_from) else meta.mail_from
            if meta.extra.get(RELAYED):
                # Taken by the relay already; only recording it failed: never sent twice.
                # (The record keeps this run's rebuild, the same sanitization of the same mail.)
                result = DeliveryResult(accepted=tuple(meta.rcpt_tos), rejected={}, deferred={})
            else:
                result = await self.relay.send(sender, meta.rcpt_tos, outcome.data)
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
            moved = await self._spool_op(self.spool.expedite)
            if moved:
                log.info("job=%s relay back; %d deferred jobs retried now", job.id, moved)
                self.wakeup.set()
        if result.deferred and (result.accepted or result.rejected):
            # Only some recipients failed for now: retry just those.
            narrowed = replace(job.meta, rcpt_tos=tuple(result.deferred))
            # Into the spool file at once: if recording the retry fails, the job put back
            # must not hold the recipients that already have it.
            job = await self._spool_op(self.spool.rewrite, job, narrowed)
            log.info("job=%s partially delivered; %d deferred", job.id, len(result.deferred))
        if result.deferred or (result.rejected and not result.accepted):
            await self._record_report(job, outcome.report)
        if result.deferred:
            await self._retry(job, RelayTemporary("; ".join(result.deferred.values())))
            return
        if result.rejected and not result.accepted:
            raise RelayRejected("; ".join(result.rejected.values()))
        _observe(outcome.report.timings)
        try:
            await asyncio.to_thread(
                self.store.mark_delivered,
                job.id,
                outcome.data,
                job.meta.attempts + 1,
                outcome.report,
            )
        except SQLAlchemyError:
            if not job.meta.extra.get(RELAYED):
                try:
                    # Remembered in the spool file that handle() puts back: the next try
                    # records the delivery instead of sending another copy.
                    await asyncio.to_thread(self.spool.note, job, **{RELAYED: True})
                except (OSError, SpoolError) as exc:
                    log.error("job=%s relayed, not recorded, not noted: %s", job.id, exc)
            raise
        await self._spool_op(self.spool.done, job)
        JOBS.labels("delivered").inc()
        log.info("job=%s delivered rcpts=%d", job.id, len(result.accepted))

    async def _quarantine(
        self, job: Job, reason: str, detail: str, report: MessageReport | None
    ) -> None:
        whole = None
        if report is not None and (report.parts or report.subject or report.message_id
                                   or report.header_from):  # fmt: skip
            _observe(report.timings)
            whole = report
        await asyncio.to_thread(
            self.store.mark_quarantined,
            job.id,
            reason,
            detail,
            job.meta.attempts + 1,
            report.scan if report else None,
            whole,  # one transaction: a quarantined record is never without its headers
        )
        # No notice for a looping notice or bounce (null sender): the way to the recipients
        # leads back here, so each quarantine of a looping notice would send another, forever.
        looping_notice = reason == "mail_loop" and _null_sender(job.meta.mail_from)
        if self.settings.notice.withheld_notice and job.meta.kind == "mail" and not looping_notice:
            await self._notify_withheld(job, reason, report)
        await self._spool_op(self.spool.done, job)
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
            # Our own text, but it quotes the sender's headers: the same last gate as mail.
            await asyncio.to_thread(check_message, data)
        except EgressRefused as exc:
            log.warning("job=%s withheld notice not sent: %s", job.id, exc.reason)
            return
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
            timeout = isinstance(exc, RelayTemporary)
            reason = Reason.RELAY_TIMEOUT if timeout else Reason.QUEUE_TIMEOUT
            await self._quarantine(job, reason, exc.detail, None)
            return
        schedule = delivery.retry_schedule
        wait = schedule[min(job.meta.attempts, len(schedule) - 1)]
        due = min(time.time() + wait, job.meta.received_at + delivery.max_queue_lifetime)
        await asyncio.to_thread(
            self.store.mark_deferred, job.id, exc.reason, exc.detail, job.meta.attempts + 1
        )
        await self._spool_op(self.spool.defer, job, due)
        JOBS.labels("deferred").inc()
        REASONS.labels(exc.reason).inc()
        log.info("job=%s deferred reason=%s wait=%.0fs", job.id, exc.reason, wait)
