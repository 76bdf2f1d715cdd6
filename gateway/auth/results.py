"""Upstream ``Authentication-Results`` (RFC 8601): trusted only from a configured authserv-id,
and only where the trusted hop put it.

Anyone can write an ``Authentication-Results: mx.pref.lg.jp; dmarc=pass`` header into the
mail they send. The upstream MTA prepends its own header above the ``Received`` line it adds
itself, so only headers above the ``trusted_hops``-th ``Received`` line (counted from the
top, i.e. added after the trusted hop received the message) are considered; a header with a
trusted id further down was written before the trusted hop saw the mail, by the sender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_HEADERS = 200  # header fields looked at, top down
_METHOD = re.compile(r"(?:^|;)\s*(spf|dmarc|dkim|arc)\s*=\s*([a-z]+)([^;]*)", re.I)
_PROP = re.compile(r"\b(smtp\.mailfrom|header\.from|header\.d|header\.i)\s*=\s*([^\s;()]+)", re.I)
_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Upstream:
    authserv_id: str = ""
    spf: str = ""  # pass | fail | softfail | neutral | none | temperror | permerror | ""
    dmarc: str = ""
    dkim: str = ""
    props: dict[str, str] = field(default_factory=dict)


def _unfold(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def trusted_results(raw_headers: bytes, trusted_ids: list[str], trusted_hops: int) -> Upstream:
    """The topmost trusted header's spf/dmarc/dkim results, or an empty ``Upstream``."""
    if not trusted_ids:
        return Upstream()
    trusted = {t.strip().lower() for t in trusted_ids if t.strip()}
    msg = BytesHeaderParser(policy=compat32).parsebytes(raw_headers)
    received = 0
    for name, value in list(msg.items())[:MAX_HEADERS]:
        lname = name.strip().lower()
        if lname == "received":
            received += 1
            if received >= trusted_hops:
                break  # below this line the sender wrote the headers
            continue
        if lname != "authentication-results":
            continue
        text = _COMMENT.sub(" ", _unfold(str(value)))
        authserv, _, rest = text.partition(";")
        ident = authserv.strip().split(" ", 1)[0].lower()
        if ident not in trusted:
            continue
        found: dict[str, str] = {}
        props: dict[str, str] = {}
        for method, result, tail in _METHOD.findall(rest):
            found.setdefault(method.lower(), result.lower())
            for key, val in _PROP.findall(tail):
                props.setdefault(key.lower(), val.strip('"').lower()[:253])
        return Upstream(
            ident,
            found.get("spf", ""),
            found.get("dmarc", ""),
            found.get("dkim", ""),
            props,
        )
    return Upstream()
