"""Child process: an Outlook .msg (MS-OXMSG) on stdin → a MIME message (.eml) on stdout.

Runs only through ``gateway.sanitize.sandbox.run`` (see msg.py): olefile parses attacker
bytes here, never in the gateway. The output is untrusted as well: the parent gives it to the
ordinary .eml sanitizer, which parses it with its own bounds and sanitizes every attachment.

Why our own reader: extract-msg (the usual library) is GPL, which a proprietary product
cannot ship; olefile (BSD) reads the OLE container and the few MS-OXMSG properties we need
(subject, sender, recipients' display lists, date, plain/HTML/RTF body, attachments and
embedded messages) are simple to read from its streams.

argv: max_members max_bytes max_depth. Exit 0 with the message, 3 when a bound is exceeded
(message on stderr), any other failure exits non-zero.
"""

from __future__ import annotations

import re
import struct
import sys
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

import olefile

EXIT_LIMIT = 3
# Property ids (MS-OXPROPS) and types (MS-OXCDATA).
PT_STRING8, PT_UNICODE, PT_BINARY, PT_SYSTIME, PT_OBJECT = 0x001E, 0x001F, 0x0102, 0x0040, 0x000D
SUBJECT, SENDER_NAME, SENDER_EMAIL, SENDER_SMTP = 0x0037, 0x0C1A, 0x0C1F, 0x5D01
DISPLAY_TO, DISPLAY_CC, BODY, HTML, RTF = 0x0E04, 0x0E03, 0x1000, 0x1013, 0x1009
SUBMIT_TIME, DELIVERY_TIME, CODEPAGE, INTERNET_CPID = 0x0039, 0x0E06, 0x3FFD, 0x3FDE
ATTACH_DATA, ATTACH_FILENAME, ATTACH_LONG_FILENAME, ATTACH_MIME = 0x3701, 0x3704, 0x3707, 0x370E
ATTACH_METHOD, ATTACH_EMBEDDED = 0x3705, 5
_SUBSTG = "__substg1.0_"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class LimitExceeded(Exception):
    pass


class Budget:
    def __init__(self, members: int, total: int) -> None:
        self.members, self.total = members, total

    def take_member(self) -> None:
        self.members -= 1
        if self.members < 0:
            raise LimitExceeded("too many attachments")

    def take_bytes(self, n_bytes: int) -> None:
        self.total -= n_bytes
        if self.total < 0:
            raise LimitExceeded("contents over the unpacked size limit")


class MsgReader:
    """Properties of one message object: the root, or an embedded message's storage."""

    def __init__(self, ole: olefile.OleFileIO, prefix: list[str], budget: Budget) -> None:
        self.ole, self.prefix, self.budget = ole, prefix, budget
        self.codepage = "cp1252"
        cp = self._int_prop(INTERNET_CPID) or self._int_prop(CODEPAGE)
        if cp:
            self.codepage = {65001: "utf-8", 932: "cp932", 50220: "iso2022_jp"}.get(cp, f"cp{cp}")

    def _stream(self, name: str) -> bytes | None:
        path = [*self.prefix, name]
        if not self.ole.exists("/".join(path)):
            return None
        size = self.ole.get_size("/".join(path))
        self.budget.take_bytes(size)  # every byte we pull out counts against the bound
        with self.ole.openstream(path) as fh:
            return bytes(fh.read())

    def _fixed_props(self) -> dict[int, bytes]:
        """Fixed-size property values from the __properties_version1.0 stream (16-byte rows)."""
        path = [*self.prefix, "__properties_version1.0"]
        if not self.ole.exists("/".join(path)):
            return {}
        with self.ole.openstream(path) as fh:
            raw = fh.read(1 << 20)
        # MS-OXMSG 2.4.1: the header is 32 bytes for the top-level message, 24 for an
        # embedded message, 8 for attachment and recipient objects.
        if not self.prefix:
            header = 32
        elif self.prefix[-1].startswith(("__attach", "__recip")):
            header = 8
        else:
            header = 24
        out: dict[int, bytes] = {}
        for off in range(header, len(raw) - 15, 16):
            tag = struct.unpack_from("<I", raw, off)[0]
            out[tag] = raw[off + 8 : off + 16]
        return out

    def _int_prop(self, pid: int) -> int | None:
        value = self._fixed_props().get((pid << 16) | 0x0003)
        return struct.unpack("<i", value[:4])[0] if value else None

    def string(self, pid: int) -> str:
        data = self._stream(f"{_SUBSTG}{pid:04X}{PT_UNICODE:04X}")
        if data is not None:
            return data.decode("utf-16-le", "replace").rstrip("\x00")
        data = self._stream(f"{_SUBSTG}{pid:04X}{PT_STRING8:04X}")
        if data is not None:
            try:
                return data.decode(self.codepage, "replace").rstrip("\x00")
            except LookupError:
                return data.decode("cp1252", "replace").rstrip("\x00")
        return ""

    def binary(self, pid: int) -> bytes | None:
        return self._stream(f"{_SUBSTG}{pid:04X}{PT_BINARY:04X}")

    def time(self, pid: int) -> datetime | None:
        value = self._fixed_props().get((pid << 16) | PT_SYSTIME)
        if not value:
            return None
        ticks = struct.unpack("<Q", value)[0]  # 100 ns since 1601-01-01
        try:
            return datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)
        except OverflowError:
            return None

    def attachments(self) -> list[list[str]]:
        names = {
            e[len(self.prefix)]
            for e in self.ole.listdir(streams=True, storages=True)
            if len(e) > len(self.prefix)
            and e[: len(self.prefix)] == self.prefix
            and e[len(self.prefix)].startswith("__attach_version1.0_#")
        }
        return [[*self.prefix, n] for n in sorted(names)]


def _clean(value: str, limit: int = 2000) -> str:
    return _CONTROL.sub(" ", value).replace("\r", " ").replace("\n", " ").strip()[:limit]


def build(reader: MsgReader, depth: int, max_depth: int) -> EmailMessage:
    if depth > max_depth:
        raise LimitExceeded("embedded messages nested too deep")
    msg = EmailMessage(policy=policy.SMTP)
    name = _clean(reader.string(SENDER_NAME), 200)
    addr = _clean(reader.string(SENDER_SMTP) or reader.string(SENDER_EMAIL), 320)
    sender = f"{name} <{addr}>" if name and "@" in addr else (name or addr)
    for header, value in (
        ("From", sender),
        ("To", _clean(reader.string(DISPLAY_TO))),
        ("Cc", _clean(reader.string(DISPLAY_CC))),
        ("Subject", _clean(reader.string(SUBJECT), 1000)),
    ):
        if value:
            try:
                msg[header] = value
            except (ValueError, TypeError, IndexError):
                msg[header] = value.encode("ascii", "replace").decode()
    when = reader.time(SUBMIT_TIME) or reader.time(DELIVERY_TIME)
    if when is not None:
        msg["Date"] = format_datetime(when)
    html = reader.binary(HTML)
    html_text = reader.string(HTML) if html is None else ""
    body = reader.string(BODY)
    if html is not None:
        try:
            html_text = html.decode(reader.codepage, "replace")
        except LookupError:
            html_text = html.decode("cp1252", "replace")
    if html_text:
        msg.set_content(html_text, subtype="html")
    else:
        msg.set_content(body or "")
    if not html_text and not body:
        rtf = reader.binary(RTF)
        if rtf:
            _attach_rtf(msg, rtf)
    for path in reader.attachments():
        reader.budget.take_member()
        sub = MsgReader(reader.ole, path, reader.budget)
        method = sub._int_prop(ATTACH_METHOD)
        filename = _clean(sub.string(ATTACH_LONG_FILENAME) or sub.string(ATTACH_FILENAME), 255)
        embedded = [*path, f"{_SUBSTG}{ATTACH_DATA:04X}{PT_OBJECT:04X}"]
        if method == ATTACH_EMBEDDED and reader.ole.exists("/".join(embedded)):
            inner = build(MsgReader(reader.ole, embedded, reader.budget), depth + 1, max_depth)
            msg.add_attachment(inner)
            continue
        data = sub.binary(ATTACH_DATA)
        if data is None:
            continue  # by-reference or OLE-object attachments: nothing safe to pass on
        msg.add_attachment(
            data,
            maintype="application",
            subtype="octet-stream",
            filename=filename or "attachment.dat",
        )
    return msg


def _attach_rtf(msg: EmailMessage, compressed: bytes) -> None:
    try:
        from compressed_rtf import decompress

        rtf = decompress(compressed)
    except Exception:
        return  # a damaged RTF body: the rest of the message still goes through
    msg.add_attachment(rtf, maintype="application", subtype="rtf", filename="body.rtf")


def main(argv: list[str]) -> int:
    max_members, max_bytes, max_depth = (int(a) for a in argv[:3])
    data = sys.stdin.buffer.read(max_bytes + 1)
    try:
        ole = olefile.OleFileIO(data)
        if not ole.exists("__properties_version1.0"):
            print("not an Outlook message", file=sys.stderr)
            return 2
        msg = build(MsgReader(ole, [], Budget(max_members, max_bytes)), 0, max_depth)
    except LimitExceeded as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_LIMIT
    sys.stdout.buffer.write(msg.as_bytes(policy=policy.SMTP))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
