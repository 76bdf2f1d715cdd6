"""The web console against the real app (httpx over ASGI), a real Store and a real SMTP sink."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.console.session import COOKIE, LOGIN_COOKIE, SessionStore
from gateway.api.main import create_app
from gateway.model import Action, MessageReport, PartReport, ScanResult
from gateway.relay import SmtpRelay
from gateway.store.repository import Store
from tests.api.conftest import ROLES, mini_gateway
from tests.plugins.smtp_sink import Sink
from tests.store.seed import add_message

BASE = "http://localhost"
# Releasing an original is an exception (例外措置): a category and the acknowledgement.
ACK = {"exception_ack": "1"}
EXC = {"category": "business_required", **ACK}
MID = "<quote-2024-001@vendor.example.co.jp>"
EVIL_SUBJECT = '<img src=x onerror="alert(1)">見積書'

ORIGINAL = (
    "From: 取引先 <sales@vendor.example.co.jp>\r\n"
    "To: keiyaku@town.example.lg.jp\r\n"
    "Subject: =?UTF-8?B?44GK6KaL56mN44KK?=\r\n"
    f"Message-ID: {MID}\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    '<html><body><script>alert("original-xss")</script>'
    "<p>ORIGINAL-HTML-ONLY <b>太字</b></p>"
    '<img src="http://tracker.evil.example/pixel.png"></body></html>\r\n'
).encode()

SANITIZED_TEXT = (
    "【無害化通知】このメールは無害化されました。\n"
    "お世話になっております。見積書を送付いたします。\n"
    "<script>this is plain text</script> & ご確認ください。\n"
)


def sanitized_copy() -> bytes:
    msg = EmailMessage()
    msg["Subject"] = "お見積り"
    msg["Message-ID"] = MID
    msg.set_content(SANITIZED_TEXT)
    msg.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="見積書.pdf"
    )
    return msg.as_bytes()


def seed_quote(store: Store, *, subject: str = EVIL_SUBJECT) -> str:
    """A delivered mail whose original is hostile HTML and whose sanitized copy is text."""
    mid = add_message(
        store,
        status="seeded-only",
        message_id=MID,
        raw=ORIGINAL,
        mail_from="sales@vendor.example.co.jp",
        rcpt_tos=("keiyaku@town.example.lg.jp",),
    )
    parts = [
        PartReport("1", "", "text/html", "text/html", Action.BODY, ("html_to_text",), 300),
        PartReport(
            "2",
            "見積書.docm",
            "application/vnd.ms-word.document.macroEnabled.12",
            "docm",
            Action.CONVERTED,
            ("macros_removed",),
            48_000,
            "cd" * 32,
            ("見積書.pdf",),
        ),
        PartReport(
            "3",
            "setup.exe",
            "application/octet-stream",
            "exe",
            Action.REMOVED,
            ("executable",),
            9000,
        ),
    ]
    store.record_report(
        mid,
        MessageReport(
            parts=parts,
            tokens=["CHG_TEXT", "CONV_ATTACH", "DEL_ATTACH"],
            subject=subject,
            message_id=MID,
            header_from="取引先 <sales@vendor.example.co.jp>",
            scan=ScanResult(clean=True, signature=""),
            timings={"scan": 0.01},
        ),
    )
    store.mark_delivered(mid, sanitized_copy(), 1)
    return mid


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@dataclass
class Person:
    client: httpx.AsyncClient
    name: str

    async def page(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, **kw)

    async def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        csrf_from: str = "/messages",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        token = csrf_of((await self.client.get(csrf_from)).text)
        return await self.client.post(path, data={"csrf": token, **(data or {})}, headers=headers)


@dataclass
class Console:
    app: Any
    gw: Any
    sink: Sink
    tokens: dict[str, str]
    clients: list[httpx.AsyncClient]

    def client(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)
        self.clients.append(c)
        return c

    async def sign_in(self, who: str) -> Person:
        c = self.client()
        form = await c.get("/login")
        assert form.status_code == 200
        r = await c.post("/login", data={"csrf": csrf_of(form.text), "token": self.tokens[who]})
        assert r.status_code == 303 and r.headers["location"] == "/messages", r.text
        return Person(c, who)


@pytest.fixture
async def console(
    tmp_path: Path, store: Store, smtp_sink: Sink, clamd_address: str
) -> AsyncIterator[Console]:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=10)
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd_address)
    tokens = {role: store.create_token(role, role, "test")[0] for role in ROLES}
    tokens["approver2"] = store.create_token("approver2", "approver", "test")[0]
    con = Console(create_app(gw), gw, smtp_sink, tokens, [])
    yield con
    for c in con.clients:
        await c.aclose()


# -- sign-in and sessions --------------------------------------------------------------------
async def test_sign_in_sets_a_server_side_session_cookie(console: Console) -> None:
    c = console.client()
    assert (await c.get("/")).headers["location"] == "/login"
    assert (await c.get("/messages")).headers["location"] == "/login"
    form = await c.get("/login")
    assert "サインイン" in form.text and form.headers["cache-control"] == "no-store"
    r = await c.post("/login", data={"csrf": csrf_of(form.text), "token": console.tokens["viewer"]})
    assert r.status_code == 303
    cookie = next(
        v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE + "=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    sid = cookie.split(";", 1)[0].split("=", 1)[1]
    assert console.tokens["viewer"] not in cookie and len(sid) >= 40
    sessions: SessionStore = console.app.state.console_sessions
    session = sessions.get(sid)
    assert session is not None and session.principal.name == "viewer"
    assert not any(console.tokens["viewer"] in repr(v) for v in vars(session).values())
    page = await c.get("/messages")
    assert page.status_code == 200 and "メール一覧" in page.text and "閲覧者" in page.text
    # Sign-out forgets the session server-side; the old cookie is worthless afterwards.
    out = await c.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and sessions.get(sid) is None
    replay = console.client()
    replay.cookies.set(COOKIE, sid)
    assert (await replay.get("/messages")).status_code == 303
    audit = console.gw.store.audit_entries(action="console.signin")
    assert [e.actor for e in audit] == ["token:viewer"]


async def test_wrong_token_and_missing_login_nonce(console: Console) -> None:
    c = console.client()
    form = await c.get("/login")
    r = await c.post("/login", data={"csrf": csrf_of(form.text), "token": "mgt_wrong"})
    assert r.status_code == 401 and "トークンが正しくない" in r.text
    assert COOKIE not in r.cookies
    r = await c.post("/login", data={"csrf": csrf_of(r.text), "token": "x" * 5000})
    assert r.status_code == 401
    bare = console.client()  # no login cookie: a forged sign-in form from elsewhere
    r = await bare.post("/login", data={"csrf": "guess", "token": console.tokens["admin"]})
    assert r.status_code == 403 and COOKIE not in r.cookies
    login_cookie = next(
        v for k, v in form.headers.multi_items() if k == "set-cookie" and v.startswith(LOGIN_COOKIE)
    )
    assert "samesite=strict" in login_cookie.lower() and "httponly" in login_cookie.lower()


async def test_revoked_token_ends_its_session(console: Console) -> None:
    viewer = await console.sign_in("viewer")
    assert (await viewer.page("/messages")).status_code == 200
    console.gw.store.revoke_tokens("viewer", "test")
    r = await viewer.page("/messages")
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_security_headers(console: Console) -> None:
    viewer = await console.sign_in("viewer")
    for path in ("/login", "/messages", "/releases", "/nonexistent-page"):
        r = await viewer.page(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "img-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert (await viewer.page("/messages")).headers["cache-control"] == "no-store"
    css = await viewer.page("/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


# -- list, search, preview -------------------------------------------------------------------
async def test_list_and_search_by_message_id(console: Console) -> None:
    store = console.gw.store
    mid = seed_quote(store)
    other = add_message(store, message_id="<other@example.com>", status="quarantined")
    viewer = await console.sign_in("viewer")
    everything = (await viewer.page("/messages")).text
    assert mid in everything and other in everything
    for query in (MID, MID.strip("<>")):
        r = await viewer.page("/messages", params={"message_id": query})
        assert r.status_code == 200 and mid in r.text and other not in r.text
    r = await viewer.page("/messages", params={"status": "quarantined"})
    assert other in r.text and mid not in r.text
    r = await viewer.page("/messages", params={"sender": "sales@vendor.example.co.jp"})
    assert mid in r.text and other not in r.text
    r = await viewer.page("/messages", params={"recipient": "keiyaku@town.example.lg.jp"})
    assert mid in r.text and other not in r.text
    r = await viewer.page("/messages", params={"since": "2000-01-01", "until": "2000-01-31"})
    assert mid not in r.text and "該当するメールはありません" in r.text
    # Bad input is bounded and reported on the page, never a 500 or a JSON error.
    r = await viewer.page(
        "/messages",
        params={"status": "bogus", "since": "yesterday", "cursor": "../../x", "sender": "a" * 5000},
    )
    assert r.status_code == 422 and "正しくないため無視しました" in r.text


async def test_paging(console: Console) -> None:
    store = console.gw.store
    ids = [add_message(store, message_id=f"<p{i}@example.com>") for i in range(53)]
    viewer = await console.sign_in("viewer")
    first = (await viewer.page("/messages")).text
    nxt = re.search(r'href="/messages\?([^"]+)" class="button" id="next"', first)
    assert nxt and ids[-1] in first and ids[0] not in first
    second = (await viewer.page("/messages?" + nxt.group(1).replace("&amp;", "&"))).text
    assert ids[0] in second and ids[-1] not in second and 'id="next"' not in second


async def test_preview_shows_sanitized_text_never_the_original(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    viewer = await console.sign_in("viewer")
    r = await viewer.page(f"/messages/{mid}")
    assert r.status_code == 200
    html = r.text
    # The sanitized body, escaped inside <pre>; the hostile subject escaped too.
    assert "お世話になっております。見積書を送付いたします。" in html
    assert "&lt;script&gt;this is plain text&lt;/script&gt; &amp; ご確認ください。" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;見積書" in html
    # The part table.
    for cell in ("見積書.docm", "docm", "macros_removed", "setup.exe", "executable", "削除"):
        assert cell in html
    # Nothing of the original: no script, no HTML, no remote resource.
    for leak in ("original-xss", "ORIGINAL-HTML-ONLY", "tracker.evil.example", "<b>太字"):
        assert leak not in html
    assert "<script" not in html.lower() and 'onerror="' not in html and "<img" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # A viewer sees no download or request forms.
    assert "/original" not in html and "request-form" not in html


async def test_preview_of_a_quarantined_message_has_no_body(console: Console) -> None:
    mid = add_message(console.gw.store, status="quarantined", raw=ORIGINAL)
    viewer = await console.sign_in("viewer")
    html = (await viewer.page(f"/messages/{mid}")).text
    assert "無害化後のコピーはありません" in html and "original-xss" not in html
    assert (await viewer.page("/messages/nope!")).status_code == 404
    assert (await viewer.page("/messages/000000000000ffffffffff")).status_code == 404


# -- roles -----------------------------------------------------------------------------------
async def test_role_checks_match_the_api(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    viewer = await console.sign_in("viewer")
    auditor = await console.sign_in("auditor")
    operator = await console.sign_in("operator")
    r = await viewer.page("/audit")
    assert r.status_code == 403 and "権限がありません" in r.text
    for person in (viewer, auditor):
        r = await person.post(f"/messages/{mid}/original")
        assert r.status_code == 403 and "権限がありません" in r.text
        r = await person.post(f"/messages/{mid}/release-requests", {"reason": "必要"})
        assert r.status_code == 403
    assert (await operator.page("/audit")).status_code == 403
    page = await auditor.page("/audit")
    assert page.status_code == 200 and "token.create" in page.text
    assert console.gw.store.release_requests() == []
    assert console.gw.store.audit_entries(action="original.read") == []


async def test_operator_downloads_the_original_and_it_is_audited(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    r = await operator.post(f"/messages/{mid}/original", csrf_from=f"/messages/{mid}")
    assert r.status_code == 200 and r.content == ORIGINAL
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["content-type"].startswith("message/rfc822")
    assert "sandbox" in r.headers["content-security-policy"]
    reads = console.gw.store.audit_entries(action="original.read", target=mid)
    assert [e.actor for e in reads] == ["token:operator"]


# -- CSRF --------------------------------------------------------------------------------------
async def test_csrf_missing_wrong_or_foreign_origin(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    c = operator.client
    path = f"/messages/{mid}/release-requests"
    token = csrf_of((await c.get(f"/messages/{mid}")).text)
    assert (await c.post(path, data={"reason": "必要"})).status_code == 403
    r = await c.post(path, data={"reason": "必要", "csrf": "wrong" + token})
    assert r.status_code == 403 and "フォームが無効" in r.text
    # Another session's token does not fit this session.
    other = csrf_of((await (await console.sign_in("admin")).page("/messages")).text)
    assert (await c.post(path, data={"reason": "必要", "csrf": other})).status_code == 403
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://console.test.evil.example"},
    ):
        r = await c.post(path, data={"reason": "必要", "csrf": token}, headers=headers)
        assert r.status_code == 403 and "他のサイト" in r.text
    r = await c.post(
        f"/messages/{mid}/original",
        data={"csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert console.gw.store.release_requests() == []
    assert console.gw.store.audit_entries(action="original.read") == []
    # The same form from our own origin goes through.
    r = await c.post(
        path,
        data={"reason": "必要", "csrf": token, **EXC},
        headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 303
    assert [q.reason for q in console.gw.store.release_requests()] == ["必要"]
    # Sign-out needs the token as well.
    assert (await c.post("/logout", data={})).status_code == 403
    assert (await c.get("/messages")).status_code == 200


async def test_oversized_or_odd_forms_are_refused(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    c = operator.client
    token = csrf_of((await c.get(f"/messages/{mid}")).text)
    path = f"/messages/{mid}/release-requests"
    r = await c.post(path, data={"csrf": token, "reason": "x" * 20_000})
    assert r.status_code == 413
    r = await c.post(path, files={"reason": ("a.txt", b"x")}, data={"csrf": token})
    assert r.status_code == 415
    r = await c.post(
        path,
        content=b"csrf=" + token.encode() + b"&reason=%ff%fe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    r = await c.post(path, data={"csrf": token, "reason": "   "})
    assert r.status_code == 400 and "理由を入力" in r.text
    assert console.gw.store.release_requests() == []


# -- two-person release ----------------------------------------------------------------------
async def test_request_then_another_person_approves(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    r = await operator.post(
        f"/messages/{mid}/release-requests",
        {"reason": "正式な見積書です", **EXC},
        csrf_from=f"/messages/{mid}",
    )
    assert r.status_code == 303 and r.headers["location"] == f"/messages/{mid}"
    page = (await operator.page(f"/messages/{mid}")).text
    assert "解放を申請しました" in page and "正式な見積書です" in page and "承認待ち" in page
    assert "/approve" not in page  # an operator cannot decide
    (req,) = console.gw.store.release_requests()
    r = await operator.post(f"/release-requests/{req.id}/approve")
    assert r.status_code == 403
    approver = await console.sign_in("approver")
    pending = (await approver.page("/releases")).text
    assert req.id in pending and mid in pending
    r = await approver.post(
        f"/release-requests/{req.id}/approve",
        {"reason": "確認済", **ACK},
        csrf_from=f"/messages/{mid}",
    )
    assert r.status_code == 303, r.text
    page = (await approver.page(f"/messages/{mid}")).text
    assert "承認しました" in page and "解放済み" in page
    got = console.sink.messages[-1]
    assert got.rcpt_tos == ["keiyaku@town.example.lg.jp"]
    assert got.data.split(b"\r\n", 1)[0] == b"X-Mugai-Released-By: approver"
    assert got.data.split(b"\r\n", 1)[1] == ORIGINAL
    actions = [e.action for e in reversed(console.gw.store.audit_entries(target=mid))]
    assert actions == ["release.request", "release.approve", "release.delivered"]
    assert console.gw.store.verify_audit().ok


async def test_the_requester_cannot_approve_their_own_request(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    approver = await console.sign_in("approver")
    await approver.post(f"/messages/{mid}/release-requests", {"reason": "自分で申請", **EXC})
    (req,) = console.gw.store.release_requests()
    page = (await approver.page(f"/messages/{mid}")).text
    assert "ご自身の申請は承認できません" in page
    assert f"/release-requests/{req.id}/approve" not in page
    for action in ("approve", "reject"):
        r = await approver.post(f"/release-requests/{req.id}/{action}")
        assert r.status_code == 403 and "申請者本人は承認・却下できません" in r.text
    assert console.sink.messages == []
    other = await console.sign_in("approver2")
    r = await other.post(f"/release-requests/{req.id}/reject", {"reason": "不要"})
    assert r.status_code == 303
    assert console.gw.store.release_request(req.id).status == "rejected"
    r = await other.post(f"/release-requests/{req.id}/approve")
    assert r.status_code == 409 and "既に処理されています" in r.text
    assert console.sink.messages == []


async def test_relay_failure_is_shown_and_can_be_retried(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    await operator.post(f"/messages/{mid}/release-requests", {"reason": "必要", **EXC})
    (req,) = console.gw.store.release_requests()
    console.sink.data_reply = "554 5.7.1 no"
    approver = await console.sign_in("approver")
    r = await approver.post(f"/release-requests/{req.id}/approve", ACK)
    assert r.status_code == 303
    page = (await approver.page(f"/messages/{mid}")).text
    assert "配送に失敗しました" in page and "配送失敗" in page
    console.sink.data_reply = None
    r = await approver.post(f"/release-requests/{req.id}/approve", ACK)
    assert r.status_code == 303 and len(console.sink.messages) == 1


def test_session_store_expires_and_stays_bounded() -> None:
    from gateway.store.tokens import Principal

    who = Principal(1, "viewer", "viewer")
    expired = SessionStore(idle=-1)
    assert expired.get(expired.create(who).id) is None
    small = SessionStore(limit=2)
    first, second, third = (small.create(who) for _ in range(3))
    assert small.get(first.id) is None and len(small) == 2
    assert small.get(second.id) is second and small.get(third.id) is third
    assert small.get("x" * 500) is None and small.get(None) is None
    small.drop_token(1)
    assert len(small) == 0


async def test_uploaded_file_detail_has_no_mail_preview(console: Console) -> None:
    mid = add_message(console.gw.store, kind="file", filename="<b>報告書</b>.pdf")
    operator = await console.sign_in("operator")
    r = await operator.page(f"/messages/{mid}")
    assert r.status_code == 200 and "本文プレビューはありません" in r.text
    assert "&lt;b&gt;報告書&lt;/b&gt;.pdf" in r.text and "request-form" not in r.text


async def test_a_release_the_rescan_refuses_says_why_and_asks_for_unscanned(
    console: Console,
) -> None:
    """The console side of tests/api/test_release_rescan.py: clamd cannot take the original,
    the approver is told why and given the field to type ``unscanned``."""
    from gateway.scan.clamd import ClamdScanner

    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    await operator.post(
        f"/messages/{mid}/release-requests", {"reason": "必要", **EXC}, csrf_from=f"/messages/{mid}"
    )
    (req,) = console.gw.store.release_requests()
    real = console.gw.scanner
    console.gw.scanner = ClamdScanner(real.address, timeout=10, max_stream_bytes=16)
    approver = await console.sign_in("approver")
    r = await approver.post(
        f"/release-requests/{req.id}/approve", {"reason": "", **ACK}, csrf_from=f"/messages/{mid}"
    )
    assert r.status_code == 303, r.text
    page = (await approver.page(f"/messages/{mid}")).text
    assert "ウイルス検査の上限を超える" in page and "<code>unscanned</code>" in page
    assert console.sink.messages == []
    r = await approver.post(
        f"/release-requests/{req.id}/approve",
        {"reason": "", "confirm_signature": "unscanned", **ACK},
        csrf_from=f"/messages/{mid}",
    )
    assert r.status_code == 303, r.text
    assert "解放済み" in (await approver.page(f"/messages/{mid}")).text
    assert len(console.sink.messages) == 1
