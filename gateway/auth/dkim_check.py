"""DKIM on the original message, as received (before any rebuilding changes a byte)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import dkim

from gateway.auth.dns_stub import DnsUnavailable, TxtLookup

log = logging.getLogger(__name__)

MAX_SIGNATURES = 5  # each costs a DNS look-up and a hash of the body: bounded
_SIG_NAME = re.compile(rb"^dkim-signature:", re.I | re.M)


class Result(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True)
class Signature:
    result: Result
    domain: str
    selector: str


def _header_end(raw: bytes) -> int:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return i
    return len(raw)


def verify(raw: bytes, lookup: TxtLookup) -> list[Signature]:
    """Every DKIM-Signature (up to MAX_SIGNATURES), each verified independently."""
    head = raw[: _header_end(raw)]
    count = len(_SIG_NAME.findall(head))
    if count == 0:
        return []
    out: list[Signature] = []
    for index in range(min(count, MAX_SIGNATURES)):
        unavailable: list[bool] = []
        dnsfunc = _dnsfunc(lookup, unavailable)

        verifier = dkim.DKIM(raw, logger=_quiet, timeout=5)
        try:
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
            result = Result.PASS if ok else Result.FAIL
        except dkim.KeyFormatError:
            result = Result.PERMERROR
        except dkim.DKIMException:
            result = Result.FAIL
        except Exception:  # noqa: BLE001 - a library bug on hostile input is a failed check
            log.warning("job=- dkim verification raised; counted as permerror")
            result = Result.PERMERROR
        if unavailable and result is not Result.PASS:
            result = Result.TEMPERROR  # DNS did not answer in time: unknown, not a failure
        domain, selector = _tags(verifier)
        out.append(Signature(result, domain, selector))
    return out


def _dnsfunc(lookup: TxtLookup, unavailable: list[bool]) -> Callable[..., bytes | None]:
    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes | None:
        try:
            # Several key records on one selector: the first, as dkimpy itself would take.
            records = lookup(name.decode() if isinstance(name, bytes) else name)
            return records[0] if records else None
        except DnsUnavailable:
            unavailable.append(True)  # told apart from "no key": unknown, not a failure
            return None

    return dnsfunc


def _tags(verifier: dkim.DKIM) -> tuple[str, str]:
    domain = getattr(verifier, "domain", None)
    selector = getattr(verifier, "selector", None)
    if isinstance(domain, bytes) and isinstance(selector, bytes):
        return _printable(domain), _printable(selector)
    return "", ""


def _printable(value: bytes) -> str:
    text = value.decode("ascii", "replace").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in ".-_")[:253]


class _Quiet:
    def debug(self, *a: object, **k: object) -> None: ...
    def info(self, *a: object, **k: object) -> None: ...
    def warning(self, *a: object, **k: object) -> None: ...
    def error(self, *a: object, **k: object) -> None: ...


_quiet = _Quiet()
