"""List items carry every reason code of the message and its parts; `reason=` finds them."""

from __future__ import annotations

from collections.abc import Callable

from gateway.model import Action, MessageReport, PartReport
from gateway.store.repository import Store
from tests.api.conftest import Api
from tests.store.seed import add_message


def _delivered_with_removed_parts(store: Store) -> str:
    mid = add_message(store, status="processing")
    inner = PartReport(
        index="2.1", filename="a.exe", declared_type="", detected_type="exe",
        action=Action.REMOVED, reasons=("unsupported_type",),
    )  # fmt: skip
    outer = PartReport(
        index="2", filename="x.zip", declared_type="", detected_type="zip",
        action=Action.CONVERTED, reasons=("encrypted",), children=(inner,),
    )  # fmt: skip
    values = MessageReport(parts=(outer,), subject="s", message_id="<r@example>")
    store.mark_delivered(mid, b"sanitized", 1, values)
    return mid


async def test_list_shows_union_and_reason_filter_finds_it(
    api: Api, seed: Callable[..., str]
) -> None:
    store = api.gw.store
    mid = _delivered_with_removed_parts(store)
    plain = seed(status="delivered")  # parts: macros_removed only
    virus = seed(status="quarantined", reason="virus_found")
    r = await api.get("/api/v1/messages", "viewer")
    by_id = {i["id"]: i["reasons"] for i in r.json()["items"]}
    assert by_id[mid] == ["encrypted", "unsupported_type"]
    assert by_id[plain] == ["macros_removed"]
    assert by_id[virus] == ["virus_found", "macros_removed"]
    for code, wanted in (("unsupported_type", [mid]), ("encrypted", [mid]),
                         ("virus_found", [virus]), ("macros_removed", [virus, plain])):  # fmt: skip
        r = await api.get("/api/v1/messages", "viewer", params={"reason": code})
        assert [i["id"] for i in r.json()["items"]] == wanted, code
    r = await api.get("/api/v1/messages", "viewer", params={"reason": "made_up"})
    assert r.status_code == 422  # one closed set of codes
    r = await api.get("/api/v1/messages", "viewer", params={"reason": "virus_found",
                                                           "status": "delivered"})  # fmt: skip
    assert r.json()["items"] == []


async def test_reindexed_when_the_reasons_change(api: Api, seed: Callable[..., str]) -> None:
    store = api.gw.store
    mid = seed(status="processing")
    store.mark_deferred(mid, "clamd_unavailable", "down", 1)
    r = await api.get("/api/v1/messages", "viewer", params={"reason": "clamd_unavailable"})
    assert [i["id"] for i in r.json()["items"]] == [mid]
    store.mark_quarantined(mid, "queue_timeout", "", 2)
    r = await api.get("/api/v1/messages", "viewer", params={"reason": "clamd_unavailable"})
    assert r.json()["items"] == []
    r = await api.get("/api/v1/messages", "viewer", params={"reason": "queue_timeout"})
    assert [i["id"] for i in r.json()["items"]] == [mid]
