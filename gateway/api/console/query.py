"""The list page's search form: parsed and bounded like the API's query parameters.

Dates are calendar days in Japan time (what staff type); ``until`` includes its whole day.
Invalid fields are dropped and reported on the page (status 422) instead of a JSON
validation error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.datastructures import QueryParams

from gateway.api.params import sane_date
from gateway.store.repository import MessageQuery
from gateway.vocab import MessageStatus

JST = ZoneInfo("Asia/Tokyo")
PAGE_SIZE = 50
STATUSES = tuple(MessageStatus)
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_LIMITS = {"message_id": 1000, "sender": 512, "recipient": 512}


@dataclass
class Search:
    status: str = ""
    message_id: str = ""
    sender: str = ""
    recipient: str = ""
    since: str = ""  # as typed (YYYY-MM-DD), echoed back into the form
    until: str = ""
    cursor: str = ""
    errors: list[str] = field(default_factory=list)

    def query(self) -> MessageQuery:
        return MessageQuery(
            status=self.status,
            message_id=self.message_id,
            sender=self.sender,
            recipient=self.recipient,
            since=_day_start(self.since),
            until=_day_start(self.until, next_day=True),
            limit=PAGE_SIZE,
            cursor=self.cursor,
        )

    def link(self, cursor: str = "") -> str:
        """The query string of this search (for the next page when ``cursor`` is given)."""
        params = {
            k: v
            for k, v in (
                ("status", self.status),
                ("message_id", self.message_id),
                ("sender", self.sender),
                ("recipient", self.recipient),
                ("since", self.since),
                ("until", self.until),
                ("cursor", cursor),
            )
            if v
        }
        return urlencode(params)


def _day_start(value: str, next_day: bool = False) -> datetime | None:
    if not value:
        return None
    day = date.fromisoformat(value) + timedelta(days=1 if next_day else 0)
    return datetime.combine(day, time(0), JST)


def parse(params: QueryParams) -> Search:
    search = Search()
    status = params.get("status", "")
    if status in STATUSES:
        search.status = status
    elif status:
        search.errors.append("status")
    for name, limit in _LIMITS.items():
        value = params.get(name, "").strip()
        if len(value) > limit or any(ord(c) < 32 for c in value):
            search.errors.append(name)
        else:
            setattr(search, name, value)
    for name in ("since", "until"):
        value = params.get(name, "").strip()
        if not value:
            continue
        try:
            if len(value) != 10:
                raise ValueError(value)
            sane_date(date.fromisoformat(value))  # 9999-12-31 plus a day would overflow
        except ValueError:
            search.errors.append(name)
        else:
            setattr(search, name, value)
    cursor = params.get("cursor", "")
    if _ID.fullmatch(cursor):
        search.cursor = cursor
    elif cursor:
        search.errors.append("cursor")
    return search
