"""Records made through the same Store calls the worker uses."""

from __future__ import annotations

import itertools
import time

from gateway.model import Action, MessageReport, PartReport, ScanResult
from gateway.spool import JobMeta
from gateway.store.repository import Store

_counter = itertools.count(1)


def raw_mail(message_id: str = "<m1@example.com>", subject: str = "hello") -> bytes:
    return (
        "From: Sender <sender@example.com>\r\n"
        "To: user@town.example.lg.jp\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        "<p>original <b>body</b></p>\r\n"
    ).encode()


def new_id(at: float | None = None) -> str:
    ms = int((at if at is not None else time.time()) * 1000)
    return f"{ms:012x}{next(_counter):010x}"


def add_message(
    store: Store,
    *,
    status: str = "delivered",
    message_id: str = "<m1@example.com>",
    mail_from: str = "sender@example.com",
    rcpt_tos: tuple[str, ...] = ("user@town.example.lg.jp",),
    received_at: float | None = None,
    kind: str = "mail",
    filename: str = "",
    reason: str = "unparseable",
    raw: bytes | None = None,
) -> str:
    at = received_at if received_at is not None else time.time()
    meta = JobMeta(
        id=new_id(at),
        kind=kind,
        mail_from=mail_from,
        rcpt_tos=rcpt_tos,
        received_at=at,
        filename=filename,
    )
    data = raw if raw is not None else raw_mail(message_id)
    assert store.record_received(meta, data) == "processing"
    part = PartReport(
        index="1",
        filename="見積書.docx",
        declared_type="application/msword",
        detected_type="docx",
        action=Action.CONVERTED,
        reasons=("macros_removed",),
        size=1234,
        sha256="ab" * 32,
        outputs=("見積書.pdf",),
    )
    report = MessageReport(
        parts=(part,),
        tokens=("CHG_TEXT", "CONV_ATTACH"),
        subject="件名 hello",
        message_id=message_id,
        header_from="Sender <sender@example.com>",
        scan=ScanResult(clean=status != "quarantined", signature=""),
        timings={"scan": 0.01, "sanitize": 0.2},
    )
    store.record_report(meta.id, report)
    if status == "delivered":
        store.mark_delivered(meta.id, b"Subject: sanitized\r\n\r\nclean\r\n", 1)
    elif status == "quarantined":
        store.mark_quarantined(meta.id, reason, "detail", 1)
    elif status == "deferred":
        store.mark_deferred(meta.id, "relay_temporary", "451", 1)
    return meta.id
