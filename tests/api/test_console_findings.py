"""The console shows issue 16's findings: the sender verdict (DKIM/SPF/DMARC, From mismatch,
look-alike display name), the disarmed QR list and the monthly report download — every value
a sender controls escaped and with bidi/invisible characters spelled out."""

from __future__ import annotations

import csv
import io
import time

from gateway.model import Action, MessageReport, PartReport, ScanResult
from gateway.store.repository import Store
from tests.api.test_console import Console, csrf_of
from tests.api.test_console import console as console  # noqa: F401 - fixture
from tests.store.seed import add_message

RLO = "\u202e"
EVIL_QR = f"hxxps://evil[.]example/<script>alert(1)</script>{RLO}gpj.exe"
VERDICT = {
    "overall": "suspicious",
    "reasons": ["dmarc_fail", "display_name_lookalike", "envelope_mismatch", "<b>x</b>"],
    "lookalike": [f"town.example.lg.jp{RLO}moc"],
    "dkim": [{"result": "fail", "domain": "evil.example", "selector": "<i>s1</i>"}],
    "spf": "pass",
    "dmarc": "fail",
    "dmarc_policy": "reject",
    "spf_domain": "evil.example",
    "evaluated": True,
    "upstream": "",
    "from_domain": "town.example.lg.jp",
    "envelope_mismatch": True,
}


def seed(store: Store, verdict: dict[str, object] | None = None) -> str:
    mid = add_message(store, status="seeded-only", mail_from="x@evil.example")
    inner = PartReport("2.1", "inner.png", "image/png", "png", Action.CONVERTED,
                       reasons=("qr_listed",), qr=("hxxp://nested[.]example/",))  # fmt: skip
    parts = [
        PartReport("1", "", "text/plain", "text/plain", Action.BODY, (), 10),
        PartReport(
            "2", "a.zip", "application/zip", "zip", Action.CONVERTED, (), 10, children=(inner,)
        ),  # fmt: skip
        PartReport(
            "3",
            f"qr{RLO}gnp.png",
            "image/png",
            "png",
            Action.CONVERTED,
            reasons=("qr_listed",),
            qr=(EVIL_QR,),
        ),  # fmt: skip
    ]
    store.record_report(
        mid, MessageReport(parts=parts, tokens=[], subject="請求書", message_id="<q@example.com>",
        header_from="x", scan=ScanResult(clean=True, auth=verdict or VERDICT), timings={}),
    )  # fmt: skip
    store.mark_delivered(mid, b"Subject: s\r\n\r\nbody\r\n", 1)
    return mid


async def test_detail_shows_the_verdict_escaped_and_bidi_safe(console: Console) -> None:  # noqa: F811
    mid = seed(console.gw.store)
    viewer = await console.sign_in("viewer")
    html = (await viewer.page(f"/messages/{mid}")).text
    auth = html[html.index('id="auth"') : html.index("</table>", html.index('id="auth"'))]
    assert "なりすましの疑い" in auth and "DMARC 認証に失敗" in auth
    assert "<code>pass</code> <small>evil.example</small>" in auth
    assert "p=<code>reject</code>" in auth and "当ゲートウェイで評価" in auth
    assert "d=<code>evil.example</code>" in auth and "&lt;i&gt;s1&lt;/i&gt;" in auth
    assert "&lt;b&gt;x&lt;/b&gt;" in auth and "<b>x</b>" not in auth
    assert "town.example.lg.jp⟨U+202E⟩moc" in auth
    assert "<strong>あり</strong>" in auth
    assert RLO not in html


async def test_detail_lists_qr_codes_disarmed_nested_included(console: Console) -> None:  # noqa: F811
    mid = seed(console.gw.store)
    viewer = await console.sign_in("viewer")
    html = (await viewer.page(f"/messages/{mid}")).text
    qr = html[html.index('id="qr"') : html.index("</table>", html.index('id="qr"'))]
    assert "hxxp://nested[.]example/" in qr and "inner.png" in qr
    assert "&lt;script&gt;alert(1)&lt;/script&gt;⟨U+202E⟩gpj.exe" in qr
    assert "<script>" not in qr and "qr⟨U+202E⟩gnp.png" in qr
    assert "href" not in qr  # text, never a link


async def test_upstream_source_and_records_without_a_verdict(console: Console) -> None:  # noqa: F811
    store = console.gw.store
    up = seed(store, {"overall": "pass", "dkim": [], "spf": "pass", "dmarc": "pass",
                      "upstream": "mx.pref.example.lg.jp", "evaluated": False})  # fmt: skip
    bare = add_message(store, status="seeded-only")
    viewer = await console.sign_in("viewer")
    html = (await viewer.page(f"/messages/{up}")).text
    assert "上流の判定" in html and "mx.pref.example.lg.jp" in html and "認証済み" in html
    html = (await viewer.page(f"/messages/{bare}")).text
    assert 'id="auth"' not in html and 'id="qr"' not in html


async def test_garbage_verdict_records_do_not_break_the_page(console: Console) -> None:  # noqa: F811
    store = console.gw.store
    mid = seed(store, {"overall": "x" * 5000, "dkim": "notalist", "lookalike": {"a": 1},
                       "reasons": [{"x": 1}, None], "spf": ["x"]})  # fmt: skip
    viewer = await console.sign_in("viewer")
    r = await viewer.page(f"/messages/{mid}")
    assert r.status_code == 200 and "x" * 301 not in r.text


async def test_monthly_report_page_and_download(console: Console) -> None:  # noqa: F811
    store = console.gw.store
    add_message(store, status="delivered", received_at=time.time())
    auditor = await console.sign_in("auditor")
    page = await auditor.page("/reports")
    assert page.status_code == 200 and 'id="report-form"' in page.text
    month = time.strftime("%Y-%m", time.localtime(time.time() + 9 * 3600 - time.timezone))
    audited_before: list[str] = []
    for encoding in ("utf-8-sig", "cp932"):
        r = await auditor.client.post(
            "/reports/monthly",
            data={"csrf": csrf_of(page.text), "month": month, "encoding": encoding},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        api = await console.client().get(
            f"/api/v1/reports/monthly?month={month}&encoding={encoding}",
            headers={"Authorization": f"Bearer {console.tokens['auditor']}"},
        )
        assert api.status_code == 200
        rows = list(csv.reader(io.StringIO(r.content.decode(encoding))))
        api_rows = list(csv.reader(io.StringIO(api.content.decode(encoding))))
        # The same report; only the audited-operations count moved (this download itself).
        assert [x for x in rows if x[0] != "audit"] == [x for x in api_rows if x[0] != "audit"]
        counted = [x for x in api_rows if x[:2] == ["audit", "report.monthly"]]
        assert counted == [["audit", "report.monthly", "", str(2 * len(audited_before) + 2)]], (
            api_rows
        )
        audited_before.append(encoding)
        assert any(x[0] != "audit" for x in rows[1:])
    audited = store.audit_entries(action="report.monthly")
    assert len(audited) == 4 and {e.actor for e in audited} == {"token:auditor"}


async def test_monthly_report_needs_audit_rights_csrf_and_a_month(console: Console) -> None:  # noqa: F811
    viewer = await console.sign_in("viewer")
    assert (await viewer.page("/reports")).status_code == 403
    r = await viewer.post("/reports/monthly", {"month": "2026-11"})
    assert r.status_code == 403
    auditor = await console.sign_in("auditor")
    r = await auditor.client.post("/reports/monthly", data={"csrf": "nope", "month": "2026-11"})
    assert r.status_code in (400, 403)
    for bad in ("2026-13", "x", "", "2026-11\x00"):
        r = await auditor.post("/reports/monthly", {"month": bad}, csrf_from="/reports")
        assert r.status_code == 422, bad
    r = await auditor.post("/reports/monthly", {"month": "2026-11", "encoding": "utf-7"},
                           csrf_from="/reports")  # fmt: skip
    assert r.status_code == 422
    assert console.gw.store.audit_entries(action="report.monthly") == []
    nav = (await auditor.page("/messages")).text
    assert 'href="/reports"' in nav
    assert 'href="/reports"' not in (await viewer.page("/messages")).text
