"""The sender-authentication verdict of one message: computed on the original, shown in the
notice (Japanese, then English), stored with the record, stamped into our own
``Authentication-Results`` header and, when suspicious, optionally into the subject."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from email.utils import getaddresses
from enum import StrEnum
from typing import Any

import dns.resolver

from gateway.auth import dkim_check, dmarc, lookalike, spf_check
from gateway.auth.dns_stub import TxtLookup
from gateway.auth.results import Upstream, trusted_results
from gateway.settings import AuthSettings


class Overall(StrEnum):
    PASS = "pass"  # an aligned DKIM signature or a trusted DMARC pass, nothing suspicious
    SUSPICIOUS = "suspicious"  # なりすましの疑い
    NONE = "none"  # nothing to go on (no signature, no trusted result): neither good nor bad
    UNKNOWN = "unknown"  # DNS did not answer in time


@dataclass(frozen=True)
class AuthVerdict:
    overall: Overall
    dkim: tuple[dkim_check.Signature, ...] = ()
    spf: str = ""  # from the trusted upstream header, or our own (``evaluated``)
    dmarc: str = ""
    upstream: str = ""  # the authserv-id it came from ("" when our own or none)
    evaluated: bool = False  # spf/dmarc evaluated by us ([auth] evaluate)
    spf_domain: str = ""  # the identity SPF checked (ours only)
    spf_identity: str = ""  # mailfrom | helo (ours only)
    dmarc_policy: str = ""  # none | quarantine | reject (ours only)
    from_domain: str = ""
    envelope_mismatch: bool = False
    lookalike: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["dkim"] = [
            {"result": s.result.value, "domain": s.domain, "selector": s.selector}
            for s in self.dkim
        ]
        data["overall"] = self.overall.value
        return data


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _header_block(raw: bytes, limit: int) -> bytes:
    match = _HEADER_END.search(raw, 0, limit)
    return raw[: match.start() + 2] if match else raw[:limit]


def evaluate(
    raw: bytes,
    envelope_from: str,
    settings: AuthSettings,
    lookup: TxtLookup,
    *,
    max_header_bytes: int = 262_144,
    peer: str = "",
    helo: str = "",
    resolver: dns.resolver.Resolver | None = None,
) -> AuthVerdict:
    head = _header_block(raw, max_header_bytes)
    from_values = _header_values(head, "from")
    pairs = getaddresses(from_values) if from_values is not None else []
    name, address = pairs[0] if len(pairs) == 1 else ("", "")
    from_domain = lookalike.domain_of(address) if "@" in address else ""
    reasons: list[str] = []
    if len(pairs) != 1 or not from_domain:
        reasons.append("from_unclear")  # zero or several From addresses: who is it from?
    signatures = tuple(dkim_check.verify(raw, lookup)) if settings.verify_dkim else ()
    upstream: Upstream = trusted_results(head, settings.trusted_authserv_ids, settings.trusted_hops)
    aligned_pass = any(
        s.result is dkim_check.Result.PASS and lookalike.related(s.domain, from_domain)
        for s in signatures
    )
    spf_result, dmarc_result = upstream.spf, upstream.dmarc
    spf_domain = policy = identity = ""
    evaluated = False
    # A trusted upstream header wins whole: that hop saw the real connecting address, ours
    # would be the relay's. Our own evaluation only without one.
    if settings.evaluate and resolver is not None and not upstream.authserv_id:
        spf = spf_check.check(peer, envelope_from, helo, resolver, settings.evaluate_timeout)
        passed = [s.domain for s in signatures if s.result is dkim_check.Result.PASS]
        dm = dmarc.evaluate(from_domain, lookup, passed, spf.result, spf.domain)
        spf_result, dmarc_result, spf_domain, policy = spf.result, dm.result, spf.domain, dm.policy
        identity, evaluated = spf.identity, True
    # Our own SPF pass for the From's organization counts like an aligned DKIM pass (most
    # lg.jp domains publish SPF but no DMARC record).
    spf_aligned = (
        evaluated and spf_result == "pass" and dmarc.aligned(spf_domain, from_domain, False)
    )
    mismatch = lookalike.envelope_mismatch(address, envelope_from)
    shown = tuple(lookalike.lookalike_domains(name, address))
    temp = any(s.result is dkim_check.Result.TEMPERROR for s in signatures) or (
        "temperror" in (spf_result, dmarc_result)
    )
    if dmarc_result == "fail":
        reasons.append("dmarc_fail")
    if shown:
        reasons.append("display_name_lookalike")
    if mismatch and not aligned_pass and dmarc_result != "pass":
        reasons.append("envelope_mismatch")
    if any(s.result is dkim_check.Result.FAIL and lookalike.related(s.domain, from_domain)
           for s in signatures) and not aligned_pass:  # fmt: skip
        reasons.append("dkim_fail")
    if spf_result == "fail" and not aligned_pass and dmarc_result != "pass":
        reasons.append("spf_fail")
    if reasons:
        overall = Overall.SUSPICIOUS
    elif aligned_pass or dmarc_result == "pass" or spf_aligned:
        overall = Overall.PASS
    elif temp:
        overall = Overall.UNKNOWN
    else:
        overall = Overall.NONE
    return AuthVerdict(
        overall=overall,
        dkim=signatures,
        spf=spf_result,
        dmarc=dmarc_result,
        upstream=upstream.authserv_id,
        evaluated=evaluated,
        spf_domain=spf_domain,
        spf_identity=identity,
        dmarc_policy=policy,
        from_domain=from_domain,
        envelope_mismatch=mismatch,
        lookalike=shown,
        reasons=tuple(reasons),
    )


# The stdlib's address parser is quadratic in specials (240 KB of "<>@,:" took 14 s): longer
# values are never handed to it (None: the sender is unclear).
_MAX_PARSED_VALUE = 8_192


def _header_values(head: bytes, name: str) -> list[str] | None:
    from email.parser import BytesHeaderParser
    from email.policy import default

    msg = BytesHeaderParser(policy=default).parsebytes(head)
    raw = [(n, v) for n, v in msg.raw_items() if n.lower() == name][:5]
    if any(len(v) > _MAX_PARSED_VALUE for _, v in raw):
        return None
    return [str(default.header_fetch_parse(n, v)) for n, v in raw]


_JA = {
    "dmarc_fail": "送信元ドメインの DMARC 認証に失敗",
    "display_name_lookalike": "表示名に別ドメインのアドレスが書かれている",
    "envelope_mismatch": "差出人（From）と送信元（エンベロープ）のドメインが異なる",
    "dkim_fail": "差出人ドメインの電子署名（DKIM）が不正",
    "spf_fail": "送信元サーバが SPF で許可されていない",
    "from_unclear": "差出人アドレスが 1 つに定まらない",
}
_EN = {
    "dmarc_fail": "the sender domain's DMARC check failed",
    "display_name_lookalike": "the display name shows an address of another domain",
    "envelope_mismatch": "header From and envelope sender domains differ",
    "dkim_fail": "the sender domain's DKIM signature is invalid",
    "spf_fail": "the sending server is not allowed by SPF",
    "from_unclear": "no single From address",
}
_OVERALL_JA = {
    Overall.PASS: "送信元は認証されています",
    Overall.SUSPICIOUS: "なりすましの疑いがあります",
    Overall.NONE: "送信元を認証する情報がありません",
    Overall.UNKNOWN: "送信元を確認できませんでした（DNS 応答なし）",
}
_OVERALL_EN = {
    Overall.PASS: "sender authenticated",
    Overall.SUSPICIOUS: "possible spoofing",
    Overall.NONE: "no sender authentication available",
    Overall.UNKNOWN: "sender could not be checked (no DNS answer)",
}


def notice_lines(v: AuthVerdict) -> list[str]:
    """Japanese first, then English, as the rest of the notice."""
    ja = [f"送信元の認証: {_OVERALL_JA[v.overall]}"]
    ja += [f"  ・{_JA[r]}" for r in v.reasons]
    if v.lookalike:
        ja.append("  ・表示名のドメイン: " + ", ".join(_defang(d) for d in v.lookalike))
    if v.spf or v.dmarc:
        who_ja = "当ゲートウェイで評価" if v.evaluated else f"{_defang(v.upstream)} の判定"
        ja.append(f"  ・SPF: {_word(v.spf)} / DMARC: {_word(v.dmarc)}"
                  f"{_policy(v)}（{who_ja}）")  # fmt: skip
    en = [f"Sender authentication: {_OVERALL_EN[v.overall]}"]
    en += [f"  - {_EN[r]}" for r in v.reasons]
    if v.spf or v.dmarc:
        who_en = "evaluated by this gateway" if v.evaluated else f"as {_defang(v.upstream)} saw it"
        en.append(f"  - SPF: {_word(v.spf)} / DMARC: {_word(v.dmarc)}{_policy(v)} ({who_en})")
    return ja + en


_WORDS = frozenset(
    {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}
)


def _word(value: str) -> str:
    """Upstream results are any letters; the notice shows only the RFC 8601 words."""
    return value if value in _WORDS else ("none" if not value else "unknown")


def _policy(v: AuthVerdict) -> str:
    return f" (p={v.dmarc_policy})" if v.dmarc_policy else ""


def _defang(domain: str) -> str:
    return domain.replace(".", "[.]")


def tag_subject(subject: str, v: AuthVerdict, tag: str) -> str:
    if not tag or v.overall is not Overall.SUSPICIOUS or subject.startswith(tag):
        return subject
    return f"{tag}{subject}"


_TOKEN = re.compile(r"[^A-Za-z0-9._@+-]")


def authentication_results(hostname: str, v: AuthVerdict) -> str:
    """The value of our own header (RFC 8601); every token reduced to a safe character set."""

    def tok(value: str) -> str:
        return _TOKEN.sub("", value)[:253]

    parts = [tok(hostname) or "mugai"]
    if v.dkim:
        for s in v.dkim:
            parts.append(f"dkim={s.result.value} header.d={tok(s.domain) or 'unknown'}"
                         f" header.s={tok(s.selector) or 'unknown'}")  # fmt: skip
    else:
        parts.append("dkim=none")
    if v.evaluated:  # our own: RFC 8601 properties, no "(from ...)" comment
        ident = "smtp.helo" if v.spf_identity == "helo" else "smtp.mailfrom"
        parts.append(f"spf={tok(v.spf) or 'none'} {ident}={tok(v.spf_domain) or 'unknown'}")
        policy = f" (p={tok(v.dmarc_policy)})" if v.dmarc_policy else ""
        parts.append(f"dmarc={tok(v.dmarc) or 'none'}{policy}"
                     f" header.from={tok(v.from_domain) or 'unknown'}")  # fmt: skip
    if v.spf and not v.evaluated:
        parts.append(f"spf={tok(v.spf)} (from {tok(v.upstream)})")
    if v.dmarc and not v.evaluated:
        parts.append(f"dmarc={tok(v.dmarc)} (from {tok(v.upstream)})"
                     f" header.from={tok(v.from_domain) or 'unknown'}")  # fmt: skip
    parts.append(f"x-mugai-verdict={v.overall.value}")
    return "; ".join(parts)
