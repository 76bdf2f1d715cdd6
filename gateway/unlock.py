"""PPAP unlock: an operator's password turns a withheld encrypted part into a sanitized,
threaded delivery (issue 12 item 5; DESIGN.md §4.5 ``POST /api/v1/messages/{id}/unlock``).

Flow: reserve an attempt (rate limit, one at a time, audited) → find the part in the stored
original → decrypt it in a sandbox child → scan the decrypted content with clamd (the
encryption hid it from the first scan) → the normal sanitizers → a new message to the
original recipients, ``In-Reply-To``/``References`` the original → record the outcome.

The password lives only in this call's arguments and the child's stdin: never stored,
logged, put into an exception, the audit detail or the message.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.egress.check import check_message
from gateway.errors import (
    ConversionTimeout,
    InternalError,
    MugaiError,
    NotFound,
    NothingToDeliver,
    PartNotFound,
    Refused,
    RelayRejected,
    UnlockUnsupported,
    VirusFound,
    VirusFoundOutput,
    WrongPassword,
)
from gateway.mime.defang import disarm
from gateway.mime.detect import detect
from gateway.mime.notice import RULE, display_name, render_notice
from gateway.mime.parse import Attachment, parse_message
from gateway.mime.rebuild import build_message, received_line
from gateway.mime.tokens import sanitized_tokens
from gateway.model import CleanFile, PartReport, ScanResult
from gateway.relay import Relay
from gateway.sanitize.base import Context, OfficeConverter, PageBudget
from gateway.sanitize.decrypt import child_kind, decrypt
from gateway.sanitize.registry import sanitize_part
from gateway.settings import Settings
from gateway.store import unlocks
from gateway.store.models import MessageRow
from gateway.store.repository import Store
from gateway.store.tokens import Principal

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "【パスワード解除・無害化済み】"
# A MIME part index such as "2" or "1.2": fits blobs.kind ("u:" + at most 14 characters).
PART_PATTERN = r"^[0-9]{1,4}(\.[0-9]{1,4}){0,2}$"


class Scanner(Protocol):
    async def scan(self, data: bytes) -> ScanResult: ...


@dataclass(frozen=True)
class Unlocked:
    """A delivered unlock: what the API and the console show."""

    mugai_id: str
    part: str
    message_id: str  # of the new, threaded message
    accepted: tuple[str, ...]
    rejected: dict[str, str]
    deferred: dict[str, str]
    report: PartReport
    outputs: tuple[str, ...] = field(default=())


def _find_attachment(raw: bytes, part: str, settings: Settings) -> Attachment:
    limits = settings.sanitize
    parsed = parse_message(
        raw,
        max_parts=limits.max_parts,
        max_depth=limits.max_depth,
        max_header_bytes=limits.max_header_bytes,
    )
    for att in parsed.attachments:
        if att.index == part:
            return att
    # A member inside an archive, or a part the parser no longer yields.
    raise PartNotFound(f"part {part} is not an attachment of the message")


def _decrypt_and_sanitize(
    att: Attachment,
    password: str,
    settings: Settings,
    office: OfficeConverter | None,
    scan: Any,
    part: str,
    job: str,
) -> tuple[PartReport, tuple[CleanFile, ...], str]:
    detected = detect(att.data, att.filename, att.declared_type)
    if "encrypted" not in detected.flags and detected.kind != "pdf":
        raise UnlockUnsupported(f"{detected.kind} is not encrypted")
    plain = decrypt(
        att.data, child_kind(detected), password, settings.sanitize, seconds=settings.unlock.seconds
    )
    result: ScanResult = scan(plain)  # ScannerUnavailable propagates: retry later
    if not result.clean:
        raise VirusFound(result.signature)
    ctx = Context(
        limits=settings.sanitize,
        pages=PageBudget(settings.sanitize.max_pages_per_message),
        office=office,
    )
    report, files = sanitize_part(plain, att.filename, "", ctx, part, job_id=job)
    return report, files, hashlib.sha256(plain).hexdigest()


def build_unlocked_message(
    *,
    original: bytes,
    msg: MessageRow,
    part: str,
    filename: str,
    report: PartReport,
    files: Sequence[CleanFile],
    settings: Settings,
    who: str,
    message_id: str,
) -> bytes:
    """The new message: original addresses, threaded under the original, with a notice."""
    limits = settings.sanitize
    parsed = parse_message(
        original,
        max_parts=limits.max_parts,
        max_depth=limits.max_depth,
        max_header_bytes=limits.max_header_bytes,
    )
    original_id = parsed.headers.get("message-id", "").strip() or msg.message_id
    references = " ".join(x for x in (parsed.headers.get("references", ""), original_id) if x)
    subject = parsed.headers.get("subject", "") or msg.subject
    headers = {
        "subject": SUBJECT_PREFIX + subject,
        "date": email.utils.formatdate(localtime=True),
        "message-id": message_id,
        "in-reply-to": original_id,
        "references": references,
    }
    name = display_name(filename)
    intro = "\n".join(
        [
            RULE,
            "【パスワード付きファイルの解除と無害化】",
            f"元のメール（件名: {display_name(subject or '（件名なし）', 200)}）に添付されていた",
            f"「{name}」を、担当者がパスワードを入力して解除し、無害化してお届けします。",
            f"元のメールの X-Mugai-Id: {msg.id}（パート {part}）",
            "",
            "[Password-protected attachment unlocked and sanitized]",
            f'"{name}" from the original message was unlocked with the password supplied',
            f"to the administrators and sanitized. Original X-Mugai-Id: {msg.id} (part {part})",
            "",
        ]
    )
    notice = render_notice(
        msg.id, [report], html_converted=False, links_disarmed=0, contact=settings.notice.contact
    )
    # The intro quotes the sender's Subject and file name: disarmed as a whole, last.
    body = disarm(intro + notice + "\n")
    # The one rule of every delivery (gateway/mime/tokens.py), at every depth of the report.
    tokens = sanitized_tokens([report], body_changed=False, links=body.links)
    received = received_line(
        helo="unlock", peer="127.0.0.1", hostname=settings.smtp.hostname, mugai_id=msg.id, rcpt=""
    )
    addresses = {k: v for k, v in parsed.addresses.items() if k in ("from", "to", "cc", "reply-to")}
    log.debug("job=%s unlock part=%s message built by=%s", msg.id, part, who)
    return build_message(
        headers=headers,
        addresses=addresses,
        body=body.text,
        files=files,
        mugai_id=msg.id,
        tokens=tokens,
        received=received,
    )


def _outcome_of(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, MugaiError) else "internal_error"


async def unlock(
    *,
    store: Store,
    relay: Relay,
    scanner: Scanner,
    office: OfficeConverter | None,
    settings: Settings,
    mugai_id: str,
    part: str,
    password: str,
    who: Principal,
) -> Unlocked:
    """Raises ``Refused`` (refused before trying) or ``MugaiError`` (tried, refused)."""
    cfg = settings.unlock
    if not cfg.enabled:
        raise UnlockUnsupported("unlock is disabled ([unlock] enabled = false)")
    try:
        begun = await asyncio.to_thread(
            store.begin_unlock,
            mugai_id,
            part,
            who,
            max_wrong=cfg.max_wrong_passwords,
            window=cfg.window,
        )
    except Refused as exc:
        if not isinstance(exc, NotFound) or exc.reason != "message_not_found":
            # Refused before trying (rate limit, in progress, ...): audited all the same.
            await asyncio.to_thread(store.refuse_unlock, mugai_id, part, who, exc.reason)
        log.info("job=%s unlock part=%s by=%s refused=%s", mugai_id, part, who.name, exc.reason)
        raise
    begun_at = time.monotonic()
    loop = asyncio.get_running_loop()

    def scan_blocking(data: bytes) -> ScanResult:
        # Called from the worker thread: the scan itself runs on the event loop.
        return asyncio.run_coroutine_threadsafe(scanner.scan(data), loop).result()

    message_id = f"<{mugai_id}.{part}.{secrets.token_hex(6)}@{settings.smtp.hostname}>"
    detail: dict[str, Any] = {}
    delivered: bytes | None = None
    outcome = "internal_error"
    try:
        att = await asyncio.to_thread(_find_attachment, begun.original, part, settings)
        detail["filename"] = display_name(att.filename)
        report, files, plain_sha = await asyncio.to_thread(
            _decrypt_and_sanitize, att, password, settings, office, scan_blocking, part, mugai_id
        )
        detail["decrypted_sha256"] = plain_sha
        detail["reasons"] = sorted({r for r in _all_reasons(report)})
        if not files:
            raise NothingToDeliver("the sanitizers let nothing through")
        data = await asyncio.to_thread(
            build_unlocked_message,
            original=begun.original,
            msg=begun.message,
            part=part,
            filename=att.filename,
            report=report,
            files=files,
            settings=settings,
            who=who.name,
            message_id=message_id,
        )
        # The same last gate as every delivery: the new message scanned and checked as it
        # would leave (a refusal is the outcome; nothing is sent).
        out_scan = await scanner.scan(data)
        if not out_scan.clean:
            raise VirusFoundOutput(out_scan.signature)
        await asyncio.to_thread(check_message, data)
        if time.monotonic() - begun_at > unlocks.DELIVER_WITHIN_SECONDS:
            # Our in-flight block may expire before the relay answers: another attempt
            # could then deliver too. Fail closed: not delivered.
            raise ConversionTimeout("unlock took too long to deliver safely")
        sent = await relay.send(begun.message.mail_from, tuple(begun.message.rcpt_tos), data)
        detail.update(
            message_id=message_id,
            sha256=hashlib.sha256(data).hexdigest(),
            accepted=list(sent.accepted),
            rejected=dict(sent.rejected),
            deferred=dict(sent.deferred),
            outputs=[f.filename for f in files],
        )
        if not sent.accepted:
            raise RelayRejected("no recipient accepted the unlocked message")
        outcome, delivered = "delivered", data
    except WrongPassword as exc:
        outcome = exc.reason
        raise WrongPassword() from None  # nothing of the attempt travels further
    except MugaiError as exc:
        outcome = _outcome_of(exc)
        detail.setdefault("detail", exc.detail[:300])
        raise
    except Exception as exc:
        log.error("job=%s unlock part=%s failed: %s", mugai_id, part, type(exc).__name__)
        raise InternalError(type(exc).__name__) from None
    finally:
        await asyncio.to_thread(
            store.finish_unlock, mugai_id, begun.attempt, part, who, outcome, detail, delivered
        )
        log.info("job=%s unlock part=%s by=%s outcome=%s", mugai_id, part, who.name, outcome)
    return Unlocked(
        mugai_id=mugai_id,
        part=part,
        message_id=message_id,
        accepted=tuple(sent.accepted),
        rejected=dict(sent.rejected),
        deferred=dict(sent.deferred),
        report=report,
        outputs=tuple(f.filename for f in files),
    )


def _all_reasons(report: PartReport) -> list[str]:
    out: list[str] = []
    stack = [report]
    while stack:
        r = stack.pop()
        out.extend(r.reasons)
        stack.extend(r.children)
    return out
