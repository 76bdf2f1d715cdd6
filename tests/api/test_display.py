"""gateway/api/display.py and the console's use of it (every printed value goes through it)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api.console.render import ENV
from gateway.api.display import real_extension, visible
from gateway.model import MessageReport

RLO_NAME = "請求書\u202efdp.exe"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (RLO_NAME, "請求書⟨U+202E⟩fdp.exe"),
        ("\u202e<x@example.com>", "⟨U+202E⟩<x@example.com>"),
        ("a\u2066b\u2069c\u200fd\u061ce", "a⟨U+2066⟩b⟨U+2069⟩c⟨U+200F⟩d⟨U+061C⟩e"),
        ("zero\u200bwidth\ufeff", "zero⟨U+200B⟩width⟨U+FEFF⟩"),
        ("line\u2028sep\r\nx\x00", "line⟨U+2028⟩sep⟨U+000D⟩⟨U+000A⟩x⟨U+0000⟩"),
        ("普通の件名 hello", "普通の件名 hello"),
        ("", ""),
    ],
)
def test_visible_spells_out_every_invisible_character(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert not any(c in visible(raw) for c in "\u202e\u2066\u200b\ufeff\r\n\x00")


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        (RLO_NAME, ".exe"),
        ("見積書.PDF", ".pdf"),
        ("archive.tar.gz", ".gz"),
        ("report.pdf\u200b", ".pdf"),
        ("noext", ""),
        (".bashrc", ""),
        ("x." + "a" * 40, ""),
        ("evil.ex e", ""),
    ],
)
def test_real_extension_is_the_logical_one(name: str, ext: str) -> None:
    assert real_extension(name) == ext


def test_templates_show_the_visible_form_and_keep_their_own_markup() -> None:
    html = ENV.from_string("<p>{{ s }}</p>{{ n }}").render(s=RLO_NAME + "<b>", n=3)
    assert html == "<p>請求書⟨U+202E⟩fdp.exe&lt;b&gt;</p>3"


async def test_api_shows_the_visible_form_and_keeps_the_raw_one(api: Any) -> None:
    from gateway.model import Action, PartReport, ScanResult
    from tests.store.seed import add_message

    store = api.gw.store
    mid = add_message(
        store,
        status="seeded-only",
        mail_from="\u202emoc.x@y",
        rcpt_tos=("a\u200b@town.example.lg.jp",),
    )
    store.record_report(
        mid,
        MessageReport(
            parts=[
                PartReport(
                    "1", RLO_NAME, "application/pdf", "exe", Action.REMOVED, ("executable",), 10
                )
            ],
            tokens=["DEL_ATTACH"],
            subject="件名\u202efdp.exe",
            message_id="<m@x>",
            header_from="\u202e<x@example.com>",
            scan=ScanResult(clean=True, signature=""),
            timings={},
        ),
    )
    store.mark_quarantined(mid, "executable", "detail", 1)
    [item] = (await api.get("/api/v1/messages", "viewer")).json()["items"]
    assert item["subject"] == "件名⟨U+202E⟩fdp.exe" and item["mail_from"] == "⟨U+202E⟩moc.x@y"
    assert item["rcpt_tos"] == ["a⟨U+200B⟩@town.example.lg.jp"]
    assert item["raw"] == {
        "subject": "件名\u202efdp.exe",
        "mail_from": "\u202emoc.x@y",
        "rcpt_tos": ["a\u200b@town.example.lg.jp"],
    }
    detail = (await api.get(f"/api/v1/messages/{mid}", "viewer")).json()
    assert detail["header_from"] == "⟨U+202E⟩<x@example.com>"
    assert detail["raw"]["header_from"] == "\u202e<x@example.com>"
    assert detail["parts"][0]["filename"] == "請求書⟨U+202E⟩fdp.exe"
    assert detail["raw"]["part_filenames"] == [RLO_NAME]
