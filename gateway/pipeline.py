"""One message through the stages: scan the original, parse, sanitize, rebuild.

``Pipeline.process`` returns an outcome (``Deliver`` or ``Quarantine``) or raises
``Transient`` for the worker to retry. Parsing and sanitizing run in a thread
(the converters themselves run in sandboxed child processes).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway.auth import hook as auth_hook  # issue 16
from gateway.egress.check import check_file, check_message
from gateway.errors import EgressRefused, MailLoop, MessageTooLarge, Permanent, VirusFoundOutput
from gateway.loopmark import earlier_hop, token, verified_ids
from gateway.mime.body import compose
from gateway.mime.headers_block import summarize
from gateway.mime.notice import render_notice
from gateway.mime.parse import parse_message
from gateway.mime.rebuild import build_message, received_line
from gateway.mime.tokens import sanitized_tokens
from gateway.model import Action, CleanFile, MessageReport, PartReport, ScanResult
from gateway.sanitize.archive.budget import ByteBudget
from gateway.sanitize.base import Context, OfficeConverter, PageBudget, Sanitizer
from gateway.sanitize.registry import REGISTRY, sanitize_part
from gateway.settings import Settings
from gateway.spool import JobMeta

MAX_HOPS_THROUGH_US = 3
T = TypeVar("T")


class Scanner(Protocol):
    async def scan(self, data: bytes) -> ScanResult: ...


def _withheld_report(raw: bytes, header_cap: int, scan: ScanResult) -> MessageReport:
    """The body stays withheld; the header block alone (bounded) identifies the record."""
    found = summarize(raw, header_cap)
    return MessageReport(
        subject=found.subject, message_id=found.message_id, header_from=found.header_from,
        scan=scan, date=found.date,
    )  # fmt: skip


@dataclass(frozen=True)
class Deliver:
    data: bytes
    report: MessageReport


@dataclass(frozen=True)
class Quarantine:
    reason: str
    detail: str
    report: MessageReport


Outcome = Deliver | Quarantine


@dataclass(frozen=True)
class FileResult:
    """A file job's result: rebuilt files (empty when withheld) and what happened."""

    files: tuple[CleanFile, ...]
    part: PartReport | None
    reason: str = ""  # why nothing came out (withheld)
    scan: ScanResult | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SanitizedMessage:
    data: bytes
    report: MessageReport


def sanitize_message(
    raw: bytes,
    meta: JobMeta,
    settings: Settings,
    office: OfficeConverter | None,
    loop_key: bytes = b"",
    *,
    registry: Mapping[str, Sanitizer] = REGISTRY,
) -> SanitizedMessage:
    """Parse and rebuild one message. Raises ``Permanent`` for whole-message refusals.
    Without ``loop_key`` (offline use) no loop token is written or checked."""
    started = time.monotonic()
    limits = settings.sanitize
    if len(raw) > settings.smtp.max_message_bytes:
        raise MessageTooLarge(f"{len(raw)} bytes")
    parsed = parse_message(
        raw,
        max_parts=limits.max_parts,
        max_depth=limits.max_depth,
        max_header_bytes=limits.max_header_bytes,
    )
    # Only hops carrying this instance's token count (issue 13): forged lines never do.
    message_id = parsed.headers.get("message-id", "")
    hops = verified_ids(parsed.received_by, loop_key, settings.smtp.hostname, message_id)
    if len(hops) >= MAX_HOPS_THROUGH_US:
        raise MailLoop(f"already passed through {settings.smtp.hostname}")
    auth = auth_hook.check_sender(raw, meta, settings)  # issue 16
    parse_done = time.monotonic()

    body = compose(parsed)
    budget = PageBudget(limits.max_pages_per_message)
    unpacked = ByteBudget(limits.max_unpacked_bytes)  # all attachments' archives share it
    reports: list[PartReport] = list(body.reports)
    files: list[CleanFile] = []
    for att in parsed.attachments:
        ctx = Context(limits=limits, pages=budget, office=office, byte_budget=unpacked)
        report, outputs = sanitize_part(
            att.data,
            att.filename,
            att.declared_type,
            ctx,
            att.index,
            registry=registry,
            job_id=meta.id,
        )
        reports.append(report)
        files.extend(outputs)
    html_dropped = False
    for dropped in parsed.dropped:
        reports.append(
            PartReport(
                index=dropped.index,
                filename=dropped.filename or "(本文の別形式 / alternative body)",
                declared_type=dropped.declared_type,
                detected_type=dropped.declared_type,
                action=Action.REMOVED,
                reasons=(dropped.reason,),
                size=dropped.size,
            )
        )
        if dropped.declared_type == "text/html" and dropped.reason == "alternative_not_used":
            html_dropped = True

    # The body is plain text either way: rendered from HTML, or the HTML form dropped.
    tokens = sanitized_tokens(
        reports, body_changed=body.html_converted or html_dropped, links=body.links_disarmed
    )
    notice = render_notice(
        meta.id,
        reports,
        html_converted=body.html_converted,
        html_dropped=html_dropped and not body.html_converted,
        links_disarmed=body.links_disarmed,
        contact=settings.notice.contact,
    )
    notice = auth_hook.notice_block(auth) + notice  # issue 16
    received = received_line(
        helo=meta.helo,
        peer=meta.peer,
        hostname=settings.smtp.hostname,
        mugai_id=meta.id,
        rcpt=meta.rcpt_tos[0] if len(meta.rcpt_tos) == 1 else "",
        loop_token=(
            token(loop_key, settings.smtp.hostname, meta.id, message_id) if loop_key else ""
        ),
    )
    data = build_message(
        headers=auth_hook.tagged_headers(parsed.headers, auth, settings.auth.subject_tag),
        addresses=parsed.addresses,
        body=notice + "\n" + body.text + "\n",
        files=files,
        mugai_id=meta.id,
        tokens=tokens,
        received=received,
        earlier=[earlier_hop(loop_key, settings.smtp.hostname, h, message_id) for h in hops],
    )
    data = auth_hook.stamp(data, settings.smtp.hostname, auth)  # issue 16
    done = time.monotonic()
    message_report = MessageReport(
        parts=tuple(reports),
        tokens=tokens,
        subject=parsed.headers.get("subject", ""),
        message_id=parsed.headers.get("message-id", "").strip(),
        header_from=parsed.headers.get("from", ""),
        timings={"parse": round(parse_done - started, 4), "sanitize": round(done - parse_done, 4)},
        auth=auth.record(),  # issue 16
    )
    return SanitizedMessage(data=data, report=message_report)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        scanner: Scanner,
        office: OfficeConverter | None = None,
        *,
        registry: Mapping[str, Sanitizer] = REGISTRY,
    ) -> None:
        self.settings = settings
        self.scanner = scanner
        self.office = office
        self.registry = registry
        # Random per process unless the Gateway sets the instance's key (loopmark.load_key).
        self.loop_key = secrets.token_bytes(32)
        # Sanitizing can block a thread for minutes (LibreOffice, big PDFs): its own pool, so
        # it never starves the threads that do the SMTP intake's spool writes.
        self.executor = ThreadPoolExecutor(
            max_workers=settings.delivery.workers, thread_name_prefix="mugai-sanitize"
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _in_pool(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(func, *args, **kwargs))

    async def process(self, meta: JobMeta, raw: bytes) -> Outcome:
        started = time.monotonic()
        scan = await self.scanner.scan(raw)  # Transient (clamd down) propagates: retry later
        scanned = time.monotonic()
        header_cap = self.settings.sanitize.max_header_bytes
        if not scan.clean:
            report = _withheld_report(raw, header_cap, scan)
            return Quarantine("virus_found", scan.signature, report)
        try:
            result = await self._in_pool(
                sanitize_message,
                raw,
                meta,
                self.settings,
                self.office,
                self.loop_key,
                registry=self.registry,
            )
        except Permanent as exc:
            report = _withheld_report(raw, header_cap, scan)
            return Quarantine(exc.reason, exc.detail, report)
        # The egress gate: the rebuilt message is scanned and checked once more, exactly as it
        # would leave. Either refusal quarantines; a clamd outage is Transient (retry later).
        egress_started = time.monotonic()
        timings = {"scan": round(scanned - started, 4), **result.report.timings}
        scan = replace(scan, auth=result.report.auth)  # issue 16: shown in record and API
        report = replace(result.report, scan=scan, timings=timings)
        try:
            out_scan = await self.scanner.scan(result.data)
        except Permanent as exc:  # e.g. too_large_to_scan: quarantined with its report
            return Quarantine(exc.reason, exc.detail, report)
        if not out_scan.clean:
            return Quarantine(VirusFoundOutput.reason, out_scan.signature, report)
        try:
            await self._in_pool(check_message, result.data)
        except EgressRefused as exc:
            return Quarantine(exc.reason, exc.detail, report)
        timings["egress"] = round(time.monotonic() - egress_started, 4)
        return Deliver(result.data, replace(report, timings=timings))

    async def process_file(self, meta: JobMeta, raw: bytes) -> FileResult:
        """The file gateway: scan, then the same sanitizers as mail attachments."""
        started = time.monotonic()
        scan = await self.scanner.scan(raw)
        scanned = time.monotonic()
        if not scan.clean:
            return FileResult((), None, "virus_found", scan)
        limits = self.settings.sanitize
        ctx = Context(
            limits=limits, pages=PageBudget(limits.max_pages_per_message), office=self.office
        )
        report, files = await self._in_pool(
            sanitize_part,
            raw,
            meta.filename or "file",
            "",
            ctx,
            "1",
            registry=self.registry,
            job_id=meta.id,
        )
        sanitized = time.monotonic()
        timings = {"scan": round(scanned - started, 4), "sanitize": round(sanitized - scanned, 4)}
        # The same last gate as for mail: every output file scanned and checked once more.
        for f in files:
            out_scan = await self.scanner.scan(f.data)
            if not out_scan.clean:
                return FileResult((), report, VirusFoundOutput.reason, out_scan, timings)
            try:
                await self._in_pool(check_file, f.filename, f.content_type, f.data)
            except EgressRefused as exc:
                return FileResult((), report, exc.reason, scan, timings)
        timings["egress"] = round(time.monotonic() - sanitized, 4)
        reason = "" if files else (report.reasons[0] if report.reasons else "removed")
        return FileResult(tuple(files), report, reason, scan, timings)
