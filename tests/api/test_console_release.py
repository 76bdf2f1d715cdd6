"""Console release refusals and transitions (the same store rules as the API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.api.main import create_app
from gateway.model import ScanResult
from gateway.relay import SmtpRelay
from gateway.store.releases import Policy
from gateway.store.repository import Store
from tests.api.conftest import ROLES, mini_gateway
from tests.api.test_console import ACK, EXC, Console, seed_quote
from tests.plugins.smtp_sink import Sink
from tests.store.seed import add_message

EICAR = "Win.Test.EICAR_HDB-1"


@pytest.fixture
async def console(
    tmp_path: Path, store: Store, smtp_sink: Sink, clamd_address: str
) -> AsyncIterator[Console]:
    # As tests/api/test_console.py's fixture (a fixture cannot be imported under lint rules).
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=10)
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd_address)
    tokens = {role: store.create_token(role, role, "test")[0] for role in ROLES}
    con = Console(create_app(gw), gw, smtp_sink, tokens, [])
    yield con
    for c in con.clients:
        await c.aclose()


def _infected(console: Console) -> str:
    store = console.gw.store
    mid = add_message(store, status="quarantined", reason="virus_found")
    store.mark_quarantined(mid, "virus_found", EICAR, 1, ScanResult(False, EICAR))
    return mid


async def test_request_needs_category_and_acknowledgement(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    page = (await operator.page(f"/messages/{mid}")).text
    assert "例外措置" in page and 'popovertarget="request-confirm"' in page
    r = await operator.post(f"/messages/{mid}/release-requests", {"reason": "必要", **ACK})
    assert r.status_code == 422 and "区分を選択" in r.text
    r = await operator.post(f"/messages/{mid}/release-requests",
                            {"reason": "必要", "category": "other"})  # fmt: skip
    assert r.status_code == 422 and "確認にチェック" in r.text
    r = await operator.post(f"/messages/{mid}/release-requests",
                            {"reason": "必要", "category": "whim", **ACK})  # fmt: skip
    assert r.status_code == 422
    assert console.gw.store.release_requests() == []


async def test_second_request_is_409_and_the_form_is_gone(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    r = await operator.post(f"/messages/{mid}/release-requests", {"reason": "必要", **EXC})
    assert r.status_code == 303
    assert "request-form" not in (await operator.page(f"/messages/{mid}")).text
    r = await operator.post(f"/messages/{mid}/release-requests", {"reason": "再度", **EXC})
    assert r.status_code == 409 and "処理中の解放申請があります" in r.text
    assert len(console.gw.store.release_requests()) == 1


async def test_approval_needs_acknowledgement(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    await operator.post(f"/messages/{mid}/release-requests", {"reason": "必要", **EXC})
    (req,) = console.gw.store.release_requests()
    approver = await console.sign_in("approver")
    page = (await approver.page(f"/messages/{mid}")).text
    assert "これは例外措置です" in page and f'popovertarget="approve-confirm-{req.id}"' in page
    r = await approver.post(f"/release-requests/{req.id}/approve")
    assert r.status_code == 422 and console.sink.messages == []
    r = await approver.post(f"/release-requests/{req.id}/approve", ACK)
    assert r.status_code == 303 and len(console.sink.messages) == 1


async def test_infected_original_is_refused_and_labelled(console: Console) -> None:
    mid = _infected(console)
    operator = await console.sign_in("operator")
    page = (await operator.page(f"/messages/{mid}")).text
    assert "infected-refused" in page and "request-form" not in page
    assert "ウイルスを検知" in page and "<code>virus_found</code>" in page
    r = await operator.post(f"/messages/{mid}/release-requests",
                            {"reason": "必要", "confirm_signature": EICAR, **EXC})  # fmt: skip
    assert r.status_code == 403 and "設定により解放できません" in r.text
    listing = (await operator.page("/messages")).text
    assert "ウイルスを検知" in listing


async def test_infected_allowed_needs_the_signature_typed(console: Console) -> None:
    console.gw.store.policy = Policy(allow_infected=True)
    mid = _infected(console)
    operator = await console.sign_in("operator")
    page = (await operator.page(f"/messages/{mid}")).text
    assert 'name="confirm_signature"' in page and EICAR in page
    r = await operator.post(f"/messages/{mid}/release-requests", {"reason": "証拠", **EXC})
    assert r.status_code == 422 and "ウイルス名が一致しません" in r.text
    r = await operator.post(f"/messages/{mid}/release-requests",
                            {"reason": "証拠", "confirm_signature": EICAR, **EXC})  # fmt: skip
    assert r.status_code == 303
    (req,) = console.gw.store.release_requests()
    approver = await console.sign_in("approver")
    r = await approver.post(f"/release-requests/{req.id}/approve", ACK)
    assert r.status_code == 422 and console.sink.messages == []
    r = await approver.post(f"/release-requests/{req.id}/approve",
                            {"confirm_signature": EICAR, **ACK})  # fmt: skip
    assert r.status_code == 303 and len(console.sink.messages) == 1


async def test_admin_reopens_a_released_message(console: Console) -> None:
    mid = seed_quote(console.gw.store)
    operator = await console.sign_in("operator")
    await operator.post(f"/messages/{mid}/release-requests", {"reason": "必要", **EXC})
    (req,) = console.gw.store.release_requests()
    approver = await console.sign_in("approver")
    await approver.post(f"/release-requests/{req.id}/approve", ACK)
    r = await operator.post(f"/messages/{mid}/release-requests", {"reason": "再度", **EXC})
    assert r.status_code == 409 and "既に解放済み" in r.text
    assert "reopen-form" not in (await operator.page(f"/messages/{mid}")).text
    r = await operator.post(f"/messages/{mid}/release-reopen", {"reason": "誤削除"})
    assert r.status_code == 403
    admin = await console.sign_in("admin")
    assert "reopen-form" in (await admin.page(f"/messages/{mid}")).text
    r = await admin.post(f"/messages/{mid}/release-reopen", {"reason": "受信者が誤削除"})
    assert r.status_code == 303
    r = await operator.post(f"/messages/{mid}/release-requests", {"reason": "再度", **EXC})
    assert r.status_code == 303
    assert [e.detail["reason"] for e in console.gw.store.audit_entries(action="release.reopen")] \
        == ["受信者が誤削除"]  # fmt: skip
