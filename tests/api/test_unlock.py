"""PPAP unlock end to end (issue 12 item 5): a password ZIP arrives over SMTP at a real
gateway (real clamd, real relay sink, SQLite and PostgreSQL), is withheld as ``encrypted``;
an operator posts the password; the sanitized contents arrive as a NEW message threaded
under the original.

Attacks tried: wrong passwords (counted, then 429 even for the right one), a virus inside
the encryption (clamd never saw it before), clamd down at unlock time, a second unlock of
the same part, a viewer, a part that is not encrypted, a malformed body carrying the
password, and the password leaking into the database, the logs, the audit, the spool or the
delivered mail.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import logging
import re
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from gateway.api.main import create_app
from gateway.app import Gateway
from gateway.scan.clamd import ClamdScanner
from gateway.store.models import Base
from tests.checks import check_delivered
from tests.plugins.clamd import EICAR
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink
from tests.unlock.ppap import aes_zip, zipcrypto_zip
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(300)

PASSWORD = "Ppap-秘密-7f3a9c!"
RCPTS = ["staff@town.example.lg.jp", "boss@town.example.lg.jp"]
MEMBERS = {
    "見積書.txt": "お見積りは 12,000 円です。\n".encode(),
    "明細/単価.csv": "品名,単価\nねじ,100\n".encode(),
    "setup.exe": b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 100,
}


@dataclass
class Ppap:
    gw: Gateway
    sink: Sink
    client: httpx.AsyncClient
    tokens: dict[str, str]

    async def unlock(self, mid: str, part: str, password: str, who: str = "operator") -> Any:
        return await self.client.post(
            f"/api/v1/messages/{mid}/unlock",
            json={"part": part, "password": password},
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )


@pytest.fixture
async def ppap(
    gateway_factory: Callable[..., Any], smtp_sink: Sink, store_url: str
) -> AsyncIterator[Ppap]:
    gw = await gateway_factory(
        smtp_sink, storage={"database_url": store_url}, unlock={"max_wrong_passwords": 3}
    )
    tokens = {role: gw.store.create_token(role, role, "test")[0] for role in ("operator", "viewer")}
    transport = httpx.ASGITransport(app=create_app(gw))
    base = "http://localhost"
    async with httpx.AsyncClient(transport=transport, base_url=base, timeout=120) as c:
        yield Ppap(gw, smtp_sink, c, tokens)


def ppap_mail(attachment: bytes, filename: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "取引先 <partner@example.com>"
    msg["To"] = ", ".join(RCPTS)
    msg["Subject"] = "お見積りの件"
    msg["Message-ID"] = message_id
    msg["References"] = "<earlier@example.com>"
    msg.set_content("見積書を送ります。パスワードは別メールでお送りします。\n")
    maintype, _, subtype = (
        "application/zip" if filename.endswith(".zip") else "application/pdf"
    ).partition("/")
    msg.add_attachment(attachment, maintype=maintype, subtype=subtype, filename=filename)
    msg.add_attachment("よろしくお願いします。\n".encode(), maintype="text", subtype="plain",
                       filename="メモ.txt")  # fmt: skip
    return msg.as_bytes()


async def deliver_ppap(
    p: Ppap, attachment: bytes, filename: str = "見積書.zip", message_id: str = "<ppap-1@ex.jp>"
) -> tuple[str, str]:
    """Send it; wait for the first (attachment withheld) delivery; (mugai id, part index)."""
    before = len(p.sink.messages)
    await asend(p.gw, ppap_mail(attachment, filename, message_id), rcpt=RCPTS,
                mail_from="partner@example.com")  # fmt: skip
    await p.sink.wait_for(before + 1)
    # The record is written just after the relay said 250.
    (row,) = await eventually_async(
        lambda: [r for r in p.gw.store.find(message_id=message_id) if r.status == "delivered"],
        timeout=10,
        interval=0.05,
    )
    encrypted = [q for q in row.parts if "encrypted" in q["reasons"]]
    assert len(encrypted) == 1, row.parts
    return row.id, encrypted[0]["index"]


def audit_rows(p: Ppap, mid: str) -> list[tuple[str, dict[str, Any]]]:
    rows = p.gw.store.audit_entries(target=mid, limit=1000)
    return [(r.action, r.detail) for r in reversed(rows) if r.action.startswith("unlock.")]


@pytest.mark.parametrize("make_zip", [zipcrypto_zip, aes_zip], ids=["zipcrypto", "aes"])
async def test_right_password_delivers_sanitized_contents_threaded(
    ppap: Ppap, make_zip: Callable[[dict[str, bytes], str], bytes]
) -> None:
    mid, part = await deliver_ppap(ppap, make_zip(MEMBERS, PASSWORD))
    first = email.message_from_bytes(ppap.sink.messages[0].data, policy=email.policy.default)
    assert "DEL_ATTACH" in first["X-Mugai-Sanitized"]

    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "delivered" and sorted(out["accepted"]) == sorted(RCPTS)

    (got,) = ppap.sink.messages[1:]
    assert sorted(got.rcpt_tos) == sorted(RCPTS) and got.mail_from == "partner@example.com"
    msg = check_delivered(got.data)  # the same contract as every delivery (§4.4)
    assert msg["In-Reply-To"] == "<ppap-1@ex.jp>"
    assert msg["References"].split() == ["<earlier@example.com>", "<ppap-1@ex.jp>"]
    assert msg["Message-ID"] == out["message_id"] != "<ppap-1@ex.jp>"
    assert msg["Subject"] == "【パスワード解除・無害化済み】お見積りの件"
    assert msg["X-Mugai-Id"] == mid
    body = msg.get_body(("plain",))
    assert body is not None
    notice = body.get_content()
    assert "パスワードを入力して解除" in notice and mid in notice
    files = {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}
    assert files["見積書.txt"].decode("utf-8").splitlines() == ["お見積りは 12,000 円です。"]
    assert "ねじ,100" in files["明細_単価.csv"].decode("utf-8-sig")
    # The normal sanitizers ran on the contents: the program inside was removed, and said so.
    assert not any(name.endswith(".exe") for name in files)
    assert "DEL_ATTACH" in msg["X-Mugai-Sanitized"] and "setup.exe" in notice
    assert set(out["reasons"]) & {"unsupported_type", "type_mismatch"}
    assert PASSWORD.encode() not in got.data

    actions = audit_rows(ppap, mid)
    assert [a for a, _ in actions] == ["unlock.attempt", "unlock.result"]
    result = actions[1][1]
    assert result["outcome"] == "delivered" and result["message_id"] == out["message_id"]
    assert result["part"] == part and sorted(result["accepted"]) == sorted(RCPTS)
    assert ppap.gw.store.blob(mid, f"u:{part}") == got.data  # the new delivery is recorded

    again = await ppap.unlock(mid, part, PASSWORD)  # nothing crosses twice
    assert again.status_code == 409 and again.json()["detail"] == "already_unlocked"
    assert len(ppap.sink.messages) == 2


@pytest.mark.parametrize("make_zip", [zipcrypto_zip, aes_zip], ids=["zipcrypto", "aes"])
async def test_wrong_passwords_are_counted_then_rate_limited(
    ppap: Ppap, make_zip: Callable[[dict[str, bytes], str], bytes]
) -> None:
    mid, part = await deliver_ppap(ppap, make_zip(MEMBERS, PASSWORD))
    remaining = []
    for guess in ("password", "Ppap-秘密-7f3a9c", PASSWORD + " "):
        r = await ppap.unlock(mid, part, guess)
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == "wrong_password"
        remaining.append(r.json()["remaining"])
    assert remaining == [2, 1, 0]
    r = await ppap.unlock(mid, part, PASSWORD)  # even the right one, until the window passes
    assert r.status_code == 429 and r.json()["detail"] == "unlock_rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 900
    assert len(ppap.sink.messages) == 1  # only the first, attachment-withheld delivery
    outcomes = [(a, d.get("outcome")) for a, d in audit_rows(ppap, mid)]
    assert outcomes == [
        *[("unlock.attempt", None), ("unlock.result", "wrong_password")] * 3,
        ("unlock.refused", "unlock_rate_limited"),
    ]


async def test_an_unfinished_attempt_counts_as_wrong_and_blocks_a_parallel_one(
    ppap: Ppap,
) -> None:
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    operator = ppap.gw.store.authenticate(ppap.tokens["operator"])
    assert operator is not None
    # A node that died mid-attempt leaves an attempt without a result.
    ppap.gw.store.begin_unlock(mid, part, operator, max_wrong=3, window=900)
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 409 and r.json()["detail"] == "unlock_in_progress"
    assert len(ppap.sink.messages) == 1


async def test_virus_inside_the_encryption_is_found_and_not_delivered(ppap: Ppap) -> None:
    mid, part = await deliver_ppap(ppap, aes_zip({"請求書.txt": EICAR}, PASSWORD))
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 422 and r.json()["detail"] == "virus_found"
    assert len(ppap.sink.messages) == 1
    (_, attempt), (_, result) = audit_rows(ppap, mid)
    assert result["outcome"] == "virus_found" and "EICAR" in result["detail"]
    assert ppap.gw.store.blob(mid, f"u:{part}") is None


async def test_clamd_down_at_unlock_time_is_a_retry_not_a_wrong_password(ppap: Ppap) -> None:
    mid, part = await deliver_ppap(ppap, zipcrypto_zip(MEMBERS, PASSWORD))
    scanner = ppap.gw.scanner
    ppap.gw.scanner = ClamdScanner("127.0.0.1:1", timeout=2)
    try:
        for _ in range(4):  # more than max_wrong_passwords: none of these count
            r = await ppap.unlock(mid, part, PASSWORD)
            assert r.status_code == 503 and r.json()["detail"] == "clamd_unavailable"
    finally:
        ppap.gw.scanner = scanner
    assert len(ppap.sink.messages) == 1
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 200, r.text
    assert len(ppap.sink.messages) == 2


async def test_refusals(ppap: Ppap) -> None:
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    r = await ppap.unlock(mid, part, PASSWORD, who="viewer")
    assert r.status_code == 403
    r = await ppap.client.post(f"/api/v1/messages/{mid}/unlock", json={"part": part,
                               "password": PASSWORD})  # fmt: skip
    assert r.status_code == 401
    r = await ppap.unlock("0000000000000000", part, PASSWORD)
    assert r.status_code == 404 and r.json()["detail"] == "message_not_found"
    r = await ppap.unlock(mid, "9", PASSWORD)
    assert r.status_code == 404 and r.json()["detail"] == "part_not_found"
    row = ppap.gw.store.get(mid)
    assert row is not None
    memo = next(q["index"] for q in row.parts if q["filename"] == "メモ.txt")
    r = await ppap.unlock(mid, memo, PASSWORD)
    assert r.status_code == 409 and r.json()["detail"] == "part_not_encrypted"
    for bad in (
        {"part": "../1", "password": PASSWORD},
        {"part": part, "password": PASSWORD, "extra": PASSWORD},
        {"part": part, "password": PASSWORD * 40},
        {"part": part},
    ):
        r = await ppap.client.post(
            f"/api/v1/messages/{mid}/unlock", json=bad,
            headers={"Authorization": f"Bearer {ppap.tokens['operator']}"},
        )  # fmt: skip
        assert r.status_code == 422, bad
        assert PASSWORD not in r.text and "Ppap" not in r.text  # never echoed
    assert len(ppap.sink.messages) == 1


async def test_password_is_never_stored_logged_or_audited(
    ppap: Ppap, caplog: pytest.LogCaptureFixture, store_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-9d2e41-誤り"
    mid, part = await deliver_ppap(ppap, zipcrypto_zip(MEMBERS, PASSWORD))
    assert (await ppap.unlock(mid, part, wrong)).status_code == 422
    ok = await ppap.unlock(mid, part, PASSWORD)
    assert ok.status_code == 200, ok.text
    secrets = [s.encode("utf-8") for s in (PASSWORD, wrong)] + [
        s.encode("utf-16-le") for s in (PASSWORD, wrong)
    ]

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert not any(s.decode("utf-8", "ignore") in logged for s in secrets[:2])
    assert "unlock part=" in logged  # the attempts were logged, just not the password

    for action, detail in audit_rows(ppap, mid):
        assert PASSWORD not in repr(detail) and wrong not in repr(detail), action

    with ppap.gw.store.engine.connect() as conn:  # every column of every table, as text
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                    assert not any(s in raw for s in secrets), table.name
    data_dir = Path(ppap.gw.settings.storage.data_dir)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    if store_url.startswith("sqlite"):
        files += [p for p in Path(store_url.removeprefix("sqlite:///")).parent.glob("mugai.db*")]
    for path in files:  # the database files themselves (WAL too), the spool, the outbox
        blob = path.read_bytes()
        assert not any(s in blob for s in secrets), path
    for got in ppap.sink.messages:
        assert not any(s in got.data for s in secrets)


async def test_encrypted_pdf_is_unlocked_and_rendered(ppap: Ppap) -> None:
    from tests.unlock.test_decrypt import _encrypted_pdf

    mid, part = await deliver_ppap(ppap, _encrypted_pdf(PASSWORD), filename="請求書.pdf",
                                   message_id="<ppap-pdf@ex.jp>")  # fmt: skip
    assert (await ppap.unlock(mid, part, "nope")).status_code == 422
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 200, r.text
    msg = check_delivered(ppap.sink.messages[-1].data)  # every page an image (check_clean_file)
    assert msg["In-Reply-To"] == "<ppap-pdf@ex.jp>"
    (att,) = [a for a in msg.iter_attachments() if a.get_filename() == "請求書.pdf"]
    assert att.get_content_type() == "application/pdf"


async def _console_sign_in(ppap: Ppap, who: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=ppap.client._transport, base_url="http://localhost")
    form = await c.get("/login")
    r = await c.post("/login", data={"csrf": _csrf(form.text), "token": ppap.tokens[who]})
    assert r.status_code == 303, r.text
    return c


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def test_console_form_unlocks_and_reports(ppap: Ppap) -> None:
    mid, part = await deliver_ppap(ppap, zipcrypto_zip(MEMBERS, PASSWORD))
    viewer = await _console_sign_in(ppap, "viewer")
    assert (
        'action="/messages/' + mid + '/unlock"' not in (await viewer.get(f"/messages/{mid}")).text
    )
    c = await _console_sign_in(ppap, "operator")
    try:
        page = (await c.get(f"/messages/{mid}")).text
        assert f'action="/messages/{mid}/unlock"' in page and 'type="password"' in page
        assert f'name="part" value="{part}"' in page
        token = _csrf(page)
        r = await c.post(f"/messages/{mid}/unlock", data={"part": part, "password": "x"})
        assert r.status_code == 403  # no CSRF token: refused before anything is tried
        r = await c.post(f"/messages/{mid}/unlock",
                         data={"csrf": token, "part": part, "password": "違う"})  # fmt: skip
        assert r.status_code == 303
        shown = (await c.get(f"/messages/{mid}")).text
        assert "パスワードが違います" in shown and "残り 2 回" in shown
        r = await c.post(f"/messages/{mid}/unlock",
                         data={"csrf": token, "part": part, "password": PASSWORD})  # fmt: skip
        assert r.status_code == 303
        shown = (await c.get(f"/messages/{mid}")).text
        assert "配送しました" in shown and PASSWORD not in shown
        assert len(ppap.sink.messages) == 2
        assert check_delivered(ppap.sink.messages[1].data)["In-Reply-To"] == "<ppap-1@ex.jp>"
        r = await viewer.post(f"/messages/{mid}/unlock",
                              data={"csrf": token, "part": part, "password": PASSWORD})  # fmt: skip
        assert r.status_code == 403
    finally:
        await c.aclose()
        await viewer.aclose()


async def test_two_parallel_right_passwords_deliver_once(ppap: Ppap) -> None:
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    answers = await asyncio.gather(*(ppap.unlock(mid, part, PASSWORD) for _ in range(3)))
    codes = sorted(r.status_code for r in answers)
    assert codes[0] == 200 and codes.count(200) == 1, [r.text for r in answers]
    assert {r.json()["detail"] for r in answers if r.status_code != 200} <= {
        "unlock_in_progress",
        "already_unlocked",
    }
    await asyncio.sleep(0.2)
    assert len(ppap.sink.messages) == 2  # the withheld-attachment delivery, then one unlock


async def test_unlock_can_be_switched_off(
    gateway_factory: Callable[..., Any], smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink, unlock={"enabled": False})
    token = gw.store.create_token("tanaka", "operator", "test")[0]
    transport = httpx.ASGITransport(app=create_app(gw))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        p = Ppap(gw, smtp_sink, c, {"operator": token})
        mid, part = await deliver_ppap(p, aes_zip(MEMBERS, PASSWORD))
        r = await p.unlock(mid, part, PASSWORD)
    assert r.status_code == 422 and r.json()["detail"] == "unlock_unsupported"
    assert len(smtp_sink.messages) == 1 and audit_rows(p, mid) == []


def _plain_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _forwarded_mail() -> bytes:
    inner = EmailMessage()
    inner["From"] = "someone@example.com"
    inner["Subject"] = "転送"
    inner.set_content("転送します。\n")
    inner.add_attachment(MEMBERS["setup.exe"], maintype="application", subtype="octet-stream",
                         filename="請求書.pdf.exe")  # fmt: skip
    return inner.as_bytes()


async def test_nested_contents_behind_the_password_meet_the_normal_sanitizers(
    ppap: Ppap,
) -> None:
    # What a hostile sender hides behind the password: a second PPAP inside (same password),
    # a forwarded message carrying a program, and a program two plain archives deep.
    members = {
        "内側.zip": zipcrypto_zip({"秘密.exe": MEMBERS["setup.exe"]}, PASSWORD),
        "転送.eml": _forwarded_mail(),
        "深い.zip": _plain_zip({"mid.zip": _plain_zip({"setup.exe": MEMBERS["setup.exe"]})}),
        "見積書.txt": MEMBERS["見積書.txt"],
    }
    mid, part = await deliver_ppap(ppap, aes_zip(members, PASSWORD))
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 200, r.text
    assert "encrypted" in r.json()["reasons"]  # the inner PPAP is withheld, not opened
    msg = check_delivered(ppap.sink.messages[-1].data)  # every file passes check_clean_file
    for att in msg.iter_attachments():
        data = att.get_payload(decode=True)
        assert isinstance(data, bytes)
        assert not data.startswith(b"MZ") and not data.startswith(b"PK"), att.get_filename()
        assert b"PE\x00\x00" not in data, att.get_filename()
    assert "見積書.txt" in {a.get_filename() for a in msg.iter_attachments()}


async def test_eicar_two_archives_deep_behind_the_password_is_found(ppap: Ppap) -> None:
    hidden = _plain_zip({"a.zip": _plain_zip({"請求書.txt": EICAR})})
    mid, part = await deliver_ppap(ppap, zipcrypto_zip({"書類.zip": hidden}, PASSWORD))
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 422 and r.json()["detail"] == "virus_found", r.text
    assert len(ppap.sink.messages) == 1


@pytest.mark.parametrize(
    ("lie", "detail"),
    [(EICAR, "virus_found"), (MEMBERS["setup.exe"], "nothing_to_deliver")],
    ids=["eicar", "program"],
)
async def test_a_compromised_decrypting_child_is_not_believed(
    ppap: Ppap, monkeypatch: pytest.MonkeyPatch, lie: bytes, detail: str
) -> None:
    # Whatever the child hands back is scanned and sanitized as if a sender had sent it.
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    monkeypatch.setattr("gateway.unlock.decrypt", lambda *a, **k: lie)
    r = await ppap.unlock(mid, part, PASSWORD)
    assert r.status_code == 422 and r.json()["detail"] == detail, r.text
    assert len(ppap.sink.messages) == 1


async def test_an_endless_body_is_cut_at_the_limit_not_read_to_the_end(ppap: Ppap) -> None:
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"part": "' + part.encode() + b'", "password": "'
        for _ in range(4096):  # 256 MiB if it were all read
            sent += 1
            yield b"x" * 65536

    r = await ppap.client.post(
        f"/api/v1/messages/{mid}/unlock", content=endless(),
        headers={"Authorization": f"Bearer {ppap.tokens['operator']}"},
    )  # fmt: skip
    assert r.status_code == 413 and r.json()["detail"] == "body_too_large"
    assert sent < 16, sent  # stopped soon after 16 KiB, not after 256 MiB
    assert audit_rows(ppap, mid) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"part": "2", "password": "' + PASSWORD.encode() + b'", "x": ' + b"[" * 8000 + b"}",
        b'{"part": "2", "password": "\\ud800' + PASSWORD.encode() + b'"}',  # a lone surrogate
    ],
    ids=["deeply-nested", "lone-surrogate"],
)
async def test_hostile_json_is_a_plain_refusal(
    ppap: Ppap, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    r = await ppap.client.post(
        f"/api/v1/messages/{mid}/unlock", content=body.replace(b'"2"', f'"{part}"'.encode()),
        headers={"Authorization": f"Bearer {ppap.tokens['operator']}",
                 "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422, r.text
    assert PASSWORD not in r.text
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(ppap.sink.messages) == 1


async def test_an_attempt_slower_than_its_in_flight_window_never_delivers(
    ppap: Ppap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-flight block expires (a crashed node must not block forever); an attempt still
    # sanitizing then must not deliver, or a second attempt started after the expiry and the
    # first would both cross. Failure injection: the first sanitize waits for the test.
    import threading

    from gateway import unlock as unlock_module
    from gateway.store import unlocks

    monkeypatch.setattr(unlocks, "IN_FLIGHT_SECONDS", 4)
    monkeypatch.setattr(unlocks, "DELIVER_WITHIN_SECONDS", 2)
    mid, part = await deliver_ppap(ppap, aes_zip(MEMBERS, PASSWORD))
    started, release = threading.Event(), threading.Event()
    real = unlock_module.sanitize_part
    calls = 0

    def slow_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(unlock_module, "sanitize_part", slow_first)
    plain = _plain_zip({"見積書.txt": MEMBERS["見積書.txt"]})
    monkeypatch.setattr(unlock_module, "decrypt", lambda *a, **k: plain)
    first = asyncio.create_task(ppap.unlock(mid, part, PASSWORD))
    assert await asyncio.to_thread(started.wait, 60)
    await asyncio.sleep(4.5)  # the first attempt's in-flight block has expired
    second = await ppap.unlock(mid, part, PASSWORD)
    release.set()
    late = await first
    assert second.status_code == 200, second.text
    assert late.status_code == 422 and late.json()["detail"] == "conversion_timeout", late.text
    assert len(ppap.sink.messages) == 2  # the withheld-attachment delivery, then one unlock
