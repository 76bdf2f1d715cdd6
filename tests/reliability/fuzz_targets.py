"""Hypothesis strategies for hostile mail and the properties every input must satisfy.

Used by ``test_fuzz_mime.py`` (modest example counts in CI) and ``bench/fuzz/run.py`` (long
runs, plus atheris on raw bytes). The properties:

- ``parse_message``: returns, or raises a ``gateway.errors.Permanent`` subclass; nothing else;
- the charset functions: total, and lossless for text a codec can carry under its own label;
- ``sanitize_message`` (office=None): returns a message that passes ``tests.checks``, or
  raises ``Permanent``.
"""

from __future__ import annotations

import base64
import quopri
from functools import cache

from hypothesis import strategies as st

from gateway.errors import Permanent
from gateway.mime import charset
from gateway.mime.headers import decode_address_list, decode_header_value
from gateway.mime.parse import parse_message
from gateway.pipeline import sanitize_message
from gateway.settings import Settings, load_settings
from gateway.spool import JobMeta
from tests.checks import check_delivered
from tests.jp import cp50220

# --- building blocks ----------------------------------------------------------------------------

JA = "山田髙﨑①②Ⅱ㈱見積書請求書の件ですカタカナｶﾀｶﾅ〜～−ー"
ODD = "\u202e\u200b\u2028\ufeff\x00\x07\r\n\t\"'<>@,;:\\%/..\\"
LABELS = (
    "utf-8", "UTF8", "iso-2022-jp", "ISO-2022-JP", "shift_jis", "Shift-JIS", "x-sjis", "cp932",
    "windows-31j", "euc-jp", "EUC-JP", "us-ascii", "iso-8859-1", "gb2312", "unknown-8bit",
    "x-bogus", "", "utf-7", "utf-16", "iso-2022-jp-2",
)  # fmt: skip
CODECS = ("utf-8", "cp932", "euc_jis_2004", "iso2022_jp", "cp50220")

texts = st.text(alphabet=st.sampled_from(JA + "abc XYZ 012.-" + ODD), max_size=60)
plain_texts = st.text(alphabet=st.sampled_from(JA + "abc XYZ 012.-"), min_size=1, max_size=60)


def encode(text: str, codec: str) -> bytes:
    if codec == "cp50220":
        try:
            return cp50220(text)
        except (ValueError, UnicodeEncodeError):
            return text.encode("utf-8")
    return text.encode(codec, "replace")


def _label(codec: str) -> str:
    return {"cp50220": "ISO-2022-JP", "iso2022_jp": "ISO-2022-JP", "cp932": "Shift_JIS",
            "euc_jis_2004": "EUC-JP"}.get(codec, codec)  # fmt: skip


@st.composite
def encoded_word_header(draw: st.DrawFn) -> str:
    """Header text the way real mailers write it: encoded-words (split anywhere), raw 8-bit,
    lying labels, broken base64."""
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        text = draw(texts)
        codec = draw(st.sampled_from(CODECS))
        raw = encode(text, codec)
        form = draw(st.sampled_from(["B", "Q", "raw", "split", "broken"]))
        label = draw(st.sampled_from((_label(codec),) * 3 + LABELS))
        if form == "raw":
            pieces.append(raw.decode("utf-8", "surrogateescape"))
            continue
        chunks = [raw]
        if form == "split" and len(raw) > 1:
            cut = draw(st.integers(1, len(raw) - 1))
            chunks = [raw[:cut], raw[cut:]]
        for chunk in chunks:
            if form == "Q":
                body = quopri.encodestring(chunk, header=True).decode("ascii").replace("?", "=3F")
                pieces.append(f"=?{label}?Q?{body}?=")
            else:
                body = base64.b64encode(chunk).decode("ascii")
                if form == "broken":
                    body = body[: draw(st.integers(0, len(body)))] + draw(
                        st.sampled_from(["", "=", "!!", "?", "=?"])
                    )
                pieces.append(f"=?{label}?B?{body}?=")
    return draw(st.sampled_from([" ", "\r\n ", "", "\t"])).join(pieces)


@st.composite
def filenames(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from([
        "見積書.pdf", "../../etc/passwd", "..\\..\\boot.ini", "/abs/x.txt", "C:\\x\\y.doc",
        "invoice\u202efdp.exe", "a\r\nContent-Type: text/html", "con.txt", "", ".", "..",
        "x" * 300 + ".txt", "名前.txt",
    ]))  # fmt: skip
    form = draw(st.sampled_from(["plain", "2047", "2231", "raw"]))
    if form == "2047":
        return f'"=?utf-8?B?{base64.b64encode(name.encode()).decode()}?="'
    if form == "2231":
        return "*=utf-8''" + "".join(f"%{b:02X}" for b in name.encode())
    if form == "raw":
        return '"' + name.encode("cp932", "replace").decode("utf-8", "surrogateescape") + '"'
    return '"' + name.replace('"', "") + '"'


def _cte(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return base64.encodebytes(data)
    if cte == "quoted-printable":
        return quopri.encodestring(data)
    if cte == "broken-base64":
        return base64.encodebytes(data)[:-3] + b"!*\r\n"
    return data


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    ctype = draw(st.sampled_from([
        "text/plain", "text/html", "text/csv", "application/octet-stream", "application/pdf",
        "image/png", "message/delivery-status", "text/calendar", "application/zip",
        "application/pkcs7-signature", "bogus", "",
    ]))  # fmt: skip
    codec = draw(st.sampled_from(CODECS))
    label = draw(st.sampled_from((_label(codec),) * 2 + LABELS))
    if ctype in ("text/html",):
        content = encode(
            f"<html><body><p>{draw(texts)}</p><a href='http://evil.example/{draw(texts)}'>x</a>"
            f"<script>alert(1)</script></body></html>",
            codec,
        )
    elif ctype.startswith("text/") or ctype.startswith("message/") or ctype == "":
        content = encode(draw(texts), codec)
    else:
        content = draw(st.binary(max_size=200))
    cte = draw(st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "broken-base64"]))
    headers = f"Content-Type: {ctype}; charset={label}\r\n" if ctype else ""
    headers += f"Content-Transfer-Encoding: {cte.replace('broken-', '')}\r\n"
    if draw(st.booleans()):
        disp = draw(st.sampled_from(["attachment", "inline", "bogus"]))
        headers += f"Content-Disposition: {disp}; filename{draw(filenames())}\r\n"
    return headers.encode("utf-8", "surrogateescape") + b"\r\n" + _cte(content, cte)


def _node(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        kind = draw(st.sampled_from(["mixed", "alternative", "related", "rfc822"]))
        if kind == "rfc822":
            inner = draw(children)
            return b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + inner
        boundary = draw(st.sampled_from(["b1", "=_x", "a" * 70, "", "b1 b2", '"q"']))
        parts = draw(st.lists(children, max_size=4))
        close = draw(st.booleans())
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
        body += b"--" + boundary.encode() + b"--\r\n" if close else b""
        return (f"Content-Type: multipart/{kind}; boundary=\"{boundary}\"\r\n\r\n"
                f"preamble\r\n").encode() + body  # fmt: skip

    return build()


mime_trees = st.recursive(leaf(), _node, max_leaves=8)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A whole message: top-level headers (decoded-word tricks included) and a MIME tree."""
    headers = {
        "From": f"{draw(encoded_word_header())} <a@example.com>",
        "To": draw(st.sampled_from(["u@town.example.lg.jp", '"a, b" <u@town.example.lg.jp>',
                                    "=?utf-8?B?4pGg?= <u@town.example.lg.jp>, x@y"])),
        "Subject": draw(encoded_word_header()),
        "Message-ID": draw(st.sampled_from(["<m1@example.com>", "no brackets", "<a\r\n b>", ""])),
        "Date": "Mon, 2 Nov 2026 10:00:00 +0900",
        "X-Junk": draw(encoded_word_header()),
    }  # fmt: skip
    head = b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogateescape") for k, v in headers.items())
    body = draw(mime_trees)
    raw = head + b"MIME-Version: 1.0\r\n" + body
    if draw(st.booleans()):
        raw = raw.replace(b"\r\n", b"\n")
    # Mutations: a flipped byte or a cut, as a hostile sender or a broken relay would make.
    mutation = draw(st.sampled_from(["none", "none", "flip", "cut"]))
    if mutation != "none" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        if mutation == "flip":
            raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
        else:
            raw = raw[:at]
    return raw


# --- properties -------------------------------------------------------------------------------


@cache
def settings() -> Settings:
    return load_settings(None, sanitize={"max_parts": 50, "max_depth": 6})


META = JobMeta(
    id="fuzz0000000001",
    kind="mail",
    mail_from="a@example.com",
    rcpt_tos=("u@town.example.lg.jp",),
    peer="192.0.2.1",
    helo="fuzz.example",
)


def check_parse(raw: bytes) -> None:
    limits = settings().sanitize
    try:
        parse_message(
            raw,
            max_parts=limits.max_parts,
            max_depth=limits.max_depth,
            max_header_bytes=limits.max_header_bytes,
        )
    except Permanent:
        pass


def check_sanitize(raw: bytes) -> None:
    try:
        result = sanitize_message(raw, META, settings(), None)
    except Permanent:
        return
    check_delivered(result.data)


def check_header_text(raw: str) -> None:
    text = decode_header_value(raw)
    assert isinstance(text, str)
    assert "\r" not in text and "\n" not in text, repr(text)
    text.encode("utf-8")  # no lone surrogates reach the rebuild
    for name, addr in decode_address_list(raw):
        assert "\n" not in name + addr and "\r" not in name + addr
        (name + addr).encode("utf-8")


_JIS_VS_WINDOWS = str.maketrans("−〜‖¢£¬—", "－～∥￠￡￢―")


def check_body_roundtrip(text: str, codec: str) -> None:
    """Text a codec can carry, under that codec's usual label, comes back unchanged."""
    data = encode(text, codec)
    if codec != "cp50220" and data.decode(codec, "replace") != text:
        return  # not representable: nothing to check
    decoded, _ = charset.decode_bytes(data, _label(codec))
    # JIS X 0208 code points that Windows (cp932) maps to other Unicode characters than the
    # JIS tables do: decoding the Windows way is deliberate (that is what Japanese mail means).
    assert decoded.translate(_JIS_VS_WINDOWS) == text.translate(_JIS_VS_WINDOWS), (
        decoded,
        text,
        codec,
    )


def check_bytes(data: bytes, label: str) -> None:
    text, used = charset.decode_bytes(data, label)
    text.encode("utf-8")
    assert used


def safe_bytes_target(data: bytes) -> None:
    """The atheris entry point: raw bytes as a whole message, then as a header and a body."""
    check_parse(data)
    check_sanitize(data)
    check_header_text(data.decode("utf-8", "surrogateescape"))
    check_bytes(data, "iso-2022-jp")
