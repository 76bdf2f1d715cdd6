"""``[auth] evaluate = true``: SPF (pyspf) and DMARC evaluated by us, against a DNS stub on
loopback. The attacks: include loops, void look-ups, silent and huge DNS answers, garbage
DMARC records, forged Authentication-Results, a trusted upstream header's precedence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.auth import dmarc, dns_stub, spf_check
from gateway.auth.dns_stub import make_lookup
from gateway.auth.verdict import (
    AuthVerdict,
    Overall,
    authentication_results,
    evaluate,
    notice_lines,
)
from gateway.settings import AuthSettings, load_settings
from tests.auth.dns_server import DnsStub
from tests.auth.test_auth import TRUSTED, mail, sign
from tests.auth.test_auth import key as key  # noqa: F401 - fixture

PEER = "192.0.2.10"


@pytest.fixture
def stub() -> Iterator[DnsStub]:
    server = DnsStub()
    server.txt["example.jp"] = b"v=spf1 ip4:192.0.2.0/24 -all"
    server.txt["_dmarc.example.jp"] = b"v=DMARC1; p=reject; rua=mailto:d@example.jp"
    server.txt["evil.example"] = b"v=spf1 ip4:198.51.100.0/24 -all"
    yield server
    server.close()


def cfg(stub: DnsStub, **kw: object) -> AuthSettings:
    base: dict[str, object] = {
        "nameservers": [stub.address],
        "dns_timeout": "1s",
        "evaluate": True,
        "evaluate_timeout": "2s",
        "trusted_authserv_ids": [TRUSTED],
    }
    return load_settings(auth={**base, **kw}).auth


def run(
    stub: DnsStub,
    raw: bytes,
    mail_from: str,
    peer: str = PEER,
    helo: str = "mx.example.jp",
    **kw: object,
) -> AuthVerdict:
    settings = cfg(stub, **kw)
    return evaluate(
        raw,
        mail_from,
        settings,
        make_lookup([stub.address], settings.dns_timeout),
        peer=peer,
        helo=helo,
        resolver=dns_stub.make_resolver([stub.address], settings.dns_timeout)
        if settings.evaluate
        else None,
    )


def test_spf_pass_aligned_gives_dmarc_pass(stub: DnsStub) -> None:
    v = run(stub, mail(), "yamada@example.jp")
    assert (v.spf, v.dmarc, v.dmarc_policy, v.evaluated) == ("pass", "pass", "reject", True)
    assert v.overall is Overall.PASS and v.reasons == ()
    header = authentication_results("mugai.example.lg.jp", v)
    assert "spf=pass smtp.mailfrom=example.jp" in header
    assert "dmarc=pass (p=reject) header.from=example.jp" in header
    assert "(from" not in header
    ja_en = "\n".join(notice_lines(v))
    assert "SPF: pass / DMARC: pass (p=reject)（当ゲートウェイで評価）" in ja_en
    assert "(evaluated by this gateway)" in ja_en
    assert ja_en.index("当ゲートウェイ") < ja_en.index("evaluated by")


def test_forged_from_with_the_attackers_own_spf_fails_dmarc(stub: DnsStub) -> None:
    # The attacker's envelope passes SPF for its own domain; the From is someone else's.
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert v.spf == "pass" and v.spf_domain == "evil.example"
    assert v.dmarc == "fail" and v.dmarc_policy == "reject"
    assert v.overall is Overall.SUSPICIOUS
    assert "dmarc_fail" in v.reasons and "envelope_mismatch" in v.reasons


def test_spf_fail_from_an_unlisted_address(stub: DnsStub) -> None:
    v = run(stub, mail(), "yamada@example.jp", peer="203.0.113.5")
    assert v.spf == "fail" and v.dmarc == "fail"
    assert {"spf_fail", "dmarc_fail"} <= set(v.reasons)


def test_dkim_pass_aligns_dmarc_even_when_spf_fails(
    stub: DnsStub,
    key: tuple[bytes, bytes],  # noqa: F811
) -> None:
    stub.txt["sel._domainkey.example.jp"] = key[1]
    v = run(stub, sign(mail(), key[0]), "yamada@example.jp", peer="203.0.113.5")
    assert v.spf == "fail" and v.dmarc == "pass"
    assert v.overall is Overall.PASS and v.reasons == ()


def test_include_loop_is_permerror_and_bounded(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 include:a.example.jp -all"
    stub.txt["a.example.jp"] = b"v=spf1 include:b.example.jp -all"
    stub.txt["b.example.jp"] = b"v=spf1 include:a.example.jp -all"
    v = run(stub, mail(), "yamada@example.jp")
    assert v.spf == "permerror"
    spf_queries = [q for q in stub.queries if not q.startswith("_dmarc")]
    assert len(spf_queries) <= spf_check.MAX_QUERIES
    assert v.dmarc == "fail"  # no aligned pass: the record's own policy still applies


def test_eleven_includes_break_the_ten_lookup_limit(stub: DnsStub) -> None:
    names = [f"i{n}.example.jp" for n in range(11)]
    stub.txt["example.jp"] = (
        "v=spf1 " + " ".join(f"include:{n}" for n in names) + " -all"
    ).encode()
    for n in names:
        stub.txt[n] = b"v=spf1 ip4:203.0.113.1 -all"
    v = run(stub, mail(), "yamada@example.jp")
    assert v.spf == "permerror"
    assert stub.queries.count("i10.example.jp") == 0  # stopped at the limit, not after


def test_void_lookups_are_limited(stub: DnsStub) -> None:
    names = " ".join(f"a:n{n}.example.jp" for n in range(1, 6))
    stub.txt["example.jp"] = f"v=spf1 {names} -all".encode()
    v = run(stub, mail(), "yamada@example.jp")
    assert v.spf == "permerror"  # the third empty answer ends it (RFC 7208 §4.6.4)
    assert "n3.example.jp" in stub.queries and "n4.example.jp" not in stub.queries


def test_silent_dns_is_temperror_and_the_budget_stops_further_queries(stub: DnsStub) -> None:
    names = [f"s{n}.example.jp" for n in range(9)]
    stub.txt["example.jp"] = (
        "v=spf1 " + " ".join(f"include:{n}" for n in names) + " -all"
    ).encode()
    stub.silent.update(names)
    v = run(stub, mail(), "yamada@example.jp", dns_timeout="0.4s", evaluate_timeout="0.5s")
    assert v.spf == "temperror"
    # The evaluation's deadline, not nine timeouts: at most two includes were ever asked.
    assert sum(stub.queries.count(n) for n in names) <= 2
    assert v.overall is not Overall.PASS


def test_servfail_is_temperror_and_shown_unknown(stub: DnsStub) -> None:
    stub.servfail.add("example.jp")
    stub.servfail.add("_dmarc.example.jp")
    v = run(stub, mail(), "yamada@example.jp")
    assert v.spf == "temperror" and v.dmarc == "temperror"
    assert v.overall is Overall.UNKNOWN


def test_huge_txt_answer_is_refused(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 " + b"ip4:203.0.113.1 " * 600 + b"-all"  # ~9.6 KB
    v = run(stub, mail(), "yamada@example.jp")
    assert v.spf == "permerror"


def test_many_records_in_one_answer_are_refused(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 mx -all"
    stub.rr[("example.jp", "MX")] = [f"10 mx{n}.example.jp." for n in range(40)]
    v = run(stub, mail(), "yamada@example.jp")
    assert v.spf == "permerror"
    assert not any(q.startswith("mx3") for q in stub.queries)


def test_mx_and_a_mechanisms_resolve_through_the_stub(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 mx a:out.example.jp -all"
    stub.rr[("example.jp", "MX")] = ["10 mx1.example.jp."]
    stub.rr[("mx1.example.jp", "A")] = ["203.0.113.9"]
    stub.rr[("out.example.jp", "A")] = ["203.0.113.20"]
    assert run(stub, mail(), "yamada@example.jp", peer="203.0.113.9").spf == "pass"
    assert run(stub, mail(), "yamada@example.jp", peer="203.0.113.20").spf == "pass"
    assert run(stub, mail(), "yamada@example.jp", peer="203.0.113.21").spf == "fail"


def test_ipv6_peer(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 ip6:2001:db8::/32 -all"
    assert run(stub, mail(), "yamada@example.jp", peer="2001:db8::25").spf == "pass"


def test_bounce_checks_helo(stub: DnsStub) -> None:
    stub.txt["mx.example.jp"] = b"v=spf1 ip4:192.0.2.10 -all"
    v = run(stub, mail(), "", helo="mx.example.jp")
    assert (v.spf, v.spf_identity, v.spf_domain) == ("pass", "helo", "mx.example.jp")
    assert "spf=pass smtp.helo=mx.example.jp" in authentication_results("h", v)


def test_no_ip_peer_is_none_without_dns(stub: DnsStub) -> None:
    v = run(stub, mail(), "yamada@example.jp", peer="unix:/run/x")
    assert v.spf == "none"
    assert "example.jp" not in stub.queries


@pytest.mark.parametrize(
    "record",
    [
        b"v=DMARC1; p=bogus",
        b"v=DMARC1; p=",
        b"v=DMARC1",
        b"v=DMARC1; p=\xff\xfe\x00; sp=rejec",
    ],
)
def test_dmarc_garbage_policy_is_permerror(stub: DnsStub, record: bytes) -> None:
    stub.txt["_dmarc.example.jp"] = record
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert v.dmarc == "permerror"
    assert "dmarc_fail" not in v.reasons  # a broken record is not the sender's failure


@pytest.mark.parametrize(
    "record", [b"not dmarc at all", b"v=DMARC2; p=reject", b"v=spf1 -all", b";;;;=;=;"]
)
def test_non_dmarc_record_is_none(stub: DnsStub, record: bytes) -> None:
    stub.txt["_dmarc.example.jp"] = record
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert v.dmarc == "none"


def test_two_dmarc_records_mean_no_policy(stub: DnsStub) -> None:
    # RFC 7489 §6.6.3: several v=DMARC1 records end discovery; whoever can add one TXT
    # record must not pick the weaker of two policies (nor the stricter one for a victim).
    raw = mail(from_="総務課 <soumu@town.example.lg.jp>")
    stub.txt_many["_dmarc.town.example.lg.jp"] = [
        b"v=DMARC1; p=none",
        b"v=DMARC1; p=reject",
    ]
    stub.txt["_dmarc.example.lg.jp"] = b"v=DMARC1; p=reject"
    v = run(stub, raw, "x@evil.example", peer="198.51.100.7")
    assert v.dmarc == "none"
    assert "_dmarc.example.lg.jp" not in stub.queries  # discovery ended at the first name


def test_unrelated_txt_first_does_not_hide_the_dmarc_record(stub: DnsStub) -> None:
    stub.txt_many["_dmarc.example.jp"] = [
        b"google-site-verification=abc",
        b"v=spf1 -all",
        b"v=DMARC1; p=reject",
    ]
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert (v.dmarc, v.dmarc_policy) == ("fail", "reject")


def test_too_many_or_too_large_txt_records_are_temperror(stub: DnsStub) -> None:
    stub.txt_many["_dmarc.example.jp"] = [b"v=DMARC1; p=reject"] + [
        b"filler-%d" % i for i in range(20)
    ]
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert v.dmarc == "temperror"
    # Sixteen records are read (an rrset holds distinct values only) ...
    stub.txt_many["_dmarc.example.jp"] = [b"v=DMARC1; p=reject"] + [
        b"%d" % i + b"y" * 200 for i in range(15)
    ]
    assert len(make_lookup([stub.address], 1.0)("_dmarc.example.jp")) == 16
    # ... but not 16 KiB of them.
    stub.txt_many["_dmarc.example.jp"] = [b"v=DMARC1; p=reject"] + [
        b"%d" % i + b"w" * 1200 for i in range(15)
    ]
    with pytest.raises(dns_stub.DnsUnavailable):
        make_lookup([stub.address], 1.0)("_dmarc.example.jp")


def test_invalid_policy_with_rua_is_p_none(stub: DnsStub) -> None:
    stub.txt["_dmarc.example.jp"] = b"v=DMARC1; p=maybe; rua=mailto:r@example.jp"
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert (v.dmarc, v.dmarc_policy) == ("fail", "none")


def test_dmarc_tags_are_bounded(stub: DnsStub) -> None:
    stub.txt["_dmarc.example.jp"] = b"v=DMARC1; " + b"x=1; " * 2000 + b"p=reject"
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert v.dmarc == "permerror"  # p= lies beyond the tags we read


def test_organizational_domain_and_subdomain_policy(stub: DnsStub) -> None:
    stub.txt["_dmarc.example.lg.jp"] = b"v=DMARC1; p=reject; sp=quarantine"
    raw = mail(from_="総務課 <soumu@town.example.lg.jp>")
    v = run(stub, raw, "x@evil.example", peer="198.51.100.7")
    assert (v.dmarc, v.dmarc_policy) == ("fail", "quarantine")
    assert "_dmarc.town.example.lg.jp" in stub.queries and "_dmarc.example.lg.jp" in stub.queries
    assert dmarc.organizational("town.example.lg.jp") == "example.lg.jp"


def test_relaxed_and_strict_spf_alignment(stub: DnsStub) -> None:
    stub.txt["mail.example.jp"] = b"v=spf1 ip4:192.0.2.0/24 -all"
    v = run(stub, mail(), "bounce@mail.example.jp")
    assert (v.spf, v.dmarc) == ("pass", "pass")
    stub.txt["_dmarc.example.jp"] = b"v=DMARC1; p=reject; aspf=s"
    v = run(stub, mail(), "bounce@mail.example.jp")
    assert (v.spf, v.dmarc) == ("pass", "fail")


def test_lookalike_public_suffix_does_not_align(stub: DnsStub) -> None:
    # example.jp.evil.example is not example.jp's organization.
    stub.txt["example.jp.evil.example"] = b"v=spf1 ip4:198.51.100.0/24 -all"
    v = run(stub, mail(), "x@example.jp.evil.example", peer="198.51.100.7")
    assert v.spf == "pass" and v.dmarc == "fail"


def test_forged_untrusted_authentication_results_do_not_count(stub: DnsStub) -> None:
    forged = "Authentication-Results: mx.attacker.example; spf=pass; dmarc=pass\r\n"
    v = run(stub, forged.encode() + mail(), "x@evil.example", peer="198.51.100.7")
    assert v.evaluated and v.dmarc == "fail" and v.upstream == ""


def test_forged_trusted_id_below_the_hop_does_not_count(stub: DnsStub) -> None:
    # The sender wrote a header with the trusted id before the trusted hop received the mail.
    forged = (
        "Received: from x by mx.pref.example.lg.jp; Tue, 1 Dec 2026 10:00:00 +0900\r\n"
        f"Authentication-Results: {TRUSTED}; spf=pass; dmarc=pass\r\n"
    )
    v = run(stub, forged.encode() + mail(), "x@evil.example", peer="198.51.100.7")
    assert v.evaluated and v.dmarc == "fail"


def test_trusted_upstream_wins_and_no_spf_lookup_is_made(stub: DnsStub) -> None:
    upstream = (
        f"Authentication-Results: {TRUSTED}; spf=fail smtp.mailfrom=example.jp; dmarc=fail\r\n"
    )
    v = run(stub, upstream.encode() + mail(), "yamada@example.jp")
    assert not v.evaluated and v.upstream == TRUSTED
    assert (v.spf, v.dmarc) == ("fail", "fail")
    assert "example.jp" not in stub.queries and "_dmarc.example.jp" not in stub.queries
    assert f"dmarc=fail (from {TRUSTED})" in authentication_results("h", v)


def test_off_by_default_makes_no_spf_or_dmarc_lookup(stub: DnsStub) -> None:
    assert AuthSettings().evaluate is False
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7", evaluate=False)
    assert not v.evaluated and v.spf == "" and v.dmarc == ""
    assert stub.queries == []


def test_upstream_result_words_are_closed_in_the_notice(stub: DnsStub) -> None:
    upstream = f"Authentication-Results: {TRUSTED}; spf=gotcha\u202e; dmarc=pass\r\n"
    v = run(stub, upstream.encode() + mail(), "yamada@example.jp")
    lines = "\n".join(notice_lines(v))
    assert "gotcha" not in lines and "SPF: unknown" in lines


def test_resolver_outside_an_evaluation_refuses() -> None:
    import spf

    with pytest.raises(spf.TempError):
        spf.DNSLookup("example.jp", "TXT")


@pytest.mark.parametrize("value", ["0s", "61s"])
def test_timeouts_are_validated(value: str) -> None:
    with pytest.raises(ValueError):
        load_settings(auth={"evaluate_timeout": value})


def test_pipeline_delivers_our_verdict_with_the_subject_tag(stub: DnsStub) -> None:
    import time

    from gateway.pipeline import sanitize_message
    from gateway.spool import JobMeta, new_id
    from tests.checks import check_delivered

    settings = load_settings(
        smtp={"hostname": "mugai.town.example.lg.jp"},
        auth={"nameservers": [stub.address], "dns_timeout": "1s", "evaluate": True,
              "subject_tag": "【なりすましの疑い】"},
    )  # fmt: skip
    forged = "Authentication-Results: mugai.town.example.lg.jp; spf=pass; dmarc=pass\r\n"
    meta = JobMeta(id=new_id(), kind="mail", mail_from="x@evil.example",
                   rcpt_tos=("soumu@town.example.lg.jp",), received_at=time.time(),
                   helo="mx.evil.example", peer="198.51.100.7")  # fmt: skip
    out = sanitize_message(forged.encode() + mail(), meta, settings, None)
    msg = check_delivered(out.data)
    [ar] = msg.get_all("Authentication-Results")  # the forged one (our own id!) is gone
    assert "spf=pass smtp.mailfrom=evil.example" in str(ar)
    assert "dmarc=fail (p=reject) header.from=example.jp" in str(ar)
    assert msg["Subject"] == "【なりすましの疑い】請求書"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "SPF: pass / DMARC: fail (p=reject)（当ゲートウェイで評価）" in body
    assert out.report.auth["dmarc"] == "fail" and out.report.auth["evaluated"] is True
    assert out.report.auth["dmarc_policy"] == "reject"


@pytest.mark.parametrize(
    ("mail_from", "helo"),
    [
        ("", "[192.0.2.1]"),  # an address literal HELO
        ("u@", "mx.example.jp"),
        ("u@" + "a." * 130 + "jp", "h"),  # over 253 octets
        ("u@exa\u202emple.jp", "h"),  # bidi in the domain
        ("u@ex ample.jp", "h"),
        ("u@.example.jp", "h"),
    ],
)
def test_malformed_identities_are_none_without_a_query(
    stub: DnsStub, mail_from: str, helo: str
) -> None:
    v = run(stub, mail(), mail_from, helo=helo)
    assert v.spf == "none"
    assert [q for q in stub.queries if not q.startswith("_dmarc")] == []


def test_hostile_macros_and_ptr_do_not_break_the_evaluation(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 exists:%{l}.%{i}._spf.example.jp ptr -all"
    stub.rr[("10.2.0.192.in-addr.arpa", "PTR")] = ["mx.example.jp."]
    stub.rr[("mx.example.jp", "A")] = [PEER]
    v = run(stub, mail(), "a" * 64 + "\x01\u202e.x@example.jp")
    assert v.spf == "pass"  # by ptr; the unusable exists: name was never sent
    assert not any("\u202e" in q or "\x01" in q for q in stub.queries)


def test_ipv4_mapped_peer_and_idn_domain(stub: DnsStub) -> None:
    stub.txt["mx.example.jp"] = b"v=spf1 ip4:192.0.2.10 -all"
    assert run(stub, mail(), "", peer="::ffff:192.0.2.10", helo="mx.example.jp").spf == "pass"
    stub.txt["xn--r8jz45g.jp"] = b"v=spf1 ip4:192.0.2.10 -all"
    assert run(stub, mail(), "u@例え.jp").spf == "pass"


def test_concurrent_evaluations_use_their_own_resolvers(stub: DnsStub) -> None:
    from concurrent.futures import ThreadPoolExecutor

    other = DnsStub()
    other.txt["example.jp"] = b"v=spf1 -all"  # a second "world": must not leak into the first
    try:
        mine = dns_stub.make_resolver([stub.address], 1.0)
        theirs = dns_stub.make_resolver([other.address], 1.0)

        def one(resolver: object) -> str:
            return spf_check.check(PEER, "y@example.jp", "h", resolver, 2.0).result  # type: ignore[arg-type]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, [mine, theirs] * 10))
        assert results == ["pass", "fail"] * 10
    finally:
        other.close()


def test_malformed_from_domain_is_dmarc_permerror_without_a_query(stub: DnsStub) -> None:
    v = run(stub, mail(from_="Yamada <yamada@exa\u202emple.jp>"), "yamada@example.jp")
    assert v.dmarc == "permerror"
    assert not any(q.startswith("_dmarc") for q in stub.queries)


def test_aligned_spf_pass_without_a_dmarc_record_is_pass(stub: DnsStub) -> None:
    del stub.txt["_dmarc.example.jp"]
    stub.txt["mail.example.jp"] = b"v=spf1 ip4:192.0.2.0/24 -all"
    v = run(stub, mail(), "bounce@mail.example.jp")
    assert (v.spf, v.dmarc, v.overall) == ("pass", "none", Overall.PASS)
    # An SPF pass for some other organization says nothing about the From.
    v = run(stub, mail(), "x@evil.example", peer="198.51.100.7")
    assert (v.spf, v.dmarc) == ("pass", "none") and v.overall is Overall.SUSPICIOUS


def test_silent_dmarc_lookup_is_temperror_within_the_bound(stub: DnsStub) -> None:
    stub.txt["example.jp"] = b"v=spf1 ?all"
    stub.silent.add("_dmarc.example.jp")
    v = run(stub, mail(), "yamada@example.jp", dns_timeout="0.3s")
    assert (v.spf, v.dmarc, v.overall) == ("neutral", "temperror", Overall.UNKNOWN)
    assert stub.queries.count("_dmarc.example.jp") <= 2  # bounded retries, no second name
    assert "_dmarc.example.jp" in stub.queries
