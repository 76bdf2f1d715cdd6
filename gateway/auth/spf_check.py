"""SPF of the connecting address (``[auth] evaluate = true``), RFC 7208, through pyspf.

pyspf (PSF licence, the reference implementation also packaged by Debian as python3-spf) does
the record semantics, macros and the RFC's limits (10 DNS-querying mechanisms, 2 void
look-ups, strict mode: excess is ``permerror``). It resolves through a module-level function
on the system resolver with 20-30 s timeouts; we replace that function once with a dispatcher
that sends each evaluation's queries to its own bounded resolver (a ``ContextVar``, so
concurrent evaluations in worker threads never share one), with:

- one deadline for the whole evaluation (pyspf's ``querytime``, re-checked by us per query);
- a hard cap on queries of any kind (MX targets, PTR, CNAME chains and ``exp=`` included);
- answer size caps (records per answer, bytes of one TXT record).

A timeout or DNS failure is ``temperror`` (shown as unknown); a record that breaks a limit is
``permerror``. Nothing here raises.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
import spf

log = logging.getLogger(__name__)

MAX_QUERIES = 30  # every DNS query of one evaluation, beyond the RFC's 10 mechanism look-ups
MAX_RECORDS = 32  # resource records used from one answer
MAX_TXT = 4096  # bytes of one TXT record (an SPF record fits 512 bytes; 4 KiB is generous)
RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})

_Lookup = Callable[[str, str], list[tuple[tuple[str, str], Any]]]
_current: contextvars.ContextVar[_Lookup | None] = contextvars.ContextVar(
    "mugai_spf_lookup", default=None
)


def _dispatch(name: str, qtype: str, strict: object = True, timeout: float = 5.0) -> Any:
    lookup = _current.get()
    if lookup is None:  # only our evaluations may resolve through pyspf in this process
        raise spf.TempError("DNS: no bounded resolver for this evaluation")
    return lookup(name, qtype)


spf.DNSLookup = _dispatch  # see the module docstring


@dataclass(frozen=True)
class SpfResult:
    result: str  # one of RESULTS
    domain: str  # the identity checked: MAIL FROM's domain, or HELO for a null sender
    identity: str  # "mailfrom" | "helo"


def _bounded(resolver: dns.resolver.Resolver, deadline: float) -> _Lookup:
    count = [0]

    def lookup(name: str, qtype: str) -> list[tuple[tuple[str, str], Any]]:
        count[0] += 1
        if count[0] > MAX_QUERIES:
            raise spf.PermError(f"more than {MAX_QUERIES} DNS queries")
        left = deadline - time.monotonic()
        if left <= 0:
            raise spf.TempError("DNS: time budget spent")
        try:
            answer = resolver.resolve(
                name, qtype, lifetime=left, raise_on_no_answer=False, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise spf.TempError(f"DNS {type(exc).__name__}") from exc
        if answer.rrset is None:
            return []
        if len(answer.rrset) > MAX_RECORDS:
            raise spf.PermError("DNS answer with too many records")
        out: list[tuple[tuple[str, str], Any]] = []
        for rdata in answer.rrset:
            key = (name, qtype)
            if qtype in ("A", "AAAA"):
                out.append((key, rdata.address))
            elif qtype == "MX":
                out.append((key, (rdata.preference, rdata.exchange.to_text(True))))
            elif qtype == "PTR":
                out.append((key, rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                if sum(len(s) for s in rdata.strings) > MAX_TXT:
                    raise spf.PermError("TXT record too large")
                out.append((key, rdata.strings))
        return out

    return lookup


_HOSTNAME = re.compile(r"(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}")


def checkable(domain: str) -> bool:
    try:
        ascii_name = domain.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return False
    return bool(_HOSTNAME.fullmatch(ascii_name.rstrip(".")))


def check(
    peer: str,
    mail_from: str,
    helo: str,
    resolver: dns.resolver.Resolver,
    budget: float,
) -> SpfResult:
    """SPF for MAIL FROM (or ``postmaster@HELO`` for a bounce), from ``peer``, within
    ``budget`` seconds."""
    sender = mail_from.strip().strip("<>")
    identity = "mailfrom" if "@" in sender else "helo"
    full = (sender.rpartition("@")[2] if identity == "mailfrom" else helo).lower()
    domain = full[:253]  # as recorded; the check below sees all of it
    try:
        ipaddress.ip_address(peer)
    except ValueError:
        return SpfResult("none", domain, identity)  # unix socket / unknown peer: no IP to test
    if not checkable(full):
        # RFC 7208 §4.3: a malformed domain (an address literal HELO, over 253 octets, bidi
        # or other characters no DNS name has) is "none", with no query.
        return SpfResult("none", domain, identity)
    token = _current.set(_bounded(resolver, time.monotonic() + budget))
    try:
        q = spf.query(
            i=peer,
            s=sender if identity == "mailfrom" else "",
            h=helo[:253] or "unknown",
            strict=True,
            timeout=budget,
            querytime=budget,
        )
        result, _code, _explanation = q.check()
    except Exception:  # noqa: BLE001 - a library bug on a hostile record is a permerror
        log.warning("job=- spf evaluation raised; counted as permerror")
        result = "permerror"
    finally:
        _current.reset(token)
    result = str(result).lower()
    return SpfResult(result if result in RESULTS else "permerror", domain, identity)
