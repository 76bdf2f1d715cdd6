"""HTML mail bodies to safe, readable plain text (links disarmed by ``gateway.mime.defang``).

The LGWAN side only ever receives one text/plain body, and nothing in it may be clickable:
every URL is shown defanged (``hxxps://evil[.]example/login``), payload links
(``javascript:``, ``data:``) are replaced by a note, active and hidden content is dropped.

Parsing uses libxml2 (lxml) in *target* (SAX-like) mode: the parser calls ``start``/``data``/
``end`` on a renderer object, so no tree is built and nothing here recurses over the document.
Tree mode would be worse twice over: libxml2 refuses trees deeper than 256 (2048 with
``huge_tree``) and silently drops the rest of the document, while target mode has no depth limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from lxml import etree

from gateway.mime.defang import NET_SCHEMES, RENAMED_SCHEMES, defang_url, disarm, url_scheme

__all__ = ["HtmlText", "html_to_text", "TRUNCATED_MARKER"]

TRUNCATED_MARKER: Final = "[以下省略: 本文が長すぎるため切り詰めました / truncated: body too long]"
_MAX_LINK_TEXT: Final = 1000  # link text kept for the link-text-vs-href comparison
_MAX_ALT: Final = 200
_MAX_INDENT: Final = 6  # list/quote nesting shown; deeper levels share the last indent


@dataclass(frozen=True)
class HtmlText:
    text: str
    links_disarmed: int  # how many URLs were shown defanged (or removed, for payload schemes)
    dropped: frozenset[str]  # kinds of content removed: "script", "remote_image", "hidden", ...


# Bare host names counted as "the text names a site" in the link-text comparison below.
_LINKIFIED_TLDS: Final = frozenset(
    """com net org info biz jp co io xyz top site online club shop app dev tv cc ws gov edu
    mil int eu asia tokyo osaka nagoya yokohama kyoto us uk de fr it nl ru cn kr tw hk sg
    au ca br in icu vip live link click work support""".split()
)


# --------------------------------------------------------------------------------------------
# Link-text-versus-target comparison (the classic phishing link)

_HOSTS_IN_TEXT_RE: Final = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://([^\s/?#\\<>\"'`]+)"
    r"|(?<![A-Za-z0-9@._\-])((?:[A-Za-z0-9\-]+\.)+([A-Za-z]{2,24}))(?![A-Za-z0-9@_\-])"
)


def _norm_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        pass
    return host[4:] if host.startswith("www.") else host


def _hostname(authority_url: str) -> str | None:
    try:
        host = urlsplit(authority_url).hostname
    except ValueError:
        return None
    return _norm_host(host) if host else None


def _text_hosts(text: str) -> list[str]:
    hosts: list[str] = []
    for m in _HOSTS_IN_TEXT_RE.finditer(text):
        if m.group(1) is not None:
            host = _hostname("//" + m.group(1))
        elif m.group(3).lower() in _LINKIFIED_TLDS or m.group(2).lower().startswith("www."):
            host = _norm_host(m.group(2))
        else:
            host = None
        if host:
            hosts.append(host)
        if len(hosts) >= 8:
            break
    return hosts


def _same_site(a: str, b: str) -> bool:
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _href_host(scheme: str | None, cleaned: str) -> str | None:
    if scheme is None and cleaned[:2] not in ("//", "\\\\", "/\\", "\\/"):
        return None
    if scheme is not None and scheme not in RENAMED_SCHEMES and scheme not in NET_SCHEMES:
        return None
    rest = cleaned if scheme is None else cleaned[len(scheme) + 1 :]
    return _hostname("//" + rest.replace("\\", "/").lstrip("/"))


# --------------------------------------------------------------------------------------------
# Rendering

_DROP: Final = {
    "script": "script", "noscript": "noscript", "style": "style",
    "iframe": "iframe", "frame": "iframe", "frameset": "iframe", "noframes": "iframe",
    "portal": "iframe", "fencedframe": "iframe",
    "form": "form", "input": "form", "button": "form", "select": "form", "option": "form",
    "optgroup": "form", "textarea": "form", "datalist": "form", "keygen": "form",
    "object": "object", "param": "object", "embed": "embed", "applet": "applet",
    "svg": "svg", "math": "math", "template": "template", "canvas": "canvas",
    "audio": "media", "video": "media", "source": "media", "track": "media", "bgsound": "media",
    "xml": "xml",
}  # fmt: skip
_SILENT: Final = frozenset({"head", "title"})  # not body text, not worth a report either
_PARAGRAPH: Final = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "dl", "hr", "form", "figure"}
)
_BLOCK: Final = frozenset(
    """div address article aside section header footer nav main figcaption center fieldset
    legend details summary caption thead tbody tfoot tr dt dd li body html dialog hgroup
    search""".split()
)
_PRE: Final = frozenset({"pre", "xmp", "listing", "plaintext"})
_WS_RE: Final = re.compile(r"[ \t\n\r\f]+")
_CSS_COMMENT_RE: Final = re.compile(r"/\*.*?\*/", re.S)
# Controls removed from the input (libxml2 turns NUL into U+FFFD; nothing else is readable).
_INPUT_CTRL_RE: Final = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Invisible characters removed from the output: bidi overrides reorder what the reader sees
# ("moc.evil" shown as "live.com") and zero-width characters split words to evade filters.
_OUTPUT_JUNK_RE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)


def _is_hidden(attrib: dict[str, str]) -> bool:
    if "hidden" in attrib:
        return True
    style = attrib.get("style")
    if not style:
        return False
    css = "".join(_CSS_COMMENT_RE.sub("", style.lower()).split())
    return "display:none" in css or "visibility:hidden" in css


def _is_remote(src: str) -> bool:
    s = src.strip().lower()
    return bool(s) and not s.startswith(("cid:", "data:"))


class _Writer:
    """Accumulates output text: collapses whitespace, owes line breaks until text follows."""

    def __init__(self, limit: int) -> None:
        self._parts: list[str] = []
        self.size = 0
        self.limit = limit
        self._pending = 0  # line breaks owed before the next text
        self._last = "\n"  # last character written; "\n" means "at the start of a line"
        self._space = False  # a collapsed space is owed between words
        self.prefix = ""  # blockquote marker at the start of each line
        self.sep = ""  # table cell separator owed before the next text
        self.marker = ""  # list bullet owed at the start of the next line of text

    @property
    def full(self) -> bool:
        return self.size > self.limit

    def _emit(self, s: str) -> None:
        self._parts.append(s)
        self.size += len(s)
        self._last = s[-1]

    def _begin(self) -> None:
        if self._pending and self._parts:
            self._emit("\n" * self._pending)
            self.sep = ""
        self._pending = 0
        if self._last == "\n":
            self.sep = ""
            if self.prefix + self.marker:
                self._emit(self.prefix + self.marker)
            self.marker = ""
        elif self.sep:
            self._emit(self.sep)
            self.sep = ""

    def inline(self, text: str) -> bool:
        t = _WS_RE.sub(" ", text)
        core = t.strip(" ")
        if not core:
            self._space = self._space or bool(t)
            return False
        self._space = self._space or t[0] == " "
        self._begin()
        if self._space and self._last not in " \n":
            self._emit(" ")
        self._emit(core)
        self._space = t[-1] == " "
        return True

    def verbatim(self, text: str) -> bool:
        """Preformatted text: whitespace and line breaks kept."""
        if not text:
            return False
        self._begin()
        if self.prefix:
            text = text.replace("\n", "\n" + self.prefix)
        self._emit(text)
        self._space = False
        return True

    def attach(self, text: str) -> None:
        """Text that belongs to what precedes it (a link target): on the same line if any."""
        if self._parts and self._last != "\n":
            self._emit(text if self._last == " " else " " + text)
            self._space = True  # keep the following word apart from the annotation
        else:
            self.inline(text)

    def block(self, n: int) -> None:
        if self._parts:
            self._pending = max(self._pending, n)
        self._space = False

    def br(self) -> None:
        if self._parts:
            self._pending = min(self._pending + 1, 3)
        self._space = False

    def value(self) -> str:
        return "".join(self._parts)


@dataclass
class _Link:
    href: str
    text: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, s: str) -> None:
        if self.size < _MAX_LINK_TEXT:
            s = s[: _MAX_LINK_TEXT - self.size]
            self.text.append(s)
            self.size += len(s)


@dataclass
class _List:
    ordered: bool
    counter: int


@dataclass
class _Row:
    has_text: bool = False


# What an element changed on open, so that its end can undo exactly that.
_F_SUPPRESS, _F_PRE, _F_LINK, _F_LIST, _F_ROW, _F_QUOTE = 1, 2, 4, 8, 16, 32


class _OutputFull(Exception):
    """Raised from the parser target to stop libxml2 once the output limit is reached."""


class _Renderer:
    """lxml parser target: receives start/data/end events and writes plain text."""

    def __init__(self, limit: int) -> None:
        self.out = _Writer(limit)
        self.dropped: set[str] = set()
        self.links = 0
        self._frames: list[tuple[str, int]] = []
        self._suppress = 0
        self._pre = 0
        self._pre_fresh = False  # drop the newline right after <pre>, as browsers do
        self._link_stack: list[_Link] = []
        self._lists: list[_List] = []
        self._rows: list[_Row] = []
        self._quote = 0

    # -- parser target interface ------------------------------------------------------------
    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = tag.lower() if isinstance(tag, str) else ""
        if self.out.full:
            raise _OutputFull
        flags = 0
        if self._suppress:
            self._note_dropped_inside(name, attrib)
            flags = _F_SUPPRESS
        elif name in _DROP:
            self.dropped.add(_DROP[name])
            flags = _F_SUPPRESS
        elif name in _SILENT:
            flags = _F_SUPPRESS
        elif _is_hidden(attrib):
            self.dropped.add("hidden")
            flags = _F_SUPPRESS
        else:
            flags = self._open(name, attrib)
        if flags & _F_SUPPRESS:
            self._suppress += 1
        self._frames.append((name, flags))

    def end(self, tag: str) -> None:
        if not self._frames:
            return
        name, flags = self._frames.pop()
        if flags & _F_SUPPRESS:
            self._suppress -= 1
            return
        self._close(name, flags)

    def data(self, text: str) -> None:
        if self.out.full:
            raise _OutputFull
        if self._suppress:
            return
        if self._pre:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            if self._pre_fresh and text.startswith("\n"):
                text = text[1:]
            self._pre_fresh = False
            wrote = self.out.verbatim(text)
        else:
            wrote = self.out.inline(text)
        if wrote:
            self._mark_row()
        if self._link_stack:
            self._link_stack[-1].add(text)

    def close(self) -> None:
        return None

    # -- elements ---------------------------------------------------------------------------
    def _note_dropped_inside(self, name: str, attrib: dict[str, str]) -> None:
        if name in _DROP:
            self.dropped.add(_DROP[name])
        elif name == "img" and _is_remote(attrib.get("src", "")):
            self.dropped.add("remote_image")
        elif name in ("meta", "base"):
            self._note_void(name, attrib)

    def _note_void(self, name: str, attrib: dict[str, str]) -> None:
        if name == "meta" and attrib.get("http-equiv", "").strip().lower() == "refresh":
            self.dropped.add("meta_refresh")
        elif name == "base" and attrib.get("href"):
            self.dropped.add("base")  # never followed: relative links stay relative

    def _open(self, name: str, attrib: dict[str, str]) -> int:
        out = self.out
        flags = 0
        if _is_remote(attrib.get("background", "")):
            self.dropped.add("remote_image")
        if name in _PARAGRAPH:
            out.block(2)
            if name == "hr":
                out.inline("――――――――")
                out.block(2)
        elif name in _BLOCK:
            out.block(1)
        if name == "br":
            out.br()
        elif name in ("meta", "base"):
            self._note_void(name, attrib)
        elif name == "img":
            self._image(attrib)
        elif name == "a":
            href = attrib.get("href")
            if href is not None:
                self._link_stack.append(_Link(href))
                flags |= _F_LINK
        elif name in ("ul", "ol", "menu", "dir"):
            out.block(1 if self._lists else 2)
            self._lists.append(_List(name == "ol", self._list_start(attrib) if name == "ol" else 0))
            flags |= _F_LIST
        elif name == "li":
            self._bullet()
        elif name == "dd":
            out.marker = "  "
        elif name == "tr":
            self._rows.append(_Row())
            flags |= _F_ROW
        elif name in ("td", "th"):
            if self._rows and self._rows[-1].has_text:
                out.sep = " | "
        elif name == "blockquote":
            out.block(2)
            self._quote += 1
            out.prefix = "> " * min(self._quote, _MAX_INDENT)
            flags |= _F_QUOTE
        elif name in _PRE:
            out.block(2)
            self._pre += 1
            self._pre_fresh = True
            flags |= _F_PRE
        return flags

    def _close(self, name: str, flags: int) -> None:
        out = self.out
        if flags & _F_LINK:
            self._finish_link(self._link_stack.pop())
        if flags & _F_LIST:
            self._lists.pop()
            out.block(1 if self._lists else 2)
        if flags & _F_ROW:
            self._rows.pop()
        if flags & _F_QUOTE:
            self._quote -= 1
            out.prefix = "> " * min(self._quote, _MAX_INDENT)
            out.block(2)
        if flags & _F_PRE:
            self._pre -= 1
            out.block(2)
        if name in ("li", "dd"):
            out.marker = ""
        if name in _PARAGRAPH:
            out.block(2)
        elif name in _BLOCK:
            out.block(1)

    @staticmethod
    def _list_start(attrib: dict[str, str]) -> int:
        raw = attrib.get("start", "1").strip()
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 1

    def _bullet(self) -> None:
        indent = "  " * min(max(len(self._lists) - 1, 0), _MAX_INDENT)
        if self._lists and self._lists[-1].ordered:
            lst = self._lists[-1]
            mark = f"{lst.counter}. "
            lst.counter += 1
        else:
            mark = "・"
        self.out.block(1)
        self.out.marker = indent + mark  # written only if the item has text

    def _image(self, attrib: dict[str, str]) -> None:
        alt = " ".join(attrib.get("alt", "").split())[:_MAX_ALT]
        if _is_remote(attrib.get("src", "")):
            # Fetching it would tell the sender the mail was opened (a tracker).
            self.dropped.add("remote_image")
            shown = f"[画像: {alt}]" if alt else ""
        else:
            shown = f"[画像: {alt}]" if alt else "[画像]"
        if shown and self.out.inline(f" {shown} "):  # spaced: adjacent images stay apart
            self._mark_row()
        if alt and self._link_stack:
            self._link_stack[-1].add(" " + alt + " ")

    def _mark_row(self) -> None:
        if self._rows:
            self._rows[-1].has_text = True

    def _finish_link(self, link: _Link) -> None:
        href = link.href.strip()
        if not href or href.startswith("#"):  # a jump within the message itself
            return
        scheme, cleaned = url_scheme(href)
        text = " ".join("".join(link.text).split())
        if scheme == "mailto":
            address = cleaned[len("mailto:") :].partition("?")[0].strip().lower()
            if address and address in text.lower():
                return  # the address is already visible; replying is not navigating
        shown = defang_url(href)
        if not shown:
            return
        if shown.startswith("["):  # payload scheme removed
            self.out.attach(shown)
        else:
            real = _href_host(scheme, cleaned)
            claimed = _text_hosts(text)
            if claimed and (real is None or not any(_same_site(real, h) for h in claimed)):
                # The visible text names a different site than the link goes to: show both.
                self.out.attach(f"<表示と異なるリンク先 / real target: {shown}>")
            elif _shows_same_url(text, cleaned):
                return  # the text is the URL itself: defanged (and counted) with the body
            else:
                self.out.attach(f"<{shown}>")
        self.links += 1


def _shows_same_url(text: str, cleaned: str) -> bool:
    """Whether the link text is the URL itself (then the text alone says it all)."""

    def norm(u: str) -> str:
        u = u.strip().lower().rstrip("/")
        for prefix in ("https://", "http://"):
            if u.startswith(prefix):
                return u[len(prefix) :]
        return u

    if not text or " " in text or norm(text) != norm(cleaned):
        return False
    # Only a text the body-wide pass is sure to defang may stand alone.
    return disarm(text).links > 0


# --------------------------------------------------------------------------------------------


def html_to_text(html: str, *, max_chars: int = 2_000_000) -> HtmlText:
    """Render an HTML body as plain text with every link disarmed.

    Never raises on bad markup: garbage or empty input gives empty text. Input and output are
    bounded by ``max_chars``; a cut is marked with ``TRUNCATED_MARKER``.
    """
    truncated = len(html) > max_chars
    source = _INPUT_CTRL_RE.sub("", html[:max_chars])
    renderer = _Renderer(max_chars)
    # An explicit encoding: a <meta charset> inside the (already decoded) text must not win.
    parser = etree.HTMLParser(
        target=renderer,
        encoding="utf-8",
        recover=True,
        no_network=True,
        remove_comments=True,  # also drops Outlook's <!--[if mso]> markup
        remove_pis=True,
        huge_tree=True,  # the size is bounded above; libxml2's own limits would cut silently
    )
    if source.strip():
        try:
            etree.HTML(source.encode("utf-8", "replace"), parser)
        except (etree.XMLSyntaxError, etree.ParserError, _OutputFull):
            pass  # keep whatever was rendered before the parser stopped
    truncated = truncated or renderer.out.full
    text = renderer.out.value()[:max_chars]
    text = _OUTPUT_JUNK_RE.sub("", text).replace("\u00a0", " ")
    disarmed = disarm(text)
    text, bare = disarmed.text, disarmed.links
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    if truncated:
        text = (text + "\n\n" if text else "") + TRUNCATED_MARKER
    return HtmlText(text, renderer.links + bare, frozenset(renderer.dropped))
