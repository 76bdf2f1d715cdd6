"""The console's pages and forms: the same store calls, permissions and release flow as the API.

Reads are GET; everything that changes state or leaves an audit record (sign-out, downloading
an original, release requests and decisions) is a POST carrying the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from gateway.api.console import csrf
from gateway.api.console.findings import auth_view, qr_rows
from gateway.api.console.preview import Preview, preview
from gateway.api.console.query import parse
from gateway.api.console.render import ERROR_TEXT, HERE, error_text, page
from gateway.api.console.session import COOKIE, LOGIN_COOKIE, Session, SessionStore
from gateway.api.console.throttle import LOGIN_FAILURES, LoginNonces, RateLimit, token_key
from gateway.api.deps import GatewayPorts
from gateway.api.disposition import content_disposition
from gateway.api.release_flow import approve_and_send
from gateway.errors import Refused
from gateway.report_monthly import ENCODINGS, collect, parse_month
from gateway.report_monthly import render as render_csv
from gateway.store.releases import ExceptionCategory, same_person, signature_of
from gateway.store.repository import Store
from gateway.store.tokens import Principal
from gateway.vocab import MessageStatus, ReleaseStatus

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_SEQ = re.compile(r"^[0-9]{1,18}$")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
MAX_REASON = 2000
MAX_TOKEN_FIELD = 256
AUDIT_PAGE = 100
REQUEST_STATUSES = tuple(ReleaseStatus)
_CSS = (HERE / "static" / "console.css").read_bytes()
MAX_SIGNATURE = 500
_DOWNLOAD_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Should a browser ever render it, the original gets no scripts, no origin, no fetches.
    "Content-Security-Policy": "sandbox; default-src 'none'",
}


class ConsoleError(Exception):
    def __init__(self, status: int, reason: str, session: Session | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.session = session


class SignInRequired(Exception):
    pass


def sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.console_sessions
    return store


def ports(request: Request) -> GatewayPorts:
    gw: GatewayPorts = request.app.state.gateway
    return gw


def _still_valid(store: Store, principal: Principal) -> bool:
    # Re-checked on every request: revoking a token, or changing its person's role, ends its
    # console sessions at once (the session must not keep a role the person no longer has).
    return store.principal_of(principal.token_id) == principal


def context(request: Request, session: Session | None, **extra: Any) -> dict[str, Any]:
    principal = session.principal if session else None
    return {
        "me": principal,
        "csrf": session.csrf if session else "",
        "flash": session.take_flash() if session else [],
        "can": principal.can if principal else (lambda _permission: False),
        "path": request.url.path,
        **extra,
    }


async def current(request: Request, permission: str = "") -> Session:
    session = sessions(request).get(request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired
    store = ports(request).store
    if not await asyncio.to_thread(_still_valid, store, session.principal):
        sessions(request).drop_token(session.principal.token_id)
        raise SignInRequired
    if permission and not session.principal.can(permission):
        raise ConsoleError(403, "forbidden", session)
    return session


async def posted(request: Request, permission: str = "") -> tuple[Session, dict[str, str]]:
    """A state-changing form: origin, session, then the synchronizer token, then the role."""
    session = await current(request)
    try:
        csrf.check_origin(request)
        form = await csrf.read_form(request)
        csrf.check_token(session.csrf, form)
    except csrf.FormError as exc:
        raise ConsoleError(exc.status, exc.reason, session) from exc
    if permission and not session.principal.can(permission):
        raise ConsoleError(403, "forbidden", session)
    return session, form


def store_error(exc: Refused, session: Session) -> ConsoleError:
    # The class carries its status (gateway/errors.py), as for the API's handler.
    return ConsoleError(exc.http_status, exc.reason, session)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _checked_id(value: str, session: Session) -> str:
    if not _ID.fullmatch(value):
        raise ConsoleError(404, "not_found", session)
    return value


def _reason(form: dict[str, str], required: bool, session: Session) -> str:
    reason = form.get("reason", "").strip()
    if len(reason) > MAX_REASON:
        raise ConsoleError(400, "form_too_large", session)
    if required and not reason:
        raise ConsoleError(400, "reason_required", session)
    return reason


def _signature_field(form: dict[str, str], session: Session) -> str:
    value = form.get("confirm_signature", "").strip()
    if len(value) > MAX_SIGNATURE:
        raise ConsoleError(400, "form_too_large", session)
    return value


def _acknowledged(form: dict[str, str], session: Session) -> None:
    """The release of an untouched original is an exception (例外措置): the person ticks that
    they know it (the browser also asks in a dialog; this check holds without script)."""
    if form.get("exception_ack") != "1":
        raise ConsoleError(422, "exception_ack_required", session)


# -- sign-in ------------------------------------------------------------------------------
@router.get("/")
async def home(request: Request) -> Response:
    signed_in = sessions(request).get(request.cookies.get(COOKIE)) is not None
    return see_other("/messages" if signed_in else "/login")


def _login_page(request: Request, nonce: str, status: int = 200, error: str = "") -> Response:
    response = page("login.html", context(request, None, login_csrf=nonce, error=error), status)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _nonces(request: Request) -> LoginNonces:
    nonces: LoginNonces = request.app.state.login_nonces
    return nonces


def _throttled(request: Request, token: str) -> bool:
    """Count this attempt against its source address and its token; True when over a limit.
    (Behind a reverse proxy every address is the proxy's: the per-token limit still holds.)"""
    by_address: RateLimit = request.app.state.login_by_address
    by_token: RateLimit = request.app.state.login_by_token
    address = request.client.host if request.client else ""
    address_ok = by_address.allow(address)
    return not (address_ok and by_token.allow(token_key(token)))


@router.get("/login")
async def login_form(request: Request) -> Response:
    if sessions(request).get(request.cookies.get(COOKIE)) is not None:
        return see_other("/messages")
    # Only a nonce of our own, unused: a value a client (or another site) sets is never one.
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    nonces = _nonces(request)
    return _login_page(request, nonce if nonces.reusable(nonce) else nonces.issue())


@router.post("/login")
async def login(request: Request) -> Response:
    try:
        csrf.check_origin(request)
        form = await csrf.read_form(request)
        # No session yet: the form echoes a SameSite=Strict cookie (double submit), and the
        # value must be a nonce this server issued and nobody used yet.
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not (
            csrf.same_token(nonce, form.get(csrf.FIELD, "")) and _nonces(request).consume(nonce)
        ):
            raise csrf.FormError(403, "csrf_failed")
    except csrf.FormError as exc:
        LOGIN_FAILURES.labels(exc.reason).inc()
        raise ConsoleError(exc.status, exc.reason) from exc
    token = form.get("token", "").strip()[: MAX_TOKEN_FIELD + 1]
    if _throttled(request, token):
        LOGIN_FAILURES.labels("too_many_attempts").inc()
        log.warning("job=- console sign-in throttled")
        return _login_page(request, _nonces(request).issue(), 429, "too_many_attempts")
    store = ports(request).store
    principal = (
        await asyncio.to_thread(store.authenticate, token)
        if 0 < len(token) <= MAX_TOKEN_FIELD
        else None
    )
    if principal is None:
        LOGIN_FAILURES.labels("invalid_token").inc()
        log.warning("job=- console sign-in refused")
        return _login_page(request, _nonces(request).issue(), 401, "invalid_token")
    sessions(request).drop(request.cookies.get(COOKIE))  # a fresh id: no session fixation
    session = sessions(request).create(principal)
    await asyncio.to_thread(store.audit, principal.actor, "console.signin", principal.name)
    log.info("job=- console sign-in by=%s role=%s", principal.name, principal.role)
    response = see_other("/messages")
    response.set_cookie(
        COOKIE,
        session.id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session, _form = await posted(request)
    sessions(request).drop(session.id)
    response = see_other("/login")
    if COOKIE in request.cookies:  # a stale id; a request without one clears nothing
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- messages -----------------------------------------------------------------------------
@router.get("/messages")
async def message_list(request: Request) -> Response:
    session = await current(request, "read")
    search = parse(request.query_params)
    rows = await asyncio.to_thread(ports(request).store.search, search.query())
    more = len(rows) == search.query().limit
    next_link = search.link(rows[-1].id) if more else ""
    ctx = context(request, session, search=search, rows=rows, next_link=next_link)
    return page("messages.html", ctx, 422 if search.errors else 200)


def _preview(data: bytes | None) -> tuple[Preview | None, bool]:
    if data is None:
        return None, False
    try:
        return preview(data), False
    except Exception:  # noqa: BLE001 - an unreadable copy is shown as such, never a 500
        log.exception("console preview failed")
        return None, True


@router.get("/messages/{mugai_id}")
async def message_detail(request: Request, mugai_id: str) -> Response:
    session = await current(request, "read")
    mugai_id = _checked_id(mugai_id, session)
    store = ports(request).store
    row = await asyncio.to_thread(store.get, mugai_id)
    if row is None:
        raise ConsoleError(404, "message_not_found", session)
    has_original = await asyncio.to_thread(store.has_blob, mugai_id, "original")
    sanitized = (
        await asyncio.to_thread(store.blob, mugai_id, "sanitized") if row.kind == "mail" else None
    )
    shown, broken = await asyncio.to_thread(_preview, sanitized)
    requests = await asyncio.to_thread(lambda: store.release_requests(message=mugai_id, limit=50))
    signature = signature_of(row)
    ctx = context(
        request,
        session,
        msg=row,
        has_original=has_original,
        preview=shown,
        preview_broken=broken,
        requests=requests,
        releasable=row.kind == "mail"
        and has_original
        and row.status
        not in (MessageStatus.PROCESSING, MessageStatus.DEFERRED, MessageStatus.DELETED),
        signature=signature,
        allow_infected=store.policy.allow_infected,
        categories=[c.value for c in ExceptionCategory if c is not ExceptionCategory.EXCEPTION],
        open_request=any(
            r.status in (ReleaseStatus.PENDING, ReleaseStatus.APPROVED, ReleaseStatus.FAILED)
            or (r.status == ReleaseStatus.RELEASED and r.reopened_at is None)
            for r in requests
        ),
        reopenable=any(
            r.status == ReleaseStatus.RELEASED and r.reopened_at is None for r in requests
        ),
        auth=auth_view(row.scan),  # issue 16
        qr=qr_rows(row.parts),
    )
    return page("detail.html", ctx)


@router.post("/messages/{mugai_id}/original")
async def download_original(request: Request, mugai_id: str) -> Response:
    session, _form = await posted(request, "original")
    mugai_id = _checked_id(mugai_id, session)
    store = ports(request).store
    row = await asyncio.to_thread(store.get, mugai_id)
    if row is None:
        raise ConsoleError(404, "message_not_found", session)
    try:
        # Audited in the same transaction that reads the bytes (as the API does).
        data = await asyncio.to_thread(store.read_original, mugai_id, session.principal)
    except Refused as exc:
        raise store_error(exc, session) from exc
    log.info("job=%s original downloaded in console by=%s", mugai_id, session.principal.name)
    if row.kind == "mail":
        media, name = "message/rfc822", f"{row.id}.eml"
    else:
        media, name = "application/octet-stream", row.filename or row.id
    headers = {"Content-Disposition": content_disposition(name), **_DOWNLOAD_HEADERS}
    return Response(data, media_type=media, headers=headers)


@router.post("/messages/{mugai_id}/release-requests")
async def request_release(request: Request, mugai_id: str) -> Response:
    session, form = await posted(request, "request")
    mugai_id = _checked_id(mugai_id, session)
    reason = _reason(form, True, session)
    category = form.get("category", "")
    if category not in {c.value for c in ExceptionCategory}:
        raise ConsoleError(422, "exception_category_required", session)
    _acknowledged(form, session)
    signature = _signature_field(form, session)
    store = ports(request).store
    try:
        row = await asyncio.to_thread(
            lambda: store.request_release(
                mugai_id, reason, session.principal, category=category,
                confirm_signature=signature,
            )
        )  # fmt: skip
    except Refused as exc:
        raise store_error(exc, session) from exc
    log.info("job=%s release requested request=%s by=%s", mugai_id, row.id, row.requested_by)
    session.notice("ok", f"解放を申請しました（申請ID {row.id}）。承認者の承認をお待ちください。")
    return see_other(f"/messages/{mugai_id}")


@router.post("/messages/{mugai_id}/release-reopen")
async def reopen_release(request: Request, mugai_id: str) -> Response:
    """Admin only: allow a released message to be released once more (audited, with a reason)."""
    session, form = await posted(request, "reopen")
    mugai_id = _checked_id(mugai_id, session)
    reason = _reason(form, True, session)
    try:
        row = await asyncio.to_thread(
            ports(request).store.reopen_release, mugai_id, session.principal, reason
        )
    except Refused as exc:
        raise store_error(exc, session) from exc
    log.info("job=%s release reopened request=%s by=%s", mugai_id, row.id, row.reopened_by)
    session.notice("ok", "再解放を許可しました。改めて解放申請と承認が必要です。")
    return see_other(f"/messages/{mugai_id}")


# -- release requests ---------------------------------------------------------------------
@router.get("/releases")
async def release_list(request: Request) -> Response:
    session = await current(request, "read")
    status = request.query_params.get("status", ReleaseStatus.PENDING)
    if status not in REQUEST_STATUSES and status != "all":
        status = ReleaseStatus.PENDING
    rows = await asyncio.to_thread(
        lambda: ports(request).store.release_requests(
            status="" if status == "all" else status, limit=100
        )
    )
    return page("releases.html", context(request, session, rows=rows, status=status))


async def _decide(request: Request, rid: str, approve: bool) -> Response:
    session, form = await posted(request, "decide")
    rid = _checked_id(rid, session)
    reason = _reason(form, False, session)
    gw = ports(request)
    try:
        if approve:
            current_row = await asyncio.to_thread(gw.store.release_request, rid)
            if (
                current_row is not None
                and current_row.exception
                and current_row.status
                in (ReleaseStatus.PENDING, ReleaseStatus.FAILED, ReleaseStatus.APPROVED)
                and not same_person(current_row, session.principal)  # that refusal comes first
            ):
                _acknowledged(form, session)
            outcome = await approve_and_send(
                gw.store, gw.relay, gw.scanner, rid, session.principal, None, reason,
                _signature_field(form, session),
            )  # fmt: skip
            row, ok = outcome.request, outcome.ok
        else:
            row = await asyncio.to_thread(gw.store.reject_release, rid, session.principal, reason)
            ok = True
    except Refused as exc:
        raise store_error(exc, session) from exc
    if not approve:
        session.notice("ok", f"解放申請 {rid} を却下しました。")
    elif ok:
        session.notice("ok", f"承認しました。原本を {len(row.rcpt_tos)} 件の宛先へ配送しました。")
    else:
        error = str((row.result or {}).get("error", ""))
        rescan = f"rescan_{error}"
        session.notice("error", error_text(rescan if rescan in ERROR_TEXT else "relay_failed"))
    return see_other(f"/messages/{row.message}")


@router.post("/release-requests/{rid}/approve")
async def approve(request: Request, rid: str) -> Response:
    return await _decide(request, rid, True)


@router.post("/release-requests/{rid}/reject")
async def reject(request: Request, rid: str) -> Response:
    return await _decide(request, rid, False)


# -- audit --------------------------------------------------------------------------------
@router.get("/audit")
async def audit_log(request: Request) -> Response:
    session = await current(request, "audit")
    before = request.query_params.get("before", "")
    target = request.query_params.get("target", "").strip()
    before_seq = int(before) if _SEQ.fullmatch(before) else 0
    if not _ID.fullmatch(target):
        target = ""
    rows = await asyncio.to_thread(
        lambda: ports(request).store.audit_entries(
            before=before_seq, limit=AUDIT_PAGE, target=target
        )
    )
    next_before = rows[-1].seq if len(rows) == AUDIT_PAGE else 0
    ctx = context(request, session, rows=rows, target=target, next_before=next_before)
    return page("audit.html", ctx)


# -- monthly report (issue 16) ----------------------------------------------------------
@router.get("/reports")
async def reports(request: Request) -> Response:
    session = await current(request, "audit")
    return page("reports.html", context(request, session, month=_last_month(request)))


@router.post("/reports/monthly")
async def monthly_report(request: Request) -> Response:
    """The same CSV as ``mugai report`` and ``GET /api/v1/reports/monthly``, audited the same."""
    session, form = await posted(request, "audit")
    cfg = ports(request).settings.report
    encoding = form.get("encoding", "utf-8-sig")
    if encoding not in ENCODINGS:
        raise ConsoleError(422, "bad_form", session)
    month = form.get("month", "")
    try:
        if not _MONTH.fullmatch(month):
            raise ValueError(month)
        period = parse_month(month, cfg.timezone)
    except ValueError as exc:
        raise ConsoleError(422, "bad_month", session) from exc
    actor = session.principal.actor
    store = ports(request).store

    def build() -> bytes:
        store.audit(actor, "report.monthly", period.label, {"encoding": encoding})
        return render_csv(collect(store, period, cfg.top_senders), encoding)

    data = await asyncio.to_thread(build)
    charset = "utf-8" if encoding == "utf-8-sig" else "shift_jis"
    headers = {
        "Content-Disposition": content_disposition(f"mugai-{period.label}.csv"),
        **_DOWNLOAD_HEADERS,
    }
    return Response(data, media_type=f"text/csv; charset={charset}", headers=headers)


def _last_month(request: Request) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo(ports(request).settings.report.timezone))
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


# -- static -------------------------------------------------------------------------------
@router.get("/static/console.css")
async def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(status_code=204)


# -- errors -------------------------------------------------------------------------------
async def on_console_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    ctx = context(request, exc.session, status=exc.status, reason=exc.reason)
    return page("error.html", ctx, exc.status)


async def on_sign_in_required(request: Request, exc: Exception) -> Response:
    response = see_other("/login")
    if COOKIE in request.cookies:  # a stale id; a request without one clears nothing
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
