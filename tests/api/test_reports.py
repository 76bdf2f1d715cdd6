"""GET /api/v1/reports/monthly: roles, encodings, bad months, and the download is audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.api.conftest import Api


def _now_month() -> str:
    return f"{datetime.now(UTC).astimezone():%Y-%m}"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp932"])
async def test_auditor_downloads_csv(api: Api, seed: Callable[..., str], encoding: str) -> None:
    # Mid-month UTC, so the Tokyo month is the same whatever day the test runs.
    at = datetime.now(UTC).replace(day=15, hour=3).timestamp()
    seed(mail_from="=cmd|' /C calc'!A0@evil.example", status="quarantined", received_at=at)
    month = f"{datetime.fromtimestamp(at, UTC):%Y-%m}"
    r = await api.get(
        "/api/v1/reports/monthly", "auditor", params={"month": month, "encoding": encoding}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert f"mugai-{month}.csv" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode(encoding), newline="")))
    senders = [row[1] for row in rows if row[0] == "top_sender"]
    assert senders == ["'=cmd|' /c calc'!a0@evil.example"]
    assert [row[3] for row in rows if row[0] == "period"] == ["1"]
    audit = api.gw.store.audit_entries(action="report.monthly")
    assert [(a.actor, a.target) for a in audit] == [("token:auditor", month)]


@pytest.mark.parametrize("role", ["viewer", "operator", "approver"])
async def test_other_roles_are_refused(api: Api, role: str) -> None:
    r = await api.get("/api/v1/reports/monthly", role, params={"month": _now_month()})
    assert r.status_code == 403
    assert not api.gw.store.audit_entries(action="report.monthly")


@pytest.mark.parametrize(
    "params",
    [{"month": "2026-13"}, {"month": "2026-1"}, {}, {"month": _now_month(), "encoding": "latin-1"}],
)
async def test_bad_requests(api: Api, params: dict[str, str]) -> None:
    r = await api.get("/api/v1/reports/monthly", "admin", params=params)
    assert r.status_code == 422
    assert not api.gw.store.audit_entries(action="report.monthly")


async def test_no_token(api: Api) -> None:
    r = await api.client.get("/api/v1/reports/monthly", params={"month": _now_month()})
    assert r.status_code == 401
