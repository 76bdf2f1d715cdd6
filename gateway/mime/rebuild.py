"""Build the message the LGWAN side receives (DESIGN.md §4.4)."""

from __future__ import annotations

import email.policy
import email.utils
import re
import time
from collections.abc import Iterable
from email.headerregistry import Address
from email.message import EmailMessage

from gateway.controls import strip_hidden
from gateway.model import CleanFile

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # incl. what str.splitlines() splits on
_MSGID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,500}>")  # printable ASCII only (RFC 5322)
# What we are willing to write back as an address: no specials, no whitespace, and nothing
# that looks like an encoded-word (those come from broken headers the parser mis-split).
_LOCAL = re.compile(r"^[^\s\"<>()\[\]\\,;:@]{1,64}$")
_DOMAIN = re.compile(r"^[^\s\"<>()\[\]\\,;:@=?]{1,253}$")
# SMTP policy: CRLF, RFC 2047/2231 for non-ASCII (the relay may not speak SMTPUTF8).
POLICY = email.policy.SMTP.clone(max_line_length=998)
SANITIZED_HEADER = "X-Mugai-Sanitized"


def _one_line(value: str, limit: int = 2000) -> str:
    """One header line: controls and line separators become spaces; every other hidden
    character (bidi overrides, zero-width, lone surrogates, private-use, unassigned) goes, as
    they only serve spoofing and trip the stdlib's header folding."""
    text = strip_hidden(_CTRL.sub(" ", value[: limit * 2]))
    return text.strip()[:limit]


def _addresses(pairs: list[tuple[str, str]]) -> list[Address]:
    out: list[Address] = []
    for raw_name, raw_addr in pairs[:200]:
        # A literal "=?" (left from a broken encoded-word) would be decoded again by the
        # header parser and can break folding; a space keeps it readable and inert.
        name = _one_line(raw_name, 200).replace("=?", "= ?")
        addr = _one_line(raw_addr, 320).strip("<> ")
        try:
            local, _, domain = addr.rpartition("@")
            if local and domain and ("=?" in local or not _LOCAL.match(local)):
                local = domain = ""  # not an address we can vouch for: keep the name only
            if domain and not _DOMAIN.match(domain):
                local = domain = ""
            if local and domain:
                out.append(Address(display_name=name, username=local, domain=domain))
            elif name:
                out.append(Address(display_name=name))
        except (ValueError, IndexError, TypeError):
            # An address the registry cannot represent is dropped from the header, never passed raw.
            continue
    return out


def _set_address_header(msg: EmailMessage, name: str, pairs: list[tuple[str, str]]) -> None:
    addrs = _addresses(pairs)
    if not addrs:
        return
    try:
        msg[name] = addrs
    except (ValueError, IndexError, TypeError):
        msg[name] = ", ".join(a.addr_spec for a in addrs if a.addr_spec)


def _msgids(value: str, limit: int) -> str:
    return " ".join(_MSGID.findall(value)[-limit:])


def build_message(
    *,
    headers: dict[str, str],
    addresses: dict[str, list[tuple[str, str]]],
    body: str,
    files: Iterable[CleanFile],
    mugai_id: str,
    tokens: Iterable[str],
    received: str,
    earlier: Iterable[str] = (),
) -> bytes:
    msg = EmailMessage(policy=POLICY)
    msg["Received"] = received
    for hop in earlier:  # our own verified earlier passes (gateway/loopmark.py)
        msg["Received"] = hop
    for key, header in (("from", "From"), ("to", "To"), ("cc", "Cc"), ("reply-to", "Reply-To")):
        if addresses.get(key):
            _set_address_header(msg, header, addresses[key])
    subject = _one_line(headers.get("subject", ""), 1000)
    if subject:
        # Decoded text that looks like an encoded-word is decoded once more by the reader's
        # client: encoding it ourselves does not help (the header registry decodes what it is
        # given and refolds it raw), so a double-encoded Subject showed text the disarmer never
        # saw, e.g. a live link. A space keeps it readable and inert (as for display names).
        msg["Subject"] = subject.replace("=?", "= ?")
    date = headers.get("date", "")
    try:
        parsed = email.utils.parsedate_to_datetime(_one_line(date)) if date else None
    except (TypeError, ValueError, IndexError):
        parsed = None
    msg["Date"] = (
        email.utils.format_datetime(parsed) if parsed else email.utils.formatdate(localtime=True)
    )
    message_id = _msgids(headers.get("message-id", ""), 1)
    if message_id:
        # Unchanged, so replies thread; set raw to keep it byte-identical.
        msg["Message-ID"] = message_id
    for key, header in (("in-reply-to", "In-Reply-To"), ("references", "References")):
        ids = _msgids(headers.get(key, ""), 50)
        if ids:
            msg[header] = ids
    msg["X-Mugai-Id"] = mugai_id
    msg[SANITIZED_HEADER] = " ".join(sorted(set(tokens))) or "NONE"
    msg["MIME-Version"] = "1.0"
    msg.set_content(body, charset="utf-8", cte="base64")
    for f in files:
        maintype, _, subtype = f.content_type.partition("/")
        if maintype == "text":
            msg.add_attachment(
                f.data.decode("utf-8"), subtype=subtype, charset="utf-8", cte="base64",
                filename=f.filename,
            )  # fmt: skip
        else:
            msg.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=f.filename)
    return msg.as_bytes(policy=POLICY)


def received_line(
    *, helo: str, peer: str, hostname: str, mugai_id: str, rcpt: str, loop_token: str = ""
) -> str:
    helo = re.sub(r"[^A-Za-z0-9.\-\[\]:]", "", helo)[:100] or "unknown"
    peer = re.sub(r"[^0-9A-Fa-f.:]", "", peer)[:64] or "unknown"
    for_part = f" for <{rcpt}>" if rcpt and "\n" not in rcpt else ""
    stamp = email.utils.formatdate(time.time(), localtime=True)
    # The loop token (gateway/loopmark.py) makes our hops unforgeable for the loop check.
    loop = f" (loop {loop_token})" if loop_token else ""
    return (
        f"from {helo} ([{peer}]) by {hostname} (mugai) with ESMTP id {mugai_id}{loop}"
        f"{for_part}; {stamp}"
    )


def build_withheld_notice(
    *, mail_from: str, rcpt: Iterable[str], text: str, mugai_id: str, hostname: str
) -> bytes:
    """A short notice to the recipients without any of the withheld message's content."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address("mugai", "postmaster", hostname)
    msg["To"] = ", ".join(rcpt)
    msg["Subject"] = "【配送保留】メールを保管しました / A message was withheld"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid("mugai", hostname)
    msg["X-Mugai-Id"] = mugai_id
    msg[SANITIZED_HEADER] = "WITHHELD"
    msg.set_content(text, charset="utf-8", cte="base64")
    return msg.as_bytes(policy=POLICY)
