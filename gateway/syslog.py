"""Forward audit entries and per-message verdicts to a SIEM as RFC 5424 syslog.

Transports: UDP (RFC 5426, one message per datagram), TCP (RFC 6587 octet counting, so a
value can never split or forge a record) and a unix socket (datagram, else stream).

What is sent is read back from the database, not hooked into the writers: the forwarder
tails ``audit_log`` by ``seq`` and ``messages`` by ``(updated_at, id)`` and keeps its cursor
in ``<data_dir>/syslog.cursor``. So the mail flow never waits on (or fails with) the SIEM, an
unreachable receiver loses nothing over TCP/unix (the cursor stays put and the entries are
sent once it is back: at least once), and a restart resumes where it stopped. UDP cannot
tell a dead receiver; that is the protocol's choice and the operator's (docs/operations.md).

Only identifiers, addresses, statuses, reasons and counts are sent, never a subject or a
body (the project rule for logs). Every field is bounded: header fields to RFC 5424's
lengths and printable ASCII, parameter values escaped (``"`` ``\\`` ``]``) and stripped of
control characters, and the whole message kept under ``[syslog] max_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

from sqlalchemy import and_, func, or_, select

from gateway.controls import visible
from gateway.settings import Settings, SyslogSettings
from gateway.store.models import AuditRow, MessageRow
from gateway.store.repository import Store, utc
from gateway.vocab import FINAL_STATUSES, MessageStatus

log = logging.getLogger(__name__)

# RFC 5612's documentation enterprise number: the SD-IDs need an "@<number>" form and mugai
# has no IANA number of its own; SIEM parsers match on the full SD-ID either way.
ENTERPRISE = 32473
NILVALUE = "-"
_MAX_PARAM = 512
_BATCH = 500


class Severity(IntEnum):
    WARNING = 4
    NOTICE = 5
    INFO = 6


FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip

_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def _header_field(value: str, limit: int) -> str:
    clean = _NOT_PRINTUSASCII.sub("_", value)[:limit]
    return clean or NILVALUE


def _param_value(value: object) -> str:
    text = visible(str(value))  # no new record (CR/LF, NEL), no bidi reordering in the SIEM
    if len(text) > _MAX_PARAM:
        text = text[: _MAX_PARAM - 1] + "…"  # cut visibly, so a SIEM rule can tell
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@dataclass(frozen=True)
class Event:
    severity: Severity
    msgid: str  # AUDIT | VERDICT
    sd_id: str  # "audit" | "verdict" (the @ENTERPRISE is added)
    params: tuple[tuple[str, str], ...]
    msg: str = ""
    at: datetime | None = None


def format_rfc5424(
    event: Event, *, facility: int, hostname: str, app_name: str, max_bytes: int
) -> bytes:
    """One syslog message; params are shortened (longest first) until it fits ``max_bytes``."""
    at = (event.at or datetime.now(UTC)).astimezone(UTC)
    header = "<{}>1 {} {} {} {} {} ".format(
        facility * 8 + int(event.severity),
        at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        _header_field(hostname, 255),
        _header_field(app_name, 48),
        _header_field(str(os.getpid()), 128),
        _header_field(event.msgid, 32),
    )
    values = [_param_value(v) for _, v in event.params]
    names = [_header_field(k, 32).replace("=", "_").replace('"', "_").replace("]", "_")
             for k, _ in event.params]  # fmt: skip
    msg = visible(event.msg)
    while True:
        sd = "[{}@{}{}]".format(
            _header_field(event.sd_id, 20),
            ENTERPRISE,
            "".join(f' {n}="{v}"' for n, v in zip(names, values, strict=True)),
        )
        body = header.encode() + sd.encode()
        if msg:
            body += b" \xef\xbb\xbf" + msg.encode()  # RFC 5424: UTF-8 MSG starts with a BOM
        if len(body) <= max_bytes:
            return body
        if msg:
            msg = ""
            continue
        longest = max(range(len(values)), key=lambda i: len(values[i]), default=-1)
        if longest < 0 or len(values[longest]) <= 8:
            return body[:max_bytes]  # only a pathological header gets here
        cut = values[longest][: len(values[longest]) // 2]
        values[longest] = cut.rstrip("\\") + "…"


def audit_event(row: AuditRow) -> Event:
    detail = json.dumps(row.detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return Event(
        Severity.NOTICE,
        "AUDIT",
        "audit",
        (
            ("seq", str(row.seq)),
            ("actor", row.actor),
            ("action", row.action),
            ("target", row.target),
            ("hash", row.hash),
            ("detail", detail),
        ),
        at=datetime.fromisoformat(row.at),
    )


def verdict_event(row: MessageRow) -> Event:
    severity = (
        Severity.WARNING
        if row.status in (MessageStatus.QUARANTINED, MessageStatus.WITHHELD)
        else Severity.INFO
    )
    return Event(
        severity,
        "VERDICT",
        "verdict",
        (
            ("job", row.id),
            ("kind", row.kind),
            ("status", row.status),
            ("reasons", ",".join(row.reasons or [])[:_MAX_PARAM]),
            ("from", row.mail_from),
            ("rcpts", str(len(row.rcpt_tos or []))),
            ("size", str(row.size)),
            ("sha256", row.sha256),
            ("signature", str((row.scan or {}).get("signature", ""))),
            ("auth", str(((row.scan or {}).get("auth") or {}).get("overall", ""))),
        ),
        at=utc(row.updated_at),
    )


class Transport:
    """A connected socket to the receiver; raises OSError when it cannot send."""

    def __init__(self, target: str, timeout: float) -> None:
        self.scheme, _, rest = target.partition(":")
        self.rest = rest
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.scheme == "unix":
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = socket.socket(socket.AF_UNIX, kind)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self.rest)
                    return sock
                except OSError as exc:
                    sock.close()
                    if getattr(exc, "errno", None) != 91:  # EPROTOTYPE: a stream socket
                        raise
            raise OSError("unix socket accepts neither datagrams nor streams")
        from gateway.settings import split_hostport

        host, port = split_hostport(self.rest, 514)
        kind = socket.SOCK_DGRAM if self.scheme == "udp" else socket.SOCK_STREAM
        info = socket.getaddrinfo(host, port, type=kind)[0]
        sock = socket.socket(info[0], kind)
        sock.settimeout(self.timeout)
        try:
            sock.connect(info[4])
        except OSError:
            sock.close()
            raise
        return sock

    def send(self, data: bytes) -> None:
        if self.sock is None:
            self.sock = self._connect()
        try:
            if self.sock.type == socket.SOCK_STREAM:
                # RFC 6587 octet counting: the length prefix frames the record.
                self.sock.sendall(str(len(data)).encode() + b" " + data)
            else:
                self.sock.send(data)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


@dataclass
class Cursor:
    audit_seq: int = 0
    msg_at: str = ""  # ISO UTC of the last forwarded verdict's updated_at
    msg_id: str = ""

    @classmethod
    def load(cls, path: Path) -> Cursor | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["audit_seq"]), str(data["msg_at"]), str(data["msg_id"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # A damaged cursor must not silently skip or replay everything: say so, and
            # start at the current end (what a fresh installation does).
            log.error("job=- syslog cursor %s unreadable; starting at the current end", path)
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.__dict__, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class SyslogForwarder:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.cfg: SyslogSettings = settings.syslog
        self.hostname = self.cfg.hostname or settings.smtp.hostname
        self.store = store
        self.path = settings.storage.data_dir / "syslog.cursor"
        self.transport = Transport(self.cfg.target, self.cfg.timeout)
        self.facility = FACILITIES[self.cfg.facility]
        self._stop = asyncio.Event()

    def _current_end(self) -> Cursor:
        with self.store.db.read() as s:
            seq = s.scalar(select(func.max(AuditRow.seq))) or 0
            last = s.execute(
                select(MessageRow.updated_at, MessageRow.id)
                .order_by(MessageRow.updated_at.desc(), MessageRow.id.desc())
                .limit(1)
            ).first()
        if last is None:
            return Cursor(int(seq))
        return Cursor(int(seq), utc(last[0]).isoformat(), str(last[1]))

    def cursor(self) -> Cursor:
        cur = Cursor.load(self.path)
        if cur is None:
            # Enabling syslog does not flood the SIEM with years of history.
            cur = self._current_end()
            cur.save(self.path)
        return cur

    def _send(self, event: Event) -> None:
        self.transport.send(
            format_rfc5424(
                event,
                facility=self.facility,
                hostname=self.hostname,
                app_name=self.cfg.app_name,
                max_bytes=self.cfg.max_bytes,
            )
        )

    def poll_once(self) -> int:
        """Forward what is new; returns how many were sent. Raises OSError on a send failure
        after saving the cursor of what did go out."""
        cur = self.cursor()
        sent = 0
        try:
            with self.store.db.read() as s:
                audits: Sequence[AuditRow] = list(
                    s.scalars(
                        select(AuditRow)
                        .where(AuditRow.seq > cur.audit_seq)
                        .order_by(AuditRow.seq)
                        .limit(_BATCH)
                    )
                )
            for row in audits:
                self._send(audit_event(row))
                cur.audit_seq = row.seq
                sent += 1
            stmt = select(MessageRow).where(MessageRow.status.in_(sorted(FINAL_STATUSES)))
            if cur.msg_at:
                at = datetime.fromisoformat(cur.msg_at)
                stmt = stmt.where(
                    or_(
                        MessageRow.updated_at > at,
                        and_(MessageRow.updated_at == at, MessageRow.id > cur.msg_id),
                    )
                )
            with self.store.db.read() as s:
                msgs: Sequence[MessageRow] = list(
                    s.scalars(stmt.order_by(MessageRow.updated_at, MessageRow.id).limit(_BATCH))
                )
            for msg in msgs:
                self._send(verdict_event(msg))
                cur.msg_at, cur.msg_id = utc(msg.updated_at).isoformat(), msg.id
                sent += 1
        finally:
            cur.save(self.path)
        return sent

    async def run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                n = await asyncio.to_thread(self.poll_once)
                if failing:
                    log.info("job=- syslog receiver %s reachable again", self.cfg.target)
                failing = False
                if n >= _BATCH:
                    continue  # more waiting: no pause
            except OSError as exc:
                if not failing:
                    log.error("job=- syslog receiver %s: %s; will retry", self.cfg.target, exc)
                failing = True
            except Exception:  # noqa: BLE001 - a database hiccup must not end forwarding
                log.exception("job=- syslog forwarding failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.cfg.interval)

    def stop(self) -> None:
        self._stop.set()
        self.transport.close()
