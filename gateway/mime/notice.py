"""The notice at the top of every delivered body (Japanese, then English)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from gateway.mime.defang import disarm
from gateway.model import Action, PartReport

RULE = "━" * 36

REASONS_JA: dict[str, str] = {
    "not_yet_supported": "この形式の無害化は未対応",
    "unsupported_type": "許可されていない形式",
    "type_mismatch": "拡張子・宣言された形式と内容が不一致",
    "encrypted": "暗号化（パスワード付きZIP等）のため無害化できません。原本は保管しています",
    "unsafe_path": "危険なパス名（../ や絶対パス）",
    "queue_timeout": "保留期間を超過",
    "relay_timeout": "中継サーバへの配送期限を超過",
    "relay_rejected": "中継サーバが受信を拒否",
    "mail_loop": "メールの配送ループ",
    "unparseable": "メールの構造を解析できない",
    "too_many_parts": "パート数の上限を超過",
    "too_deep": "入れ子の深さの上限を超過",
    "too_large": "サイズ・ページ数・画素数の上限を超過",
    "conversion_failed": "変換に失敗",
    "conversion_timeout": "変換が時間内に終わらず",
    "invalid_output": "変換結果が不正",
    "active_content": "能動的なコンテンツを含む",
    "archive_limit": "圧縮ファイルの展開上限を超過",
    "virus_found": "ウイルスを検知",
    "macros_removed": "マクロは除去",
    "html_to_text": "HTMLをテキストに変換",
    "links_disarmed": "リンクを無効化",
    "alternative_not_used": "同じ内容の別形式（テキスト版を使用）",
    "signature_removed": "電子署名（無害化後は検証できないため削除）",
    "internal_error": "内部エラー",
    "empty_result": "変換結果が空",
    "malformed_header": "ヘッダの形式が不正（パラメータ数・長さの上限を超過）",
    "virus_found_output": "無害化後のメールからウイルスを検知",
    "egress_refused": "配送前の最終検査で不合格",
    "egress_live_link": "配送前の最終検査で有効なリンクを検出",
    "egress_hidden_text": "配送前の最終検査で制御文字・不可視文字を検出",
    "egress_live_formula": "配送前の最終検査でCSVの数式を検出",
    "egress_type": "配送前の最終検査で許可されていない形式を検出",
    "egress_pdf": "配送前の最終検査でPDFに画像以外の要素を検出",
    "egress_image": "配送前の最終検査で画像を読み込めず",
}

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
    cleaned = "".join(
        ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
    ).strip()
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
    return f"{indent}- {name} ({report.detected_type or report.declared_type}): {what}{reasons}"


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


def render_withheld_notice(mugai_id: str, reason: str, contact: str) -> str:
    ja = REASONS_JA.get(reason, reason)
    return "\n".join(
        [
            RULE,
            "【配送保留のお知らせ】",
            "あなた宛てのメールが安全上の理由で配送されず、保管されました。",
            f"理由: {ja} ({reason})",
            f"必要な場合は、{contact} に次の番号をお知らせください: X-Mugai-Id: {mugai_id}",
            "",
            "[Message withheld]",
            "A message addressed to you was withheld for safety and kept in quarantine.",
            f"Reason: {reason}. Contact {contact} quoting X-Mugai-Id: {mugai_id}",
            RULE,
            "",
        ]
    )
