"""Bounds for query parameters the API and console accept (bad input is 422, never a 500).

A date at the edge of the calendar (``9999-12-31`` plus a day, ``0001-01-01T00:00:00+14:00``
in UTC) overflows Python's datetime on the way to the database; nothing real is older than
the Unix epoch or later than the year 2999, so both ends are refused with a message instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator

MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2999, 12, 31)


def sane_datetime(value: datetime) -> datetime:
    """Within MIN_DATE..MAX_DATE, as an aware UTC datetime (naive input is taken as UTC)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    try:
        in_utc = aware.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"date out of range ({MIN_DATE} to {MAX_DATE})") from exc
    if not MIN_DATE <= in_utc.date() <= MAX_DATE:
        raise ValueError(f"date out of range ({MIN_DATE} to {MAX_DATE})")
    return in_utc


def sane_date(value: date) -> date:
    if not MIN_DATE <= value <= MAX_DATE:
        raise ValueError(f"date out of range ({MIN_DATE} to {MAX_DATE})")
    return value


def no_controls(value: str) -> str:
    """Search text without control characters (PostgreSQL cannot even take a NUL: a 500)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("control characters are not allowed")
    return value


SaneDatetime = Annotated[datetime, AfterValidator(sane_datetime)]
SearchText = Annotated[str, AfterValidator(no_controls)]
