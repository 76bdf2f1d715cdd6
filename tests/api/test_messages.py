from __future__ import annotations

import time
from collections.abc import Callable
from email.message import Message
from urllib.parse import unquote

from gateway.store.repository import Store
from tests.api.conftest import Api
from tests.store.seed import raw_mail


async def test_list_search_and_pages(api: Api, seed: Callable[..., str]) -> None:
    a = seed(message_id="<find-me@example.com>", mail_from="alice@example.com")
    b = seed(status="quarantined", message_id="<other@example.com>")
    r = await api.get("/api/v1/messages", "viewer")
    assert r.status_code == 200
    body = r.json()
    assert [i["id"] for i in body["items"]] == [b, a] and body["next"] is None
    item = body["items"][1]
    assert set(item) == {
        "id",
        "message_id",
        "status",
        "mail_from",
        "rcpt_tos",
        "subject",
        "received_at",
        "reasons",
        "raw",  # raw: the untrusted fields as received (issue 17)
    }
    assert item["received_at"].endswith(("Z", "+00:00"))
    for mid in ("find-me@example.com", "<find-me@example.com>"):
        r = await api.get("/api/v1/messages", "viewer", params={"message_id": mid})
        assert [i["id"] for i in r.json()["items"]] == [a]
    r = await api.get("/api/v1/messages", "viewer", params={"status": "quarantined"})
    assert [i["id"] for i in r.json()["items"]] == [b]
    assert r.json()["items"][0]["reasons"] == ["unparseable", "macros_removed"]
    r = await api.get("/api/v1/messages", "viewer", params={"sender": "ALICE@example.com"})
    assert [i["id"] for i in r.json()["items"]] == [a]
    r = await api.get(
        "/api/v1/messages", "viewer", params={"recipient": "user@town.example.lg.jp", "limit": 1}
    )
    page = r.json()
    assert [i["id"] for i in page["items"]] == [b] and page["next"] == b
    r = await api.get(
        "/api/v1/messages",
        "viewer",
        params={"recipient": "user@town.example.lg.jp", "limit": 1, "cursor": page["next"]},
    )
    assert [i["id"] for i in r.json()["items"]] == [a]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    r = await api.get("/api/v1/messages", "viewer", params={"since": since})
    assert r.json()["items"] == []


async def test_bounds(api: Api) -> None:
    for params in (
        {"limit": 501},
        {"limit": 0},
        {"limit": "x"},
        {"cursor": "../../etc"},
        {"cursor": "a" * 65},
        {"status": "bogus"},
        {"message_id": "x" * 1001},
        {"since": "yesterday"},
    ):
        r = await api.get("/api/v1/messages", "viewer", params=params)
        assert r.status_code == 422, params
    assert (await api.get("/api/v1/messages", "viewer", params={"limit": 500})).status_code == 200
    for mid in ("a" * 65, "a%0d%0ab", "a.b"):
        path = f"/api/v1/messages/{mid}"
        assert (await api.get(path, "viewer")).status_code == 422
    assert (await api.get("/api/v1/messages/unknown", "viewer")).status_code == 404


async def test_detail_has_part_table(api: Api, seed: Callable[..., str]) -> None:
    mid = seed()
    r = await api.get(f"/api/v1/messages/{mid}", "viewer")
    d = r.json()
    assert r.status_code == 200
    assert d["parts"][0]["filename"] == "見積書.docx"
    assert d["parts"][0]["detected_type"] == "docx" and d["parts"][0]["action"] == "converted"
    assert d["parts"][0]["sha256"] == "ab" * 32 and d["size"] == len(raw_mail())
    assert d["scan"]["clean"] is True and d["timings"]["scan"] == 0.01
    assert d["has_original"] and d["has_sanitized"] and not d["legal_hold"]


async def test_original_download_is_audited(api: Api, seed: Callable[..., str]) -> None:
    mid = seed()
    r = await api.get(f"/api/v1/messages/{mid}/original", "operator")
    assert r.status_code == 200 and r.content == raw_mail()
    assert r.headers["content-type"].startswith("message/rfc822")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith(f'attachment; filename="{mid}.eml"')
    log = (await api.get("/api/v1/audit", "auditor", params={"action": "original.read"})).json()
    assert [(e["actor"], e["target"]) for e in log["items"]] == [("token:operator", mid)]
    # Reading the sanitized copy is not a read of the original.
    r = await api.get(f"/api/v1/messages/{mid}/sanitized", "viewer")
    assert r.status_code == 200 and b"clean" in r.content
    log = (await api.get("/api/v1/audit", "auditor", params={"action": "original.read"})).json()
    assert len(log["items"]) == 1


async def test_sanitized_missing_for_quarantined(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined")
    assert (await api.get(f"/api/v1/messages/{mid}/sanitized", "viewer")).status_code == 404


async def test_hostile_file_names_stay_in_their_header(api: Api, seed: Callable[..., str]) -> None:
    name = '..\\..\\請求書"\r\nSet-Cookie: x=1;\u202egpj.exe'
    mid = seed(kind="file", filename=name, raw=b"%PDF-1.4 data")
    r = await api.get(f"/api/v1/messages/{mid}/original", "operator")
    assert r.status_code == 200 and "set-cookie" not in r.headers
    cd = r.headers["content-disposition"]
    assert "\r" not in cd and "\n" not in cd and "\u202e" not in cd and cd.isascii()
    msg = Message()
    msg["Content-Disposition"] = cd
    assert msg.get_filename() is not None
    star = cd.split("filename*=UTF-8''", 1)[1]
    decoded = unquote(star)
    assert "/" not in decoded and "\\" not in decoded and '"' not in decoded
    assert decoded.startswith("請求書") and decoded.endswith("gpj.exe")


async def test_delete_and_legal_hold(api: Api, seed: Callable[..., str]) -> None:
    mid = seed()
    r = await api.client.put(
        f"/api/v1/messages/{mid}/legal-hold", headers=api.auth("admin"), json={"hold": True}
    )
    assert r.status_code == 200 and r.json()["legal_hold"] is True
    r = await api.client.delete(f"/api/v1/messages/{mid}", headers=api.auth("admin"))
    assert r.status_code == 409 and r.json()["detail"] == "legal_hold"
    await api.client.put(
        f"/api/v1/messages/{mid}/legal-hold", headers=api.auth("admin"), json={"hold": False}
    )
    r = await api.client.delete(f"/api/v1/messages/{mid}", headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    assert (await api.get(f"/api/v1/messages/{mid}/original", "admin")).status_code == 409
    detail = (await api.get(f"/api/v1/messages/{mid}", "viewer")).json()
    assert detail["status"] == "deleted" and not detail["has_original"]
    log = (await api.get("/api/v1/audit", "auditor", params={"target": mid})).json()
    assert [e["action"] for e in log["items"]][0] == "message.delete"


async def test_a_viewer_cannot_fetch_an_uploaded_file_through_the_messages_route(
    api: Api, seed: Callable[..., str], store: Store
) -> None:
    # The file gateway is operator only (DESIGN.md §4.5); /messages/{id}/sanitized served a
    # file's rebuilt bytes to a viewer all the same.
    fid = seed(status="processing", kind="file", filename="見積書.pdf")
    store.mark_file_result(fid, status="done", reasons=[], sanitized=b"%PDF-rebuilt", attempts=1)
    r = await api.get(f"/api/v1/messages/{fid}/sanitized", "viewer")
    assert r.status_code == 403 and b"rebuilt" not in r.content
    r = await api.get(f"/api/v1/messages/{fid}/sanitized", "operator")
    assert r.status_code == 200 and r.content == b"%PDF-rebuilt"
