"""The few calls the pipeline makes (kept here so pipeline.py changes by a handful of lines)."""

from __future__ import annotations

import functools
import logging

import dns.resolver

from gateway.auth.dns_stub import TxtLookup, make_lookup, make_resolver
from gateway.auth.verdict import (
    AuthVerdict,
    Overall,
    authentication_results,
    evaluate,
    notice_lines,
    tag_subject,
)
from gateway.mime.notice import RULE
from gateway.settings import Settings
from gateway.spool import JobMeta

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _lookup(nameservers: tuple[str, ...], timeout: float) -> TxtLookup:
    return make_lookup(nameservers, timeout)


@functools.lru_cache(maxsize=8)
def _resolver(nameservers: tuple[str, ...], timeout: float) -> dns.resolver.Resolver:
    return make_resolver(nameservers, timeout)


def check_sender(raw: bytes, meta: JobMeta, settings: Settings) -> AuthVerdict:
    """Never raises: a bug here must not stop the mail, and says "unknown" instead."""
    cfg = settings.auth
    try:
        lookup = _lookup(tuple(cfg.nameservers), cfg.dns_timeout)
        verdict = evaluate(
            raw,
            meta.mail_from,
            cfg,
            lookup,
            max_header_bytes=settings.sanitize.max_header_bytes,
            peer=meta.peer,
            helo=meta.helo,
            resolver=_resolver(tuple(cfg.nameservers), cfg.dns_timeout) if cfg.evaluate else None,
        )
    except Exception:  # noqa: BLE001 - see docstring
        log.exception("job=%s sender authentication failed; verdict unknown", meta.id)
        return AuthVerdict(Overall.UNKNOWN)
    log.info("job=%s auth=%s reasons=%s", meta.id, verdict.overall.value, ",".join(verdict.reasons))
    return verdict


def notice_block(verdict: AuthVerdict) -> str:
    return "\n".join([RULE, *notice_lines(verdict), ""])


def tagged_headers(headers: dict[str, str], verdict: AuthVerdict, tag: str) -> dict[str, str]:
    subject = headers.get("subject", "")
    new = tag_subject(subject, verdict, tag)
    return headers if new == subject else {**headers, "subject": new}


def stamp(data: bytes, hostname: str, verdict: AuthVerdict) -> bytes:
    """Our Authentication-Results on top (RFC 8601 §5: the newest first). Upstream ones were
    not copied by the rebuild; this is the only one the LGWAN side sees."""
    value = authentication_results(hostname, verdict)
    return f"Authentication-Results: {value}\r\n".encode("ascii", "replace") + data
