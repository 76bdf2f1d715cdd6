"""DMARC (RFC 7489) evaluated by us: policy discovery, identifier alignment, result.

Hand-written on purpose, and small: what a receiver needs is one or two TXT look-ups and a
comparison of domains. The libraries that do it (authheaders, checkdmarc) resolve through the
system resolver without our bounds and bring a second public-suffix list; we use our bounded
TXT look-up (``dns_stub``) and the bundled, offline ``publicsuffixlist`` the disarmer uses.
Reports (rua/ruf) are never sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from publicsuffixlist import PublicSuffixList

from gateway.auth.dns_stub import DnsUnavailable, TxtLookup
from gateway.auth.spf_check import checkable

_PSL: Final = PublicSuffixList(only_icann=True)
_POLICIES = ("none", "quarantine", "reject")
_TAG = re.compile(r"^([a-z]{1,10})\s*=\s*(.{0,500})$", re.S)
MAX_TAGS = 32


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    policy: str = ""  # none | quarantine | reject: the applicable p= or sp=
    record_domain: str = ""  # where the record was found


def organizational(domain: str) -> str:
    """The registrable domain (RFC 7489 §3.2): one label below the longest public suffix of
    the bundled list (``town.example.lg.jp`` → ``example.lg.jp``); a bare public suffix is its
    own."""
    domain = domain.lower().rstrip(".")
    return _PSL.privatesuffix(domain) or domain


def aligned(a: str, b: str, strict: bool) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    if strict:
        return a == b
    return organizational(a) == organizational(b)


def parse(record: bytes) -> dict[str, str] | None:
    """Tags of one ``v=DMARC1`` record, or None when it is not one (RFC 7489 §6.3)."""
    text = record.decode("ascii", "replace")
    parts = [p.strip() for p in text.split(";")][:MAX_TAGS]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        m = _TAG.match(part)
        if m:
            tags.setdefault(m.group(1).lower(), m.group(2).strip().lower())
    return tags


class _Several(Exception):
    """More than one v=DMARC1 record at a name: policy discovery ends (RFC 7489 §6.6.3)."""


def _one(lookup: TxtLookup, name: str) -> dict[str, str] | None:
    records = [tags for tags in map(parse, lookup(name)) if tags is not None]
    if len(records) > 1:
        raise _Several(name)
    return records[0] if records else None


def _find(lookup: TxtLookup, domain: str) -> tuple[dict[str, str] | None, str]:
    """The record for ``domain``: at the name itself, else at its organizational domain
    (§6.6.3 steps 1–3). Two records at the first name end the search there: an attacker
    who can add a TXT record must not be able to pick which of two policies applies."""
    for candidate in dict.fromkeys((domain, organizational(domain))):
        try:
            tags = _one(lookup, f"_dmarc.{candidate}")
        except _Several:
            return None, candidate
        if tags is not None:
            return tags, candidate
    return None, ""


def evaluate(
    from_domain: str,
    lookup: TxtLookup,
    dkim_pass_domains: list[str],
    spf_result: str,
    spf_domain: str,
) -> DmarcResult:
    """``dkim_pass_domains``: d= of every DKIM signature that verified."""
    if not from_domain:
        return DmarcResult("none")
    if not checkable(from_domain):
        return DmarcResult("permerror")  # no DNS name (bidi, spaces, > 253 octets): no query
    try:
        tags, where = _find(lookup, from_domain)
    except DnsUnavailable:
        return DmarcResult("temperror")
    if tags is None:
        return DmarcResult("none")
    policy = tags.get("p", "")
    if where != from_domain and tags.get("sp") in _POLICIES:
        policy = tags["sp"]
    if policy not in _POLICIES:
        # §6.6.3: an invalid p= with a valid rua is p=none; without it the record is void.
        if "rua" not in tags:
            return DmarcResult("permerror", "", where)
        policy = "none"
    strict_dkim = tags.get("adkim") == "s"
    strict_spf = tags.get("aspf") == "s"
    if any(aligned(d, from_domain, strict_dkim) for d in dkim_pass_domains) or (
        spf_result == "pass" and aligned(spf_domain, from_domain, strict_spf)
    ):
        return DmarcResult("pass", policy, where)
    return DmarcResult("fail", policy, where)
