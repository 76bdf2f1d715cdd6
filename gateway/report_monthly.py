"""`mugai report --month 2026-11`: the monthly summary CSV for the CISO / security cloud.

One table, four columns (section, item, detail, count), so Excel opens it as it is and a
script can filter on the first column. Sections: the period, messages by status, reasons
(message and part level), top senders, release requests by status, and audited operator
actions (original reads, releases, deletions, legal holds: the "exceptions").

The month is a calendar month in ``[report] timezone`` (Asia/Tokyo by default: a municipal
month ends at midnight JST, not UTC). Only counts and sender addresses leave the database:
no subject, no body.

Sender addresses are chosen by the (hostile) sender, and a cell starting with ``=``, ``+``,
``-``, ``@`` or a control character is a formula in Excel (CSV injection): such cells get a
leading apostrophe. cp932 cannot encode every address (SMTPUTF8, emoji); those characters
become ``?`` instead of failing the whole report.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Text, cast, func, select

from gateway.controls import visible
from gateway.store.models import AuditRow, MessageRow, ReleaseRequestRow
from gateway.store.repository import Store

Encoding = Literal["utf-8-sig", "cp932"]
ENCODINGS: tuple[Encoding, ...] = ("utf-8-sig", "cp932")
HEADER = ("区分/section", "項目/item", "詳細/detail", "件数/count")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# A sender address longer than this is cut: a cell is for reading, not for a 1 MB address.
_MAX_CELL = 320


@dataclass(frozen=True)
class Period:
    start: datetime  # aware, in the report time zone
    end: datetime
    label: str  # "2026-11"

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(UTC)


def parse_month(value: str, timezone: str) -> Period:
    match = _MONTH.match(value.strip())
    if not match:
        raise ValueError(f"month must look like 2026-11, got {value!r}")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or year < 1970:
        raise ValueError(f"no such month: {value!r}")
    tz = ZoneInfo(timezone)
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return Period(start, end, f"{year:04d}-{month:02d}")


def safe_cell(value: object) -> str:
    text = str(value)
    # Spelled out, not dropped: an auditor sees that a sender used U+202E (a bidi override
    # would otherwise reverse the address in Excel) and no C0/C1 control breaks the row.
    text = visible(text)[:_MAX_CELL]
    if text.startswith(_FORMULA_START) or (text[:1] == " " and text.lstrip()[:1] in "=+-@"):
        return "'" + text
    return text


def _json_list(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def collect(store: Store, period: Period, top_senders: int = 20) -> list[tuple[str, str, str, int]]:
    """The report rows (section, item, detail, count); bounded by the number of distinct
    statuses, reasons and actions, and ``top_senders``."""
    start, end = period.start_utc, period.end_utc
    in_month = (MessageRow.received_at >= start, MessageRow.received_at < end)
    rows: list[tuple[str, str, str, int]] = []
    with store.db.read() as s:
        total = s.scalar(select(func.count()).select_from(MessageRow).where(*in_month)) or 0
        rows.append(
            (
                "period",
                period.label,
                f"{period.start.isoformat()}/{period.end.isoformat()}",
                int(total),
            )
        )
        by_kind = s.execute(
            select(MessageRow.kind, MessageRow.status, func.count())
            .where(*in_month)
            .group_by(MessageRow.kind, MessageRow.status)
        ).all()
        for kind, status, n in sorted(by_kind, key=lambda r: (str(r[0]), str(r[1]))):
            rows.append(("status", str(status), str(kind), int(n)))

        reasons: Counter[tuple[str, str]] = Counter()
        msg_reasons = s.execute(
            select(cast(MessageRow.reasons, Text), func.count())
            .where(*in_month)
            .group_by(cast(MessageRow.reasons, Text))
        ).all()
        for raw, n in msg_reasons:
            for reason in set(_json_list(raw)):
                reasons[("message", reason)] += int(n)
        # Part reasons (macros removed, links disarmed, …) live in the parts JSON; read in
        # pages so a month of a large town never sits in memory at once.
        for parts_json in _paged_parts(s, start, end):
            for part in parts_json:
                for reason in set(part.get("reasons") or ()):
                    reasons[("part", str(reason))] += 1
        for (level, reason), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append(("reason", reason, level, n))

        senders = s.execute(
            select(func.lower(MessageRow.mail_from), func.count())
            .where(*in_month, MessageRow.kind == "mail")
            .group_by(func.lower(MessageRow.mail_from))
            .order_by(func.count().desc(), func.lower(MessageRow.mail_from))
            .limit(top_senders)
        ).all()
        for sender, n in senders:
            rows.append(("top_sender", str(sender) or "<>", "", int(n)))

        releases = s.execute(
            select(ReleaseRequestRow.status, func.count())
            .where(ReleaseRequestRow.requested_at >= start, ReleaseRequestRow.requested_at < end)
            .group_by(ReleaseRequestRow.status)
        ).all()
        for status, n in sorted(releases, key=lambda r: str(r[0])):
            rows.append(("release", str(status), "", int(n)))

        # The audit ``at`` column is ISO text in UTC with a fixed width, so text comparison
        # is time order on every backend.
        actions = s.execute(
            select(AuditRow.action, func.count())
            .where(AuditRow.at >= start.astimezone(UTC).isoformat(timespec="microseconds"))
            .where(AuditRow.at < end.astimezone(UTC).isoformat(timespec="microseconds"))
            .group_by(AuditRow.action)
        ).all()
        for action, n in sorted(actions, key=lambda r: str(r[0])):
            rows.append(("audit", str(action), "", int(n)))
    return rows


def _paged_parts(
    s: Any, start: datetime, end: datetime, page: int = 500
) -> Iterator[list[dict[str, Any]]]:
    last = ""
    while True:
        batch = s.execute(
            select(MessageRow.id, MessageRow.parts)
            .where(MessageRow.received_at >= start, MessageRow.received_at < end)
            .where(MessageRow.id > last)
            .order_by(MessageRow.id)
            .limit(page)
        ).all()
        if not batch:
            return
        for mid, parts in batch:
            yield [p for p in (parts or []) if isinstance(p, dict)]
            last = mid


def render(rows: Iterable[tuple[str, str, str, int]], encoding: Encoding) -> bytes:
    """CSV bytes; CRLF line ends (RFC 4180, what Excel writes)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}")
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(HEADER)
    for section, item, detail, count in rows:
        writer.writerow((section, safe_cell(item), safe_cell(detail), count))
    return buf.getvalue().encode(encoding, errors="replace")


def add_parser(sub: Any) -> None:
    """``mugai report``; wired into gateway/cli.py."""
    p = sub.add_parser("report", help="monthly summary CSV (counts by outcome, reason, sender)")
    p.add_argument("--month", required=True, help="calendar month, e.g. 2026-11")
    p.add_argument("--encoding", default="utf-8-sig", choices=ENCODINGS)
    p.add_argument("--out", help="write here (default: standard output)")
    p.add_argument("--config", help="TOML config (embedded defaults when omitted)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: Any) -> int:
    import os
    import sys
    from pathlib import Path

    from gateway.admin_cli import EXIT_OK, EXIT_USAGE, _settings, _UsageError, open_store

    try:
        settings = _settings(args.config)
        period = parse_month(args.month, settings.report.timezone)
    except (_UsageError, ValueError) as exc:
        print(f"mugai: {exc}", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(settings)
    try:
        data = render(collect(store, period, settings.report.top_senders), args.encoding)
    finally:
        store.close()
    if not args.out:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    # Whole file or nothing: a half-written report must not be mistaken for a quiet month.
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return EXIT_OK
