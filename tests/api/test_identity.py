"""People, not token names: real uvicorn on port 0, a real store (SQLite and PostgreSQL), a real
SMTP sink as the relay. The attacker is an admin (or anyone) holding several tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from gateway.api.server import start_admin
from gateway.relay import SmtpRelay
from gateway.settings import load_settings
from gateway.store import migrate
from gateway.store.repository import Store
from tests.api.conftest import mini_gateway
from tests.plugins.smtp_sink import Sink
from tests.store.seed import add_message

pytestmark = pytest.mark.timeout(120)


class Admin:
    def __init__(self, client: httpx.AsyncClient, store: Store, sink: Sink) -> None:
        self.client = client
        self.store = store
        self.sink = sink

    async def call(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.client.request(method, path, headers=headers, **kw)

    async def token_for(self, admin: str, name: str, role: str) -> httpx.Response:
        return await self.call("POST", "/api/v1/tokens", admin, json={"name": name, "role": role})

    async def request(self, token: str, mid: str) -> str:
        r = await self.call(
            "POST",
            f"/api/v1/messages/{mid}/release-requests",
            token,
            json={"reason": "取引先からの正式な請求書", "category": "business_required"},
        )
        assert r.status_code in (200, 201), r.text
        rid: str = r.json()["id"]
        return rid

    async def approve(self, token: str, rid: str) -> httpx.Response:
        return await self.call("POST", f"/api/v1/release-requests/{rid}/approve", token, json={})


async def _admin(
    tmp_path: Path, store: Store, sink: Sink, cooldown: str, clamd: str
) -> AsyncIterator[Admin]:
    relay = SmtpRelay(sink.address, hostname="t", timeout=10)
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd)
    gw.settings = load_settings(
        None,
        storage={"data_dir": str(tmp_path / "data")},
        admin={"listen": "127.0.0.1:0", "identity_cooldown": cooldown},
    )
    store.identity_cooldown = gw.settings.admin.identity_cooldown  # as gateway.app does
    server = await start_admin(gw.settings, gw)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            yield Admin(c, store, sink)
    finally:
        await server.stop()


@pytest.fixture
async def admin(
    tmp_path: Path, store: Store, smtp_sink: Sink, clamd_address: str
) -> AsyncIterator[Admin]:
    async for a in _admin(tmp_path, store, smtp_sink, "72h", clamd_address):
        yield a


async def test_two_tokens_of_one_person_cannot_complete_a_release(admin: Admin) -> None:
    root, _ = admin.store.create_token("root", "admin", "cli:root")
    first, _ = admin.store.create_token("tanaka", "approver", "cli:root")
    # The old hole: a second token "called like" the requester. Now it IS the requester.
    r = await admin.token_for(root, "tanaka", "approver")
    assert r.status_code == 201 and r.json()["name"] == "tanaka"
    second = r.json()["token"]
    mid = add_message(admin.store, status="quarantined")
    rid = await admin.request(first, mid)
    r = await admin.approve(second, rid)
    assert r.status_code == 403 and r.json()["detail"] == "approver_is_requester"
    req = admin.store.release_request(rid)
    assert req is not None and req.status == "pending"
    # A token can not smuggle in another role for an existing person either.
    r = await admin.token_for(root, "tanaka", "admin")
    assert r.status_code == 409 and r.json()["detail"] == "user_role_differs"


async def test_an_admin_cannot_approve_through_a_person_they_just_made(admin: Admin) -> None:
    root, _ = admin.store.create_token("root", "admin", "cli:root")
    other, _ = admin.store.create_token("suzuki", "approver", "cli:root")
    mid = add_message(admin.store, status="quarantined")
    rid = await admin.request(root, mid)
    # The admin mints an approver "sock" and approves their own request through it.
    sock = (await admin.token_for(root, "sock", "approver")).json()["token"]
    r = await admin.approve(sock, rid)
    assert r.status_code == 403 and r.json()["detail"] == "approver_linked_to_requester"
    # Same the other way: a person the admin made asks, the admin approves.
    puppet = (await admin.token_for(root, "puppet", "operator")).json()["token"]
    mid2 = add_message(admin.store, status="quarantined")
    rid2 = await admin.request(puppet, mid2)
    r = await admin.approve(root, rid2)
    assert r.status_code == 403 and r.json()["detail"] == "approver_linked_to_requester"
    # A token issued to an existing approver links too (the admin then holds that token).
    await admin.token_for(root, "suzuki", "approver")
    r = await admin.approve(other, rid)
    assert r.status_code == 403 and r.json()["detail"] == "approver_linked_to_requester"
    # Someone the admin never touched through the API can decide.
    third, _ = admin.store.create_token("kato", "approver", "cli:root")
    r = await admin.approve(third, rid)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released"


async def test_identity_changes_are_audited_and_visible_to_the_auditor(admin: Admin) -> None:
    root, _ = admin.store.create_token("root", "admin", "cli:root")
    auditor, _ = admin.store.create_token("kansa", "auditor", "cli:root")
    await admin.token_for(root, "yamada", "operator")
    admin.store.set_user_role("yamada", "approver", "cli:root")
    r = await admin.call("GET", "/api/v1/audit", auditor)
    assert r.status_code == 200
    seen = [(e["actor"], e["action"], e["target"]) for e in reversed(r.json()["items"])]
    assert ("token:root", "user.create", "yamada") in seen
    assert ("token:root", "token.create", "yamada") in seen
    assert ("cli:root", "user.role", "yamada") in seen
    # The role change applies to the person's existing tokens at once.
    r = await admin.call("GET", "/api/v1/tokens", root)
    assert r.status_code == 200


async def test_the_link_expires_after_the_cooldown(
    tmp_path: Path, store: Store, smtp_sink: Sink, clamd_address: str
) -> None:
    async for admin in _admin(tmp_path, store, smtp_sink, "0s", clamd_address):
        root, _ = store.create_token("root", "admin", "cli:root")
        mid = add_message(store, status="quarantined")
        rid = await admin.request(root, mid)
        sock = (await admin.token_for(root, "sock", "approver")).json()["token"]
        r = await admin.approve(sock, rid)
        assert r.status_code == 200, r.text  # cooldown 0: the rule is off, by configuration


def test_migration_merges_tokens_of_one_name_into_one_person(store: Store) -> None:
    """On both backends: back to 0001 (tokens with free names), tokens added, up to head."""
    from alembic import command

    cfg = migrate.alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with store.engine.begin() as conn:
        for name, role in (("tanaka", "operator"), ("tanaka", "approver"), ("sato", "viewer")):
            conn.execute(
                text(
                    "INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) "
                    "VALUES (:n, :r, :h, :at, 'test')"
                ),
                {"n": name, "r": role, "h": f"{name}-{role}", "at": datetime.now(UTC)},
            )
    store.create_schema()
    with store.engine.connect() as conn:
        users = dict(conn.execute(text("SELECT name, role FROM users")).all())
        owners = conn.execute(
            text("SELECT t.name, u.name FROM api_tokens t JOIN users u ON u.id = t.user_id")
        ).all()
    assert users == {"tanaka": "approver", "sato": "viewer"}  # the newest token's role
    assert sorted(owners) == [("sato", "sato"), ("tanaka", "tanaka"), ("tanaka", "tanaka")]
    assert migrate.current(store.engine) == "0003"


async def test_an_admin_cannot_play_both_people_through_two_persons_they_made(
    admin: Admin,
) -> None:
    # Neither puppet nor sock changed the other, but one admin holds both tokens: the two
    # "people" are the same hand until the cooldown has passed.
    root, _ = admin.store.create_token("root", "admin", "cli:root")
    puppet = (await admin.token_for(root, "puppet", "operator")).json()["token"]
    sock = (await admin.token_for(root, "sock", "approver")).json()["token"]
    mid = add_message(admin.store, status="quarantined")
    rid = await admin.request(puppet, mid)
    r = await admin.approve(sock, rid)
    assert r.status_code == 403 and r.json()["detail"] == "approver_linked_to_requester"
    assert admin.sink.messages == []
    req = admin.store.release_request(rid)
    assert req is not None and req.status == "pending"


async def test_a_chain_of_persons_made_through_the_api_stays_one_hand(admin: Admin) -> None:
    # root makes an admin "deputy" (and so holds its token), deputy makes an approver "sock":
    # root holds sock's token too, and must not approve root's own request through it.
    root, _ = admin.store.create_token("root", "admin", "cli:root")
    deputy = (await admin.token_for(root, "deputy", "admin")).json()["token"]
    sock = (await admin.token_for(deputy, "sock", "approver")).json()["token"]
    mid = add_message(admin.store, status="quarantined")
    rid = await admin.request(root, mid)
    r = await admin.approve(sock, rid)
    assert r.status_code == 403 and r.json()["detail"] == "approver_linked_to_requester"
    assert admin.sink.messages == []
