"""Jinja2 rendering with autoescape, Japanese labels and the console's security headers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.responses import HTMLResponse

from gateway.api.console.findings import AUTH_REASON_LABELS, OVERALL_LABELS
from gateway.api.console.query import JST
from gateway.api.display import real_extension, visible
from gateway.reasons import Reason, all_reasons, label_ja
from gateway.vocab import MessageStatus, ReleaseStatus

HERE = Path(__file__).resolve().parent

# Every console response: no framing, no inline script, no referrer leaking ids to elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

STATUS_LABELS = {
    MessageStatus.PROCESSING: "処理中",
    MessageStatus.DEFERRED: "再送待ち",
    MessageStatus.DELIVERED: "配送済み",
    MessageStatus.QUARANTINED: "隔離",
    MessageStatus.RELEASED: "解放済み",
    MessageStatus.DELETED: "原本削除済み",
    MessageStatus.DONE: "完了",
    MessageStatus.WITHHELD: "保留",
}
ACTION_LABELS = {
    "kept": "再符号化して通過",
    "converted": "変換（無害化）",
    "removed": "削除",
    "body": "本文として使用",
}
REQUEST_LABELS = {
    ReleaseStatus.PENDING: "承認待ち",
    ReleaseStatus.APPROVED: "承認済み（配送中）",
    ReleaseStatus.RELEASED: "解放済み",
    ReleaseStatus.FAILED: "配送失敗",
    ReleaseStatus.REJECTED: "却下",
}
CATEGORY_LABELS = {
    "business_required": "業務上、原本の形式が必要",
    "sender_verified": "送信元に確認済み",
    "cannot_sanitize": "無害化できない形式",
    "legal": "法令・訴訟対応",
    "other": "その他（理由に記載）",
    "exception": "例外措置（区分の指定なし）",
}
ROLE_LABELS = {
    "viewer": "閲覧者",
    "operator": "運用担当",
    "approver": "承認者",
    "auditor": "監査担当",
    "admin": "管理者",
}
ERROR_TEXT = {
    "approver_is_requester": (
        "申請者本人は承認・却下できません（二人承認のため、別の承認者が必要です）。"
    ),
    "approver_linked_to_requester": (
        "申請者のアカウントを最近作成・変更した人（または申請者が作成・変更した人）は承認・却下"
        "できません。別の承認者が必要です。"
    ),
    "reason_required": "解放の理由を入力してください。",
    "reason_control_characters": "理由に使えない制御文字が含まれています。",
    "original_deleted": "原本は削除済みです。",
    "message_in_progress": "処理中のメールは解放できません。",
    "not_a_mail": "ファイルは解放の対象ではありません。",
    "message_not_found": "メールが見つかりません。",
    "request_not_found": "解放申請が見つかりません。",
    "recipient_not_in_original": "元の宛先以外には解放できません。",
    "csrf_failed": "フォームが無効です（期限切れ、または不正な送信）。ページを開き直してください。",
    "foreign_origin": "他のサイトからの送信は受け付けません。",
    "forbidden": "この操作を行う権限がありません。",
    "form_too_large": "入力が大きすぎます。",
    "form_expected": "フォームの形式が正しくありません。",
    "bad_form": "フォームの内容を読み取れません。",
    "invalid_token": "トークンが正しくないか、失効しています。",
    "too_many_attempts": "サインインの試行が多すぎます。しばらく待ってから再度お試しください。",
    "not_found": "ページが見つかりません。",
    "relay_failed": "中継サーバーへの配送に失敗しました。後で再度承認できます。",
    "rescan_virus_found": "配送直前の再スキャンでウイルスが検知されたため、"
    "原本を配送しませんでした。",
    "rescan_too_large_to_scan": "原本がウイルス検査の上限を超えるため配送しませんでした。"
    "検査なしで配送するには確認欄に unscanned と入力して再度承認してください。",
    "rescan_clamd_unavailable": "ウイルス検査が利用できないため原本を配送しませんでした。"
    "検査が復旧してから再度承認してください。",
    "release_request_open": "このメールには処理中の解放申請があります。",
    "already_released": "このメールは既に解放済みです（再解放には管理者の許可が必要です）。",
    "infected_release_forbidden": "ウイルスが検知された原本は、設定により解放できません。",
    "confirm_signature_mismatch": "確認のためのウイルス名が一致しません。",
    "exception_category_required": "例外措置の区分を選択してください。",
    "exception_ack_required": "例外措置であることの確認にチェックしてください。",
    "no_sanitized_copy": "無害化済みのデータがありません。",
    "not_released": "このメールには再解放を許可できる解放がありません。",
    "bad_month": "月は 2026-11 の形式で指定してください。",
}


def jst(value: datetime | None) -> str:
    if value is None:
        return ""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")


def size(value: int) -> str:
    if value < 1024:
        return f"{value} B"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KiB"
    return f"{value / (1024 * 1024):.1f} MiB"


def error_text(reason: str) -> str:
    if reason.startswith("request_") and reason not in ERROR_TEXT:
        return "この解放申請は既に処理されています。"
    return ERROR_TEXT.get(reason, "操作できませんでした。")


def shown(value: Any) -> Any:
    """Every ``{{ … }}`` output passes here before escaping: strings get their bidi and other
    invisible characters spelled out (gateway/api/display.py); markup we built is left alone."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template is HTML; nothing from a message is trusted
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=shown,  # no template can forget it, whatever field it prints
    )
    env.filters.update(jst=jst, size=size, real_ext=real_extension)
    env.globals.update(
        STATUS_LABELS=STATUS_LABELS,
        ACTION_LABELS=ACTION_LABELS,
        REQUEST_LABELS=REQUEST_LABELS,
        ROLE_LABELS=ROLE_LABELS,
        CATEGORY_LABELS=CATEGORY_LABELS,
        AUTH_OVERALL=OVERALL_LABELS,  # issue 16
        AUTH_REASONS=AUTH_REASON_LABELS,
        error_text=error_text,
        reason_ja=label_ja,
        all_reasons=all_reasons,
        # closed vocabularies: templates compare against members, never spelled strings
        RS=ReleaseStatus,
        MS=MessageStatus,
        Reason=Reason,
    )
    return env


ENV = _env()


def page(
    template: str,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    html = ENV.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**NO_STORE, **(headers or {})})
