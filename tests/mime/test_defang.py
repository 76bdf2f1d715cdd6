"""Normalize, then disarm (gateway.mime.defang): the hostile-form table and its properties.

Every row is written as the attacker sends it and as a client links it. The test asserts the
linked form *is* live to the egress checker's independent reading (so the row can fail), and
that nothing of it is live, and no control or format character is left, after ``disarm``.
"""

from __future__ import annotations

import pytest

from gateway.egress.links import hidden_characters, live_links
from gateway.mime.defang import clean_text, disarm

# (as sent, as a client or handler links it)
HOSTILE: list[tuple[str, str]] = [
    # controls inside the URL revive it once stripped
    *[
        (f"https:{chr(c)}//evil.example.com/login", "https://evil.example.com/login")
        for c in (0x00, 0x01, 0x08, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F, 0x80, 0x85, 0x9F)
    ],
    ("ht\x00tps://evil.example.com/", "https://evil.example.com/"),
    ("www\x02.evil.example.com", "www.evil.example.com"),
    ("www.\x7fevil-corp.me", "www.evil-corp.me"),
    # format characters: zero-width, soft hyphen, bidi, BOM, word joiner, tags
    ("h\u200bttps://evil.example.com/", "https://evil.example.com/"),
    ("https\u00ad://evil.example.com/", "https://evil.example.com/"),
    ("https://evil\u200c.example.com/", "https://evil.example.com/"),
    ("https://\u202eevil.example.com/", "https://evil.example.com/"),
    ("\u2066https://evil.example.com/\u2069", "https://evil.example.com/"),
    ("http\ufeffs://evil.example.com/", "https://evil.example.com/"),
    ("https\u2060://evil.example.com/", "https://evil.example.com/"),
    ("https\U000e0041://evil.example.com/", "https://evil.example.com/"),
    ("https:/\ufdd0/evil.example.com/", "https://evil.example.com/"),
    ("https:/\uffff/evil.example.com/", "https://evil.example.com/"),
    ("\u2028https://evil.example.com/", "https://evil.example.com/"),
    # confusable (compatibility) forms
    ("ｈｔｔｐｓ：／／ｅｖｉｌ．ｅｘａｍｐｌｅ．ｃｏｍ／", "https://evil.example.com/"),
    ("https://ｅｖｉｌ．ｃｏｍ/login", "https://evil.com/login"),
    ("ｗｗｗ．ｅｖｉｌ．ｃｏｍ", "www.evil.com"),
    ("ﬁle://evil.com/share", "file://evil.com/share"),
    ("evil。com/login", "evil.com/login"),
    # case and scheme spellings
    ("HTTPS://EVIL.EXAMPLE.COM/", "https://evil.example.com/"),
    ("hTtP://evil.example.com/", "http://evil.example.com/"),
    ("https:\\\\evil.example.com\\x", "https://evil.example.com/x"),
    ("https:/evil.example.com/", "https://evil.example.com/"),
    ("https:///evil.example.com/", "https://evil.example.com/"),
    ("1https://evil.example.com/", "https://evil.example.com/"),
    ("hxxps://http://evil.com/", "http://evil.com/"),
    ("https://a.example.com/r?u=https://evil.com/x", "https://evil.com/x"),
    ("https://user:pw@evil.example.com:8443/p", "https://evil.example.com/p"),
    ("https://192.0.2.7/admin", "https://192.0.2.7/admin"),
    ("https://[2001:db8::1]/", "https://[2001:db8::1]/"),
    ("ftp://files.example.com/pub", "ftp://files.example.com/pub"),
    ("sftp://files.example.com/", "sftp://files.example.com/"),
    ("ws://evil.example.com/socket", "ws://evil.example.com/socket"),
    ("webcal://evil.example.com/cal.ics", "webcal://evil.example.com/cal.ics"),
    ("ldap://evil.example.com/o=x", "ldap://evil.example.com/o=x"),
    ("ssh://evil.example.com", "ssh://evil.example.com"),
    # Windows: UNC, file:, smb: (NTLM leaks), protocol handlers
    ("\\\\evil.example.com\\share\\x.docx", "\\\\evil.example.com\\share\\x.docx"),
    ("\\\\192.0.2.7\\c$\\x", "\\\\192.0.2.7\\c$\\x"),
    ("\\\\fileserver\\share", "\\\\fileserver\\share"),
    ("file:\\\\evil.example.com\\share", "file:\\\\evil.example.com\\share"),
    ("file:///C:/Windows/System32/calc.exe", "file:///C:/Windows/System32/calc.exe"),
    ("file://evil.example.com/s", "file://evil.example.com/s"),
    ("smb://evil.example.com/share", "smb://evil.example.com/share"),
    ("ms-msdt:/id PCWDiagnostic /skip force", "ms-msdt:/id"),
    ("ms-msdt:?id=x", "ms-msdt:?id=x"),
    ("search-ms:query=x&crumb=location:\\\\evil.com\\s", "search-ms:query=x"),
    ("ms-word:ofe|u|https://evil.com/a.docx", "ms-word:ofe|u|https://evil.com/a.docx"),
    ("ms-excel:ofv|u|https://evil.com/a.xlsx", "ms-excel:ofv"),
    ("ms-officecmd:{}", "ms-officecmd:{}"),
    ("ms-settings:windowsupdate", "ms-settings:windowsupdate"),
    ("MS-MSDT:/id x", "ms-msdt:/id"),
    ("javascript:alert(document.cookie)", "javascript:alert(document.cookie)"),
    ("JaVaScRiPt:alert(1)", "javascript:alert(1)"),
    ("vbscript:msgbox(1)", "vbscript:msgbox(1)"),
    ("data:text/html;base64,PHNjcmlwdD4=", "data:text/html;base64,PHNjcmlwdD4="),
    ("mhtml:file://c:/x.mht!x", "mhtml:file://c:/x.mht"),
    ("shell:startup", "shell:startup"),
    ("hcp://services/search?query=x", "hcp://services/search"),
    # www. and bare hosts on any public suffix
    ("www.evil-corp.me", "www.evil-corp.me"),
    ("詳しくはwww.evil.example.jpへ", "www.evil.example.jp"),
    ("www3.evil.com/login", "www3.evil.com/login"),
    ("evil-corp.me/login", "evil-corp.me/login"),
    ("login.microsoftonline.com.evil.top/x", "evil.top/x"),
    ("こちら:evil.xyz/reset から", "evil.xyz/reset"),
    ("phish.zip", "phish.zip"),
    ("account-verify.tokyo/jp", "account-verify.tokyo/jp"),
    ("city-tax.lg.jp/pay", "city-tax.lg.jp/pay"),
    ("example.みんな.com/x", "example.com/x"),
    ("資料はdocs.evil.co/view?id=1を参照", "docs.evil.co/view"),
    ("(evil.com)", "evil.com"),
    ("<https://evil.com/>", "https://evil.com/"),
    ('"https://evil.com/"', "https://evil.com/"),
    ("https://evil.com/\nhttps://evil2.com/", "https://evil2.com/"),
    # A bare IPv4 address with a path or a port: linked by some clients without a scheme.
    ("ログインは 192.0.2.7/login.php から", "192.0.2.7/login.php"),
    ("管理画面 10.0.0.1:8080/admin", "10.0.0.1:8080/admin"),
    ("１９２．０．２．７／ｘ", "192.0.2.7/x"),
    ("\\\\192.0.2.7\\share", "\\\\192.0.2.7\\share"),
]


def test_table_has_sixty_forms() -> None:
    assert len(HOSTILE) >= 60


@pytest.mark.parametrize(("sent", "linked"), HOSTILE)
def test_hostile_form_is_disarmed(sent: str, linked: str) -> None:
    assert live_links(linked), f"the table row is not live to begin with: {linked!r}"
    shown = disarm(sent)
    assert not live_links(shown.text), (sent, shown.text)
    assert not hidden_characters(shown.text), (sent, shown.text)
    assert shown.links >= 1
    assert disarm(shown.text).text == shown.text  # idempotent: nothing left to change


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("https:\x01//evil.example/login", "hxxps://evil[.]example/login"),
        ("www\x02.evil.example.com", "www[.]evil[.]example[.]com"),
        ("\\\\host\\share\\x.docx", "[\\\\]host\\share\\x.docx"),
        ("ms-msdt:/id PCW", "ms-msdt[:]/id PCW"),
        ("evil-corp.me/login", "evil-corp[.]me/login"),
        ("ｈｔｔｐｓ：／／ｅｖｉｌ．ｃｏｍ", "hxxps://ｅｖｉｌ[.]ｃｏｍ"),
        ("javascript:alert(1)", "javascript[:]alert(1)"),
        ("ﬁle://x.com/s", "file[:]//x[.]com/s"),
        ("\u2028x", "\nx"),
        ("a\r\nb\rc", "a\nb\nc"),
    ],
)
def test_readable_forms(sent: str, shown: str) -> None:
    assert disarm(sent).text == shown


@pytest.mark.parametrize(
    "text",
    [
        "連絡先: taro.yamada@city.example.lg.jp",
        "髙﨑①㈱ ＡＢＣ ｶﾀｶﾅ 〒100-0001 ０３－１２３４－５６７８",
        "C:\\Users\\taro\\Desktop\\資料.xlsx",
        "X-Mugai-Id: 20261202-abc",
        "件名: 会議のご案内\n日時: 12月3日 10:00〜\n場所: 第2会議室",
        "Ver.2.0 / 1.5倍 / e.g. / Node.js / report.pdf / file.txt",
        "tel:03-1234-5678 mailto:info@example.jp",
        "already hxxps://evil[.]com/ www[.]x[.]com smb[:]//a[.]com [\\\\]h\\s",
        "emoji 👨\u200d👩 and variation 葛\U000e0100",
        "version 1.2.3.4 released; 999.1.1.1/x is no address; v1.2.3.4/x; 1.2.3.4.5/x",
    ],
)
def test_ordinary_text_is_left_readable(text: str) -> None:
    shown = disarm(text)
    expected = clean_text(text)
    assert shown.text == expected
    assert shown.links == 0


def test_clean_text_keeps_japanese_and_ivs() -> None:
    assert clean_text("葛\U000e0100城 髙﨑①㈱") == "葛\U000e0100城 髙﨑①㈱"


def test_ten_thousand_links() -> None:
    text = " ".join(f"https://evil{i}.example.com/x" for i in range(10_000))
    shown = disarm(text)
    assert shown.links == 10_000
    assert not live_links(shown.text)


@pytest.mark.parametrize(
    "text",
    [
        "a" * 300_000 + "http://x.example.com",
        "a." * 200_000,
        "www." * 100_000,
        "日本語" * 200_000 + ".com",
        "-." * 200_000 + "com",
        "1" * 200_000 + "://",
        "\\\\" * 100_000,
        ":" * 200_000,
        "a:" * 200_000,
    ],
)
def test_pathological_input_finishes_safe(text: str) -> None:
    shown = disarm(text)
    assert not live_links(shown.text)


def _category_samples() -> list[str]:
    """One code point of every Unicode general category (plus every byte value below)."""
    import unicodedata

    seen: dict[str, str] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF and "Cs" in seen:
            continue
        cat = unicodedata.category(chr(cp))
        if cat not in seen:
            seen[cat] = chr(cp)
        if len(seen) == 30:
            break
    return list(seen.values())


EVERY_CHAR = [chr(b) for b in range(0x100)] + _category_samples() + ["\udc80", "\U000e0001"]


@pytest.mark.parametrize("ch", EVERY_CHAR, ids=lambda c: f"U+{ord(c):04X}")
def test_every_byte_value_and_category_inside_a_url_name_and_cell(ch: str) -> None:
    from gateway.sanitize.names import clean_name
    from gateway.sanitize.text import neutralize_cell

    for sent in (
        f"https:{ch}//evil.example.com/login",
        f"ht{ch}tps://evil.example.com/",
        f"https://evil{ch}.example.com/",
        f"www{ch}.evil-corp.me",
        f"evil-corp{ch}.me/login",
        f"\\\\{ch}evil.example.com\\share",
        f"ms-msdt{ch}:/id x",
    ):
        shown = disarm(sent).text
        assert not live_links(shown), (sent, shown)
        assert not hidden_characters(shown), (sent, shown)
    name = clean_name(f"www{ch}.evil-corp.me{ch}.docx", "pdf")
    assert not live_links(name) and not hidden_characters(name), name
    cell = disarm(neutralize_cell(clean_text(f"{ch}=cmd|' /C calc'!A0"))).text
    assert cell.startswith(("'", "=")) is False or cell.startswith("'"), cell
    core = cell.lstrip(" \u3000")
    assert not core.startswith(("=", "+", "-", "@", "\t")), cell


def test_www_in_any_case_and_combining_marks() -> None:
    for sent in ("WWW.evil.example", "Www.evil.example/x", "wẁw.evil-corp.me", "WWW.txt"):
        shown = disarm(sent).text
        assert "[.]" in shown and not live_links(shown), (sent, shown)


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("пример.рф/login", "пример[.]рф/login"),
        ("ご確認.コム/login", "ご確認[.]コム/login"),
        ("shop.みんな/sale です", "shop[.]みんな/sale です"),
        ("网站.中国/x", "网站[.]中国/x"),
        ("evil.comです", "evil[.]comです"),
    ],
)
def test_bare_host_on_a_non_ascii_public_suffix(sent: str, shown: str) -> None:
    """Any public suffix, not only ASCII ones (IDN top-level domains such as .コム, .みんな)."""
    assert live_links(sent), sent  # the checker calls it live
    assert disarm(sent).text == shown
    assert not live_links(shown)
    assert disarm("確認しました.ありがとう").text == "確認しました.ありがとう"  # no such suffix
