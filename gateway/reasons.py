"""The one closed set of reason codes, with their Japanese and English labels.

Every reason a message, a part or a file job can carry is a member of ``Reason``; the API, the
notices, the console and the metrics show these codes, so never rename one. A test
(tests/test_reasons.py) walks gateway/ and fails on any code used without a member here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any


class Reason(enum.StrEnum):
    # whole message or file withheld
    VIRUS_FOUND = "virus_found"
    VIRUS_FOUND_OUTPUT = "virus_found_output"
    UNPARSEABLE = "unparseable"
    TOO_MANY_PARTS = "too_many_parts"
    TOO_DEEP = "too_deep"
    TOO_LARGE = "too_large"
    MAIL_LOOP = "mail_loop"
    PERMANENT_ERROR = "permanent_error"
    INTERNAL_ERROR = "internal_error"
    # delivery
    QUEUE_TIMEOUT = "queue_timeout"
    RELAY_TIMEOUT = "relay_timeout"
    RELAY_REJECTED = "relay_rejected"
    # retried later (deferred)
    TRANSIENT_ERROR = "transient_error"
    CLAMD_UNAVAILABLE = "clamd_unavailable"
    RELAY_TEMPORARY = "relay_temporary"
    SPOOL_ERROR = "spool_error"
    CONVERTER_BUSY = "converter_busy"
    # one part
    REMOVED = "removed"
    NOT_YET_SUPPORTED = "not_yet_supported"
    UNSUPPORTED_TYPE = "unsupported_type"
    TYPE_MISMATCH = "type_mismatch"
    ENCRYPTED = "encrypted"
    UNSAFE_PATH = "unsafe_path"
    CONVERSION_FAILED = "conversion_failed"
    CONVERSION_TIMEOUT = "conversion_timeout"
    INVALID_OUTPUT = "invalid_output"
    ACTIVE_CONTENT = "active_content"
    ARCHIVE_LIMIT = "archive_limit"
    EMPTY_RESULT = "empty_result"
    EMPTY_ARCHIVE = "empty_archive"
    EMPTY_TNEF = "empty_tnef"
    # informational (the part was delivered, changed)
    MACROS_REMOVED = "macros_removed"
    HTML_TO_TEXT = "html_to_text"
    LINKS_DISARMED = "links_disarmed"
    ALTERNATIVE_NOT_USED = "alternative_not_used"
    SIGNATURE_REMOVED = "signature_removed"
    # PPAP unlock (issue 12)
    UNLOCK_FAILED = "unlock_failed"
    WRONG_PASSWORD = "wrong_password"
    UNLOCK_RATE_LIMITED = "unlock_rate_limited"
    UNLOCK_UNSUPPORTED = "unlock_unsupported"
    PART_NOT_FOUND = "part_not_found"
    ALREADY_UNLOCKED = "already_unlocked"
    UNLOCK_IN_PROGRESS = "unlock_in_progress"
    PART_NOT_ENCRYPTED = "part_not_encrypted"
    NOTHING_TO_DELIVER = "nothing_to_deliver"
    # robustness (issue 13)
    CRASH_LOOP = "crash_loop"
    TOO_LARGE_TO_SCAN = "too_large_to_scan"
    # informational (issue 16)
    MSG_CONVERTED = "msg_converted"
    QR_LISTED = "qr_listed"
    QR_MASKED = "qr_masked"
    QR_MASK_INCOMPLETE = "qr_mask_incomplete"
    SHEET_HIDDEN = "sheet_hidden"
    SHEET_SCALED_SMALL = "sheet_scaled_small"
    # the converter jail (issue 11)
    ISOLATION_UNAVAILABLE = "isolation_unavailable"
    # the egress gate and bounded header parsing (issue 10)
    MALFORMED_HEADER = "malformed_header"
    EGRESS_REFUSED = "egress_refused"
    EGRESS_LIVE_LINK = "egress_live_link"
    EGRESS_HIDDEN_TEXT = "egress_hidden_text"
    EGRESS_LIVE_FORMULA = "egress_live_formula"
    EGRESS_TYPE = "egress_type"
    EGRESS_PDF = "egress_pdf"
    EGRESS_IMAGE = "egress_image"


# Codes whose original must never cross to the LGWAN side by default (release policy).
INFECTED = frozenset({Reason.VIRUS_FOUND.value, Reason.VIRUS_FOUND_OUTPUT.value})

LABELS_JA: dict[Reason, str] = {
    Reason.VIRUS_FOUND: "ウイルスを検知",
    Reason.VIRUS_FOUND_OUTPUT: "無害化後のファイルからウイルスを検知",
    Reason.UNPARSEABLE: "メールの構造を解析できない",
    Reason.TOO_MANY_PARTS: "パート数の上限を超過",
    Reason.TOO_DEEP: "入れ子の深さの上限を超過",
    Reason.TOO_LARGE: "サイズ・ページ数・画素数の上限を超過",
    Reason.MAIL_LOOP: "メールの配送ループ",
    Reason.PERMANENT_ERROR: "処理できないメール",
    Reason.INTERNAL_ERROR: "内部エラー",
    Reason.QUEUE_TIMEOUT: "保留期間を超過",
    Reason.RELAY_TIMEOUT: "中継サーバへの配送期限を超過",
    Reason.RELAY_REJECTED: "中継サーバが受信を拒否",
    Reason.TRANSIENT_ERROR: "一時的なエラー（再試行します）",
    Reason.CLAMD_UNAVAILABLE: "ウイルス検査が利用できない（再試行します）",
    Reason.RELAY_TEMPORARY: "中継サーバの一時的なエラー（再試行します）",
    Reason.SPOOL_ERROR: "一時保存領域のエラー（再試行します）",
    Reason.CONVERTER_BUSY: "変換処理が混雑（再試行します）",
    Reason.REMOVED: "削除",
    Reason.NOT_YET_SUPPORTED: "この形式の無害化は未対応",
    Reason.UNSUPPORTED_TYPE: "許可されていない形式",
    Reason.TYPE_MISMATCH: "拡張子・宣言された形式と内容が不一致",
    Reason.ENCRYPTED: "暗号化（パスワード付きZIP等）のため無害化できません。原本は保管しています",
    Reason.UNSAFE_PATH: "危険なパス名（../ や絶対パス）",
    Reason.CONVERSION_FAILED: "変換に失敗",
    Reason.CONVERSION_TIMEOUT: "変換が時間内に終わらず",
    Reason.INVALID_OUTPUT: "変換結果が不正",
    Reason.ACTIVE_CONTENT: "能動的なコンテンツを含む",
    Reason.ARCHIVE_LIMIT: "圧縮ファイルの展開上限を超過",
    Reason.EMPTY_RESULT: "変換結果が空",
    Reason.EMPTY_ARCHIVE: "圧縮ファイルの中身が空",
    Reason.EMPTY_TNEF: "winmail.dat（TNEF）の中身が空",
    Reason.MACROS_REMOVED: "マクロは除去",
    Reason.HTML_TO_TEXT: "HTMLをテキストに変換",
    Reason.LINKS_DISARMED: "リンクを無効化",
    Reason.ALTERNATIVE_NOT_USED: "同じ内容の別形式（テキスト版を使用）",
    Reason.SIGNATURE_REMOVED: "電子署名（無害化後は検証できないため削除）",
    Reason.UNLOCK_FAILED: "パスワード解除に失敗",
    Reason.WRONG_PASSWORD: "パスワードが違います",
    Reason.UNLOCK_RATE_LIMITED: "パスワードの誤入力が多いため一時的に受け付けません",
    Reason.UNLOCK_UNSUPPORTED: "パスワード解除に対応していない形式",
    Reason.PART_NOT_FOUND: "指定されたパートがありません",
    Reason.ALREADY_UNLOCKED: "このパートは解除・配送済み",
    Reason.UNLOCK_IN_PROGRESS: "同じメールの解除を処理中",
    Reason.PART_NOT_ENCRYPTED: "暗号化されたパートではありません",
    Reason.NOTHING_TO_DELIVER: "解除後の内容に配送できるものがありません",
    Reason.CRASH_LOOP: "処理中にゲートウェイが繰り返し停止したため保留",
    Reason.TOO_LARGE_TO_SCAN: "ウイルス検査の上限サイズを超過",
    Reason.MSG_CONVERTED: "Outlookメッセージ（.msg）をテキストと無害化した添付に変換",
    Reason.QR_LISTED: "画像内のQRコード・バーコードを検出（内容は下記、リンクは無効化して表示）",
    Reason.QR_MASKED: "画像内のQRコード・バーコードを塗りつぶし（内容は下記に表示）",
    Reason.QR_MASK_INCOMPLETE: "QRコード・バーコードが多すぎて塗りつぶしきれないため削除",
    Reason.SHEET_HIDDEN: "非表示のシートは印刷していません",
    Reason.SHEET_SCALED_SMALL: "横幅に合わせて縮小したため文字が小さいシートがあります",
    Reason.ISOLATION_UNAVAILABLE: "変換用の隔離環境を利用できないため変換せず保留",
    Reason.MALFORMED_HEADER: "ヘッダの形式が不正（パラメータ数・長さの上限を超過）",
    Reason.EGRESS_REFUSED: "配送前の最終検査で不合格",
    Reason.EGRESS_LIVE_LINK: "配送前の最終検査で有効なリンクを検出",
    Reason.EGRESS_HIDDEN_TEXT: "配送前の最終検査で制御文字・不可視文字を検出",
    Reason.EGRESS_LIVE_FORMULA: "配送前の最終検査でCSVの数式を検出",
    Reason.EGRESS_TYPE: "配送前の最終検査で許可されていない形式を検出",
    Reason.EGRESS_PDF: "配送前の最終検査でPDFに画像以外の要素を検出",
    Reason.EGRESS_IMAGE: "配送前の最終検査で画像を読み込めず",
}

LABELS_EN: dict[Reason, str] = {
    Reason.VIRUS_FOUND: "virus found",
    Reason.VIRUS_FOUND_OUTPUT: "virus found in a sanitized output",
    Reason.UNPARSEABLE: "the message structure cannot be parsed",
    Reason.TOO_MANY_PARTS: "too many parts",
    Reason.TOO_DEEP: "nested too deeply",
    Reason.TOO_LARGE: "size, page or pixel limit exceeded",
    Reason.MAIL_LOOP: "mail loop",
    Reason.PERMANENT_ERROR: "cannot be processed",
    Reason.INTERNAL_ERROR: "internal error",
    Reason.QUEUE_TIMEOUT: "held too long",
    Reason.RELAY_TIMEOUT: "the relay did not take it in time",
    Reason.RELAY_REJECTED: "the relay rejected it",
    Reason.TRANSIENT_ERROR: "temporary error (retried)",
    Reason.CLAMD_UNAVAILABLE: "virus scanner unavailable (retried)",
    Reason.RELAY_TEMPORARY: "relay temporarily failing (retried)",
    Reason.SPOOL_ERROR: "spool error (retried)",
    Reason.CONVERTER_BUSY: "converters busy (retried)",
    Reason.REMOVED: "removed",
    Reason.NOT_YET_SUPPORTED: "format not supported yet",
    Reason.UNSUPPORTED_TYPE: "type not allowed",
    Reason.TYPE_MISMATCH: "content does not match its name or declared type",
    Reason.ENCRYPTED: "encrypted (e.g. password ZIP); the original is kept",
    Reason.UNSAFE_PATH: "unsafe path name (../ or absolute)",
    Reason.CONVERSION_FAILED: "conversion failed",
    Reason.CONVERSION_TIMEOUT: "conversion timed out",
    Reason.INVALID_OUTPUT: "the converter's output was invalid",
    Reason.ACTIVE_CONTENT: "active content",
    Reason.ARCHIVE_LIMIT: "archive limit exceeded",
    Reason.EMPTY_RESULT: "the conversion produced nothing",
    Reason.EMPTY_ARCHIVE: "empty archive",
    Reason.EMPTY_TNEF: "empty winmail.dat (TNEF)",
    Reason.MACROS_REMOVED: "macros removed",
    Reason.HTML_TO_TEXT: "HTML converted to text",
    Reason.LINKS_DISARMED: "links disarmed",
    Reason.ALTERNATIVE_NOT_USED: "alternative version not used (text version used)",
    Reason.SIGNATURE_REMOVED: "digital signature removed (cannot verify after sanitizing)",
    Reason.UNLOCK_FAILED: "unlock failed",
    Reason.WRONG_PASSWORD: "wrong password",
    Reason.UNLOCK_RATE_LIMITED: "too many wrong passwords; try again later",
    Reason.UNLOCK_UNSUPPORTED: "this format cannot be unlocked",
    Reason.PART_NOT_FOUND: "no such part",
    Reason.ALREADY_UNLOCKED: "this part was already unlocked and delivered",
    Reason.UNLOCK_IN_PROGRESS: "an unlock of this message is in progress",
    Reason.PART_NOT_ENCRYPTED: "the part is not encrypted",
    Reason.NOTHING_TO_DELIVER: "nothing deliverable after unlocking",
    Reason.CRASH_LOOP: "the gateway stopped repeatedly while handling it",
    Reason.TOO_LARGE_TO_SCAN: "over the virus scanner's size limit",
    Reason.MSG_CONVERTED: "Outlook message (.msg) converted to text and rebuilt attachments",
    Reason.QR_LISTED: "QR code or barcode found in an image (listed below, links disarmed)",
    Reason.QR_MASKED: "QR code or barcode in an image painted over (listed below)",
    Reason.QR_MASK_INCOMPLETE: "removed: too many QR codes or barcodes to paint over",
    Reason.SHEET_HIDDEN: "hidden sheets were not printed",
    Reason.SHEET_SCALED_SMALL: "a sheet was scaled to the page width and its text is small",
    Reason.ISOLATION_UNAVAILABLE: "the converter jail is unavailable: not converted, withheld",
    Reason.MALFORMED_HEADER: "malformed header (over its bounds)",
    Reason.EGRESS_REFUSED: "refused by the last check before delivery",
    Reason.EGRESS_LIVE_LINK: "a live link found by the last check before delivery",
    Reason.EGRESS_HIDDEN_TEXT: "hidden characters found by the last check before delivery",
    Reason.EGRESS_LIVE_FORMULA: "a live CSV formula found by the last check before delivery",
    Reason.EGRESS_TYPE: "a type outside the contract found by the last check before delivery",
    Reason.EGRESS_PDF: "a PDF with more than page images found by the last check before delivery",
    Reason.EGRESS_IMAGE: "an image that does not decode found by the last check before delivery",
}


def label_ja(code: str) -> str:
    """The Japanese label; an unknown code (an old record) is shown as itself."""
    try:
        return LABELS_JA[Reason(code)]
    except ValueError:
        return code


def label_en(code: str) -> str:
    try:
        return LABELS_EN[Reason(code)]
    except ValueError:
        return code


def _part_reasons(parts: Any, out: dict[str, None]) -> None:
    for part in parts if isinstance(parts, (list, tuple)) else ():
        if isinstance(part, Mapping):
            for r in part.get("reasons") or ():
                out[str(r)] = None
            _part_reasons(part.get("children"), out)


def all_reasons(reasons: Iterable[str] | None, parts: Any) -> list[str]:
    """The message's own reasons, then those of all its parts (nested), each once, in order."""
    out: dict[str, None] = dict.fromkeys(str(r) for r in reasons or ())
    _part_reasons(parts, out)
    return list(out)
