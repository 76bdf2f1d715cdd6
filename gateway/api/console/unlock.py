"""The console's PPAP form: ``POST /messages/{id}/unlock`` (operator), the same flow as the
API (gateway/unlock.py). The outcome comes back as a notice on the detail page; the
password is in the form body only and goes nowhere else."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.console.routes import _checked_id, ports, posted, see_other
from gateway.errors import MugaiError, Refused, WrongPassword
from gateway.mime.notice import REASONS_JA
from gateway.sanitize.decrypt import MAX_PASSWORD_CHARS
from gateway.store.unlocks import RateLimited
from gateway.unlock import PART_PATTERN, unlock

router = APIRouter(include_in_schema=False)

_PART = re.compile(PART_PATTERN)
_REFUSALS_JA = {
    "message_not_found": "メールが見つかりません",
    "original_deleted": "原本は削除済みです",
    "message_in_progress": "処理中のメールです",
    "not_a_mail": "メールではありません",
    "clamd_unavailable": "ウイルス検査ができません。しばらくしてからもう一度お試しください",
    "relay_temporary": "配送先が一時的に受け付けません。もう一度お試しください",
    "relay_rejected": "配送先が受信を拒否しました",
}


def _label(reason: str) -> str:
    return _REFUSALS_JA.get(reason) or REASONS_JA.get(reason) or reason


@router.post("/messages/{mugai_id}/unlock")
async def unlock_form(request: Request, mugai_id: str) -> Response:
    session, form = await posted(request, "request")
    mugai_id = _checked_id(mugai_id, session)
    part = form.get("part", "")
    password = form.get("password", "")
    back = see_other(f"/messages/{mugai_id}#unlock")
    if not _PART.fullmatch(part) or not 0 < len(password) <= MAX_PASSWORD_CHARS:
        session.notice("error", "パートとパスワードを入力してください。")
        return back
    gw = ports(request)
    try:
        done = await unlock(
            store=gw.store,
            relay=gw.relay,
            scanner=gw.scanner,
            office=getattr(gw, "office", None),
            settings=gw.settings,
            mugai_id=mugai_id,
            part=part,
            password=password,
            who=session.principal,
        )
    except RateLimited as exc:
        session.notice(
            "error",
            f"{_label(exc.reason)}（約{exc.retry_after}秒後に再試行できます） {exc.reason}",
        )
        return back
    except Refused as exc:
        session.notice("error", f"解除できません: {_label(exc.reason)} {exc.reason}")
        return back
    except WrongPassword as exc:
        cfg = gw.settings.unlock
        wrong = await asyncio.to_thread(gw.store.unlock_wrong_count, mugai_id, cfg.window)
        left = max(0, cfg.max_wrong_passwords - wrong)
        session.notice("error", f"{_label(exc.reason)}（残り {left} 回） {exc.reason}")
        return back
    except MugaiError as exc:
        session.notice("error", f"解除できません: {_label(exc.reason)} {exc.reason}")
        return back
    session.notice(
        "ok",
        f"パスワードを解除し、無害化した内容を {len(done.accepted)} 名の宛先に配送しました"
        f"（Message-ID {done.message_id}）。",
    )
    return back
