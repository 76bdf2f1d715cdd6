"""gateway/mime/notice.py: the notice on top of every delivered body, and the withheld notice."""

from __future__ import annotations

from gateway.mime.notice import (
    ACTIONS_EN,
    ACTIONS_JA,
    REASONS_JA,
    RULE,
    display_name,
    render_notice,
    render_withheld_notice,
)
from gateway.model import Action, PartReport
from gateway.reasons import LABELS_JA, Reason

MID = "0190aa00000000000000a1"
CONTACT = "情報政策課 (内線 1234)"


def part(name: str, action: Action, *reasons: str, **kw: object) -> PartReport:
    return PartReport("2", name, "application/octet-stream", "pdf", action, reasons, **kw)  # type: ignore[arg-type]


def notice(parts: list[PartReport], **kw: object) -> str:
    options: dict[str, object] = {"html_converted": False, "links_disarmed": 0, **kw}
    return render_notice(MID, parts, contact=CONTACT, **options)  # type: ignore[arg-type]


def test_display_name_strips_controls_and_bidi_and_bounds_the_length() -> None:
    assert display_name("請求書\u202etxt.exe") == "請求書txt.exe"  # RLO would flip it
    assert display_name("a\r\nBcc: x@example.com\t.pdf") == "aBcc: x@example.com.pdf"
    assert display_name("\u2028\x00 ") == "(名前なし / unnamed)"
    long = display_name("あ" * 300)
    assert len(long) == 120 and long.endswith("…")
    assert display_name("x" * 20, limit=10) == "x" * 9 + "…"


def test_notice_is_japanese_then_english_with_the_id_and_contact() -> None:
    text = notice([])
    ja, en = text.split("[Sanitization notice]")
    assert text.startswith(RULE + "\n【無害化のお知らせ】\n") and text.endswith(RULE + "\n")
    assert "添付ファイルはありませんでした" in ja and "There were no attachments." in en
    assert f"{CONTACT} に次の番号をお知らせください: X-Mugai-Id: {MID}" in ja
    assert f"contact {CONTACT} quoting X-Mugai-Id: {MID}" in en
    # Nothing about HTML or links when there were none.
    assert "HTML" not in text and "link" not in text and "リンク" not in text


def test_each_part_line_says_what_was_done_and_why_in_both_languages() -> None:
    kept = part("見積書.pdf", Action.CONVERTED, "macros_removed", outputs=("見積書.pdf",))
    gone = part("tool.exe", Action.REMOVED, "unsupported_type")
    text = notice([kept, gone])
    ja, en = text.split("[Sanitization notice]")
    assert (
        f"  - 見積書.pdf (pdf): {ACTIONS_JA[Action.CONVERTED]}（見積書.pdf） "
        f"［{REASONS_JA['macros_removed']} macros_removed］"
    ) in ja
    removed = ACTIONS_JA[Action.REMOVED]
    assert f"  - tool.exe (pdf): {removed} ［許可されていない形式 unsupported_type］" in ja
    assert "  - 見積書.pdf (pdf): rebuilt and attached → 見積書.pdf [macros_removed]" in en
    assert f"  - tool.exe (pdf): {ACTIONS_EN[Action.REMOVED]} [unsupported_type]" in en


def test_children_are_indented_under_their_archive_and_outputs_are_capped_at_five() -> None:
    member = part("中身.docx", Action.CONVERTED, outputs=tuple(f"p{i}.png" for i in range(7)))
    zipped = part("まとめ.zip", Action.CONVERTED, children=(member,), outputs=("p0.png",))
    en = notice([zipped]).split("[Sanitization notice]")[1]
    assert "\n  - まとめ[.]zip (pdf): " in en  # ".zip" reads as a host name: bracketed
    assert "\n    - 中身.docx (pdf): rebuilt and attached → p0.png, p1.png, p2.png, p3.png, " in en
    assert "p4.png …(+2)" in en and "p5.png" not in en


def test_nesting_deeper_than_five_levels_is_summarised_by_the_parent() -> None:
    leaf = part("deep.txt", Action.KEPT)
    for level in range(7):
        leaf = part(f"level{level}.zip", Action.CONVERTED, children=(leaf,))
    text = notice([leaf])
    # Depths 0 to 5 are listed (level6 down to level1); level0 and its member are not.
    assert "\n" + "  " * 6 + "- level1[.]zip (pdf)" in text
    assert "level0" not in text and "deep" not in text


def test_html_and_links_are_mentioned_when_they_happened() -> None:
    text = notice([], html_converted=True, html_dropped=True, links_disarmed=3)
    assert "・HTML形式の本文はテキストに変換しました。" in text
    assert "- The HTML alternative was dropped; the sender's plain-text version is shown." in text
    assert "・本文中のリンク 3 件は無効化しました" in text
    assert "- 3 link(s) were disarmed" in text


def test_unknown_reason_codes_show_raw_and_every_reason_has_a_label() -> None:
    text = notice([part("a.bin", Action.REMOVED, "not_a_reason")])
    assert "［not_a_reason not_a_reason］" in text
    assert set(REASONS_JA) == {r.value for r in Reason}
    assert all(REASONS_JA[r.value] == LABELS_JA[r] for r in Reason)


def test_the_sender_s_text_in_a_notice_is_disarmed() -> None:
    text = notice([part("http://evil.example/x.pdf", Action.REMOVED, "unsupported_type")])
    assert "http://evil.example" not in text and "hxxp://evil[.]example" in text


def test_withheld_notice_names_the_mail_and_the_reason_without_content() -> None:
    text = render_withheld_notice(
        MID,
        "virus_found",
        CONTACT,
        sender="Tanaka <tanaka@example.com>",
        subject="請求書\r\nBcc: victim@example.com",
        date="Thu, 3 Dec 2026 10:00:00 +0900",
    )
    assert "【配送保留のお知らせ】" in text and "[Message withheld]" in text
    assert f"理由: {REASONS_JA['virus_found']} (virus_found)" in text
    assert "Reason: virus_found." in text and f"X-Mugai-Id: {MID}" in text
    assert "件名: 請求書 Bcc: victim@example.com\n" in text  # one line: no header injection
    assert "差出人: Tanaka <tanaka@example.com>\n" in text  # an address is not a link


def test_withheld_notice_fills_in_missing_headers_and_bounds_long_ones() -> None:
    text = render_withheld_notice(MID, "mail_loop", CONTACT, subject="あ" * 500)
    assert "差出人: （不明）" in text and "From: (unknown)" in text
    assert "日付: （不明）" in text and "Date: (unknown)" in text
    assert "件名: " + "あ" * 200 + "\n" in text
    assert "あ" * 201 not in text
    assert "（件名なし）" in render_withheld_notice(MID, "mail_loop", CONTACT)
