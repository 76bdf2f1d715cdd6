"""The notice at the top of every delivered body (Japanese, then English)."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.controls import strip_hidden
from gateway.mime.defang import disarm
from gateway.mime.headers_block import one_line
from gateway.model import Action, PartReport
from gateway.reasons import LABELS_JA

RULE = "━" * 36
_NOTICE_FIELD = 200  # characters of a sender / subject / date shown in the withheld notice

# The labels live in gateway/reasons.py (one closed set); this name stays for the notices.
REASONS_JA: dict[str, str] = {code.value: text for code, text in LABELS_JA.items()}

ACTIONS_JA = {
    Action.KEPT: "文字コードをUTF-8に変換して添付",
    Action.CONVERTED: "無害化（再構成）して添付",
    Action.REMOVED: "削除",
    Action.BODY: "本文として表示",
}
ACTIONS_EN = {
    Action.KEPT: "re-encoded as UTF-8 and attached",
    Action.CONVERTED: "rebuilt and attached",
    Action.REMOVED: "removed",
    Action.BODY: "shown as body text",
}


def display_name(name: str, limit: int = 120) -> str:
    """A file name safe to print: no controls, no bidi overrides, bounded length."""
    cleaned = strip_hidden(name).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned or "(名前なし / unnamed)"


def _flatten(reports: Iterable[PartReport], depth: int = 0) -> list[tuple[int, PartReport]]:
    out: list[tuple[int, PartReport]] = []
    stack = [(depth, r) for r in reversed(list(reports))]
    while stack:
        level, report = stack.pop()
        out.append((level, report))
        if level < 5:  # archives inside archives: deeper levels are summarised by their parent
            stack.extend((level + 1, c) for c in reversed(report.children))
    return out


def _line(level: int, report: PartReport, lang: str) -> str:
    indent = "  " * (level + 1)
    name = display_name(report.filename)
    actions = ACTIONS_JA if lang == "ja" else ACTIONS_EN
    what = actions[report.action]
    if report.outputs:
        outs = ", ".join(display_name(o) for o in report.outputs[:5])
        if len(report.outputs) > 5:
            outs += f" …(+{len(report.outputs) - 5})"
        what += f" → {outs}" if lang == "en" else f"（{outs}）"
    reasons = ""
    if report.reasons:
        if lang == "ja":
            reasons = (
                " ［" + "、".join(REASONS_JA.get(r, r) + f" {r}" for r in report.reasons) + "］"
            )
        else:
            reasons = " [" + ", ".join(report.reasons) + "]"
    line = f"{indent}- {name} ({report.detected_type or report.declared_type}): {what}{reasons}"
    label = "画像内のQRコード" if lang == "ja" else "QR code in image"  # issue 16
    return "\n".join([line, *(f"{indent}  {label}: {t}" for t in report.qr)])


def render_notice(
    mugai_id: str,
    parts: list[PartReport],
    *,
    html_converted: bool,
    links_disarmed: int,
    contact: str,
    html_dropped: bool = False,
) -> str:
    """The notice, disarmed as a whole (file names, types and details are sender's text).

    ``html_converted``: an HTML body was rendered as text; ``html_dropped``: the HTML form of a
    text+HTML alternative was discarded and the sender's own text form is shown.
    """
    flat = _flatten(parts)
    ja: list[str] = [RULE, "【無害化のお知らせ】"]
    ja.append("このメールはインターネットから届いたため、安全のため内容を再構成しました。")
    if html_converted:
        ja.append("・HTML形式の本文はテキストに変換しました。")
    if html_dropped:
        ja.append("・HTML形式の別版は削除し、同じ内容のテキスト版を本文として使用しました。")
    if links_disarmed:
        ja.append(
            f"・本文中のリンク {links_disarmed} 件は無効化しました"
            "（hxxp:// や [.] の表記。開く場合は確認のうえ手で入力してください）。"
        )
    if flat:
        ja.append("・元のメールの各部分の扱い:")
        ja.extend(_line(level, r, "ja") for level, r in flat)
    else:
        ja.append("・添付ファイルはありませんでした。")
    ja.append(f"原本が必要な場合は、{contact} に次の番号をお知らせください: X-Mugai-Id: {mugai_id}")
    en: list[str] = ["[Sanitization notice]"]
    en.append("This message came from the Internet; its content was rebuilt for safety.")
    if html_converted:
        en.append("- The HTML body was converted to plain text.")
    if html_dropped:
        en.append("- The HTML alternative was dropped; the sender's plain-text version is shown.")
    if links_disarmed:
        en.append(f"- {links_disarmed} link(s) were disarmed (shown as hxxp:// and [.]).")
    if flat:
        en.append("- Parts of the original message:")
        en.extend(_line(level, r, "en") for level, r in flat)
    else:
        en.append("- There were no attachments.")
    en.append(f"To obtain the original, contact {contact} quoting X-Mugai-Id: {mugai_id}")
    # Last step: nothing is appended or changed after disarming.
    return disarm("\n".join([*ja, "", *en, RULE, ""])).text


def render_withheld_notice(
    mugai_id: str,
    reason: str,
    contact: str,
    *,
    sender: str = "",
    subject: str = "",
    date: str = "",
) -> str:
    """Which mail was withheld (sender, subject, date: headers only, one line each, no
    content) and why, with the X-Mugai-Id to quote when asking for it."""
    ja = REASONS_JA.get(reason, reason)
    sender, subject, date = (one_line(v, _NOTICE_FIELD) for v in (sender, subject, date))
    none = "（不明）"
    # Sender, Subject and Date are the sender's text, shown in a body a client links.
    text = "\n".join(
        [
            RULE,
            "【配送保留のお知らせ】",
            "あなた宛てのメールが安全上の理由で配送されず、保管されました。",
            f"差出人: {sender or none}",
            f"件名: {subject or '（件名なし）'}",
            f"日付: {date or none}",
            f"理由: {ja} ({reason})",
            f"必要な場合は、{contact} に次の番号をお知らせください: X-Mugai-Id: {mugai_id}",
            "",
            "[Message withheld]",
            "A message addressed to you was withheld for safety and kept in quarantine.",
            f"From: {sender or '(unknown)'}",
            f"Subject: {subject or '(no subject)'}",
            f"Date: {date or '(unknown)'}",
            f"Reason: {reason}. Contact {contact} quoting X-Mugai-Id: {mugai_id}",
            RULE,
            "",
        ]
    )
    return disarm(text).text
