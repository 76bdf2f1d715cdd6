"""Normalize, then disarm: the one function every text the gateway emits goes through.

``disarm(text)`` first *cleans* the text (C0/C1 controls other than tab and line feed, format
characters such as zero-width, soft hyphen and bidi overrides, lone surrogates and Unicode
non-characters are removed; CR and line/paragraph separators become line feeds), then finds
links on an NFKC view of the cleaned text (so ``ｈｔｔｐｓ：／／`` is found too) and rewrites them
so that no mail client, preview pane or OS handler treats them as a link:

- ``scheme://`` and ``scheme:\\`` of any scheme → ``hxxps://evil[.]example/`` (http/ftp renamed,
  others ``smb[:]//host[.]example``);
- handler schemes without slashes (``javascript:``, ``ms-msdt:``, ``search-ms:``, ``data:``,
  ``mhtml:``, ``ms-word:`` ...) → ``ms-msdt[:]...``;
- UNC paths ``\\\\host\\share`` → ``[\\\\]host[.]example\\share``;
- ``www.`` hosts and bare ``host.tld`` on any public suffix (publicsuffixlist's bundled list,
  ICANN section) → dots bracketed.

Nothing changes the text after ``disarm``: callers compose first and disarm last. The function
is idempotent (disarmed text is not matched again) and linear in the length of the text.
E-mail addresses are left alone (clicking one opens a reply, not a page).
"""

from __future__ import annotations

import functools
import html as _html
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from publicsuffixlist import PublicSuffixList

__all__ = ["Disarmed", "clean_text", "defang_text", "defang_url", "disarm", "url_scheme"]


@dataclass(frozen=True)
class Disarmed:
    text: str
    links: int  # how many links were rewritten


# --------------------------------------------------------------------------------------------
# Cleaning (changes the text itself)


class _CleanTable(dict[int, int | str | None]):
    """``str.translate`` table computed on demand: one category lookup per distinct code point."""

    def __missing__(self, cp: int) -> int | str | None:
        ch = chr(cp)
        category = unicodedata.category(ch)
        value: int | str | None
        if ch in "\t\n":
            value = cp
        elif ch == "\r" or category in ("Zl", "Zp"):
            value = "\n"
        elif category in ("Cc", "Cf", "Cs") or _is_noncharacter(cp):
            value = None
        else:
            value = cp
        self[cp] = value
        return value


def _is_noncharacter(cp: int) -> bool:
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


_CLEAN: Final = _CleanTable()


def clean_text(text: str) -> str:
    """Controls, format characters, surrogates and non-characters removed; line ends as LF."""
    return text.replace("\r\n", "\n").translate(_CLEAN)


# --------------------------------------------------------------------------------------------
# The NFKC view (length-preserving, only used to find links)


class _ViewTable(dict[int, int | str | None]):
    def __missing__(self, cp: int) -> int | str | None:
        ch = chr(cp)
        nfkc = unicodedata.normalize("NFKC", ch)
        value: int | str
        if unicodedata.category(ch)[0] == "M":
            # A combining mark belongs to the label it follows ("wẁ.evil.me"): a non-ASCII
            # letter in the view, as the composed form ("ẁ") would be.
            value = "\u00e0"
        elif len(nfkc) == 1:
            value = nfkc
        elif nfkc and all(c.isalnum() for c in nfkc):
            value = "x"  # "ﬁ" → a letter: one character in the view for one in the text
        else:
            value = cp
        self[cp] = value
        return value


_VIEW: Final = _ViewTable()
# Browsers take the ideographic full stop as a label separator inside host names.
_IDEO_DOT_RE: Final = re.compile(r"(?<=[A-Za-z0-9\-])[\u3002\uff61](?=[A-Za-z0-9])")


def _view(text: str) -> str:
    if text.isascii():
        return text
    view = text.translate(_VIEW)
    return _IDEO_DOT_RE.sub(".", view)


# --------------------------------------------------------------------------------------------
# Finding

_RENAMED: Final = {"http": "hxxp", "https": "hxxps", "ftp": "fxp", "ftps": "fxps", "sftp": "sfxp"}
_ALREADY_DEFANGED: Final = frozenset(_RENAMED.values())
# Schemes a client or the OS hands to a program even without "//" after the colon.
_HANDLER_SCHEMES: Final = frozenset(
    """http https ftp ftps sftp file smb cifs nfs afp dav webdav javascript vbscript livescript
    jscript data mhtml mk its res jar view-source blob about chrome shell hcp search search-ms
    intent ldap ldaps telnet ssh rdp vnc irc ircs sip sips skype msteams zoommtg zoomus slack
    steam tg itms itms-services onenote outlook microsoft-edge mms rtsp rtmp feed webcal news
    nntp gopher ws wss git svn magnet ed2k xmpp ms-its firefox opera vnd.ms-office""".split()
)
_HANDLER_PREFIXES: Final = ("ms-", "vnd.ms-", "microsoft.", "x-apple.")

# Two passes, each left to right: schemes and paths first, then host names on the result (a
# host match must never swallow the start of a "scheme://" that follows it, "www.xhttp://").
# Each alternative is linear: no nested ambiguous quantifiers, and every start position is
# fenced by a look-behind so no run of characters is scanned from more than one start.
_SCHEME_PASS_RE: Final = re.compile(
    # 1: scheme followed by slashes or backslashes, 2: the slashes, 3: the authority
    # (a run of scheme characters is taken whole, and not at all if "://" follows it, so a
    # nested "http://" right after the slashes is found by its own match)
    r"(?<![A-Za-z0-9+.\-])([A-Za-z0-9+.\-]+):([/\\]+)"
    r"((?:[A-Za-z0-9+.\-]++(?!:[/\\])|[^\s/?#\\<>\"'`\[\]:A-Za-z0-9+.\-]|:(?![/\\]))*)"
    # 4: an authority after an already bracketed "[:]//"
    r"|(?<=\[:\])//([^\s/?#\\<>\"'`\[\]]+)"
    # 5: a handler scheme without slashes
    r"|(?<![A-Za-z0-9+\-])([A-Za-z][A-Za-z0-9+.\-]{1,40}):(?=[^\s\[/\\])"
    # 6: a UNC path
    r"|(?<![\w\\/:\[\]])\\\\([\w.\-$]+)(?=[\\/])"
)
# 1: a www. host (its own pass: a bare-host candidate rejected for its suffix, "Àwww.txt",
# must not hide a www. host inside it)
_WWW_PASS_RE: Final = re.compile(r"(?<![A-Za-z0-9@._\-])((?i:www)\d{0,3}(?:\.[\w\-]+)+)")
# 1: a bare host (an ASCII top-level label, or one of letters of any script: ".コム", ".рф")
_HOST_PASS_RE: Final = re.compile(
    r"(?<![\w@.\-])((?:[\w\-]+\.)+"
    r"(?:[A-Za-z]{1,63}(?![A-Za-z0-9@_\-])|[^\W\d_]{2,63}(?![\w@\-])))"
)

# 1: a dotted-quad IPv4 address followed by a path or a port ("192.0.2.7/login", "192.0.2.7:8080"):
# some clients link these without a scheme. A lone quad ("version 1.2.3.4") is left readable.
_IPV4_PASS_RE: Final = re.compile(
    r"(?<![\w.\-])((?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"
    r"(?=[/\\]|:\d)",
    re.ASCII,
)

_PSL: Final = PublicSuffixList(only_icann=True)
_MAX_ROUNDS: Final = 4
_ASCII_TRIGGER_RE: Final = re.compile(r"[.:\\]")


@functools.lru_cache(maxsize=4096)
def _is_public_tld(tld: str) -> bool:
    return _PSL.publicsuffix(tld.lower(), accept_unknown=False) is not None


def _is_handler(name: str) -> bool:
    low = name.lower()
    return low in _HANDLER_SCHEMES or low.startswith(_HANDLER_PREFIXES)


def _bracket(original: str, view: str) -> str:
    """The original characters, each one that is a dot in the view shown as ``[.]``."""
    if "." not in view:
        return original
    return "".join("[.]" if v == "." else o for o, v in zip(original, view, strict=True))


def disarm(text: str) -> Disarmed:
    """Clean ``text`` and rewrite every link in it; see the module docstring."""
    text = clean_text(text)
    # No ":", "." or "\\" even in the NFKC view: no link of any kind (most CSV cells, words).
    if _ASCII_TRIGGER_RE.search(text if text.isascii() else _view(text)) is None:
        return Disarmed(text, 0)
    total = 0
    # A rewrite can expose a neighbour ("http://.http://" → "hxxp://.http[:]//" leaves a dot to
    # bracket): repeat while something changed, so the result is a fixed point (idempotent).
    for _ in range(_MAX_ROUNDS):
        text, schemes = _pass(_SCHEME_PASS_RE, text)
        text, www = _pass(_WWW_PASS_RE, text)
        text, hosts = _pass(_HOST_PASS_RE, text)
        text, quads = _pass(_IPV4_PASS_RE, text)
        total += schemes + www + hosts + quads
        if not schemes + www + hosts + quads:
            break
    return Disarmed(text, total)


def _pass(pattern: re.Pattern[str], text: str) -> tuple[str, int]:
    view = _view(text)
    out: list[str] = []
    pos = 0
    links = 0
    for m in pattern.finditer(view):
        start, end = m.span()
        original = text[start:end]
        shown = _render(m, original)
        if shown is None or shown == original:
            continue
        out.append(text[pos:start])
        out.append(shown)
        pos = end
        links += 1
    if not out:
        return text, 0
    out.append(text[pos:])
    return "".join(out), links


def _render(m: re.Match[str], original: str) -> str | None:
    view = m.group(0)
    if m.re is _WWW_PASS_RE:
        return _bracket(original, view)
    if m.re is _HOST_PASS_RE:
        return _bare_host(original, view)
    if m.re is _IPV4_PASS_RE:
        return _bracket(original, view)
    if m.group(1) is not None:
        if len(m.group(1)) == 1 and m.group(1).isalpha():
            return None  # a drive letter ("C:\\Users"), not a scheme
        # Shown as the compatibility form reads ("ﬁle" is "file"), slashes as written.
        name = unicodedata.normalize("NFKC", original[: m.end(1) - m.start()])
        slashes = m.group(2)
        low = name.lower()
        start = m.start(3) - m.start()
        authority = _bracket(original[start:], view[start:])
        if low in _ALREADY_DEFANGED:
            return f"{name}:{slashes}{authority}"
        shown = _RENAMED.get(low)
        return f"{shown}:{slashes}{authority}" if shown else f"{name}[:]{slashes}{authority}"
    if m.group(4) is not None:
        return "//" + _bracket(original[2:], view[2:])
    if m.group(5) is not None:
        name = m.group(5)
        if not _is_handler(name):
            return None
        shown = _RENAMED.get(name.lower())
        return f"{shown}:" if shown else f"{name}[:]"
    if m.group(6) is not None:
        return "[\\\\]" + _bracket(original[2:], view[2:])
    return None


_TLD_RE: Final = re.compile(r"[^\W\d_]{2,63}")


def _bare_host(original: str, view: str) -> str | None:
    """Dots bracketed up to the longest prefix ending in a public suffix (``lg.jp。http``: a
    client links ``lg.jp`` and stops at the ideographic full stop)."""
    labels = view.split(".")
    end = len(view)
    for k in range(len(labels), 1, -1):
        if k < len(labels):
            end -= len(labels[k]) + 1  # drop the last label and its dot
        start = end - len(labels[k - 1])
        # The label as it reads once folded: "ﬁ" (one character in the view) is "fi".
        tld = unicodedata.normalize("NFKC", original[start:end])
        if _TLD_RE.fullmatch(tld) and _is_public_tld(tld):
            return _bracket(original[:end], view[:end]) + original[end:]
    return None


def defang_text(text: str) -> tuple[str, int]:
    """``disarm`` as a (text, count) pair (the form the renderer and older callers use)."""
    result = disarm(text)
    return result.text, result.links


# --------------------------------------------------------------------------------------------
# One link target (an HTML href) shown as text

_MAX_URL: Final = 2048  # longer URLs are shown cut; nobody reads the tail of a tracking URL
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Browsers delete tabs and newlines anywhere in a URL ("java\tscript:"); zero-width and bidi
# controls are removed so that what we show is what would have been followed.
_URL_JUNK_RE: Final = re.compile("[\t\n\r\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_C0_SPACE: Final = "".join(chr(c) for c in range(0x21))
_IDNA_DOT_RE: Final = re.compile(r"(?<!\[)[.\u3002\uff0e\uff61](?!\])")  # IDNA label separators
# Hierarchical schemes shown as "smb[:]//host"; file: and smb: leak NTLM hashes.
NET_SCHEMES: Final = frozenset({"file", "smb", "ws", "wss", "nntp", "news", "gopher", "webcal"})
RENAMED_SCHEMES: Final = frozenset(_RENAMED)
# Non-navigating schemes shown as "tel[:]..." (a phone number or address is the useful part).
_OPAQUE_SHOWN: Final = frozenset({"mailto", "tel", "callto", "sms", "fax"})
# Everything else (javascript:, vbscript:, data:, ms-msdt:, search-ms:, cid: ...) is removed:
# their payload is code or a local-program trigger, never something a reader needs to see.


def url_scheme(url: str) -> tuple[str | None, str]:
    """(lower-case scheme or None, cleaned URL) as a browser would see it."""
    s = _URL_JUNK_RE.sub("", clean_text(url)).strip(_C0_SPACE)
    # libxml2 already decoded entities once; a second decode only for the scheme test catches
    # leftovers a browser would decode ("javascript&colon;").
    probe = _URL_JUNK_RE.sub("", _html.unescape(s[:64])).strip(_C0_SPACE)
    m = _SCHEME_RE.match(unicodedata.normalize("NFKC", probe))
    if m is None:
        return None, s
    scheme = m.group(1).lower()
    if not s.lower().startswith(scheme + ":"):
        s = m.string + s[64:]
    return scheme, s


def defang_url(url: str) -> str:
    """Show a link target without making it clickable.

    ``https://evil.example/login?a=1`` → ``hxxps://evil[.]example/login?a=1``; ``ftp:`` → ``fxp:``;
    ``file:``/``smb:`` → ``file[:]//host[.]example``; ``mailto:`` → ``mailto[:]a[@]b[.]jp``;
    ``javascript:``, ``data:`` and any unknown scheme → ``[javascript: link removed]`` (the payload
    is never shown). Host names keep their form (IDN and punycode as written).
    """
    scheme, s = url_scheme(url)
    if not s:
        return ""
    cut = len(s) > _MAX_URL
    if cut:
        s = s[:_MAX_URL]
    tail = "…" if cut else ""
    if scheme is None:
        if s[:2] in ("//", "\\\\", "/\\", "\\/"):  # protocol-relative: a host follows
            return disarm("//" + _defang_authority(s[2:])).text + tail
        return disarm(s).text + tail
    rest = s[len(scheme) + 1 :]
    if scheme in _RENAMED or scheme in NET_SCHEMES:
        shown = _RENAMED[scheme] + "://" if scheme in _RENAMED else f"{scheme}[:]//"
        # Browsers treat "\" as "/" and ignore how many slashes follow a special scheme.
        shown += _defang_authority(rest.replace("\\", "/").lstrip("/"))
        # Once more over the whole: "http://http://x" must not leave the inner one live.
        return disarm(shown).text + tail
    if scheme in _OPAQUE_SHOWN:
        target, sep, query = rest.partition("?")
        target = _IDNA_DOT_RE.sub("[.]", target).replace("@", "[@]")
        return disarm(f"{scheme}[:]{target}{sep}{query}").text + tail
    if len(scheme) > 32 or not scheme.isascii():
        return "[link removed]"
    return f"[{scheme}: link removed]"


def _defang_authority(rest: str) -> str:
    """Bracket the dots of the host part; the caller disarms the rest of the URL."""
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1:
            end = min(end, i)
    return _IDNA_DOT_RE.sub("[.]", rest[:end]) + rest[end:]
