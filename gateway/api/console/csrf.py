"""CSRF defences for the console's POST forms, and a bounded form reader.

Three independent checks; any one failing gives 403:
- the synchronizer token in the form equals the one held in the server-side session;
- a browser's ``Origin`` names this very host (``null`` carries no information: browsers send
  it for our own forms because of ``Referrer-Policy: no-referrer``);
- a browser's ``Sec-Fetch-Site`` says the request came from this site (or was typed in).
The session cookie is also ``SameSite=Strict``, so other sites cannot send it at all.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 20
FIELD = "csrf"


class FormError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def check_origin(request: Request) -> None:
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin", "")
    if origin and origin != "null":
        # Host and port only: behind a TLS-terminating proxy the scheme we see differs.
        if urlsplit(origin).netloc.lower() != host:
            raise FormError(403, "foreign_origin")
    site = request.headers.get("sec-fetch-site", "")
    if site and site not in ("same-origin", "none"):
        raise FormError(403, "foreign_origin")


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded body of at most MAX_FORM_BYTES and MAX_FIELDS; first value wins."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormError(413, "form_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413, "form_too_large")
    if not body:
        return {}  # e.g. a bare POST: the missing CSRF token is what gets reported
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise FormError(415, "form_expected")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400, "bad_form") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def check_token(expected: str, form: dict[str, str]) -> None:
    if not same_token(expected, form.get(FIELD, "")):
        raise FormError(403, "csrf_failed")
