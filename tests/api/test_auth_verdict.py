"""The sender verdict and QR codes are part of the record the API shows (issue 16)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.model import Action, MessageReport, PartReport, ScanResult
from tests.api.conftest import Api


async def test_detail_shows_auth_verdict_and_qr(api: Api, seed: Callable[..., str]) -> None:
    mid = seed()
    verdict = {"overall": "suspicious", "reasons": ["display_name_lookalike"],
               "lookalike": ["town.example.lg.jp"], "dkim": []}  # fmt: skip
    part = PartReport("2", "qr.png", "image/png", "png", Action.CONVERTED,
                      reasons=("qr_listed",), qr=("hxxps://evil[.]example/x",))  # fmt: skip
    api.gw.store.record_report(
        mid, MessageReport(parts=[part], tokens=[], subject="s", message_id="<m1@example.com>",
        header_from="x", scan=ScanResult(clean=True, auth=verdict), timings={}),
    )  # fmt: skip
    r = await api.get(f"/api/v1/messages/{mid}", "viewer")
    assert r.status_code == 200
    d = r.json()
    assert d["scan"]["auth"]["overall"] == "suspicious"
    assert d["scan"]["auth"]["lookalike"] == ["town.example.lg.jp"]
    assert d["parts"][0]["qr"] == ["hxxps://evil[.]example/x"]
    assert "qr_listed" in d["parts"][0]["reasons"]
