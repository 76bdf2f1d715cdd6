"""SMTP intake (aiosmtpd) on the running event loop.

Replies follow DESIGN.md §4.3: 250 only after the spool write is fsynced;
550 5.7.1 outside the accepted domains; 552 5.3.4 for size; 451 4.3.0 for any
trouble of ours (never aiosmtpd's ``500 Error: (ExcName)``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.errors import SpoolError
from gateway.metrics import SMTP_LIMITED, SMTP_REPLIES
from gateway.settings import Settings, split_hostport
from gateway.spool import JobMeta, Spool, new_id

log = logging.getLogger(__name__)

# local@domain with a plain local part: no source routes, no %-hacks, no bang paths,
# no quoted local parts hiding another "@" (classic open-relay tricks).
# No address may hold a control character (RFC 5321), and PostgreSQL cannot store a NUL: such a
# mail would be acknowledged, then fail to be recorded on every try, forever.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ADDRESS = re.compile(r"^[^\s@%!\"<>(),;:\\\[\]]{1,64}@([A-Za-z0-9.-]{1,253})$")

_REWRITES = (
    ("552 Error: message size", "552 5.3.4 Message size exceeds fixed maximum message size"),
    ("552 Error: Too much mail data", "552 5.3.4 Message too big for this gateway"),
    ("500 Error: (", "451 4.3.0 Temporary local problem, try again later"),
    ("500 Error: Cannot describe", "451 4.3.0 Temporary local problem, try again later"),
)


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with our reply codes and fairness limits (issue 13): connections in
    total and per client address, commands per session and session duration. Over a limit
    that one client gets ``421 4.7.0`` and is disconnected; nobody else is affected."""

    line_length_limit = 65_536  # replaced per instance from settings, see make_protocol
    active_connections = 0
    max_connections = 200
    max_per_client = 50
    max_commands = 20_000
    max_session_seconds = 3600.0
    per_client: dict[str, int] = {}  # replaced per server (start_smtp)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = ""
        self._commands = 0
        self._expiry: asyncio.TimerHandle | None = None
        self._counted = False
        self._refused = True  # until connection_made admits it
        # Count every recognised command (aiosmtpd dispatches through this table; unknown
        # ones are bounded by its own bogus-command budget).
        self._smtp_methods = {
            name: self._counting(method) for name, method in self._smtp_methods.items()
        }

    def _counting(self, method: Callable[[str | None], Awaitable[None]]) -> Any:
        async def counted(arg: str | None) -> None:
            self._commands += 1
            if self._commands > self.max_commands:
                await self._limit("commands", "Too many commands in one session")
                return
            await method(arg)

        return counted

    async def _limit(self, limit: str, text: str) -> None:
        SMTP_LIMITED.labels(limit).inc()
        log.warning("job=- smtp client %s over the %s limit; disconnected", self._client, limit)
        await super().push(f"421 4.7.0 {text}, try again later")
        if self.transport is not None:
            self.transport.close()

    def _expire(self) -> None:
        SMTP_LIMITED.labels("duration").inc()
        log.warning("job=- smtp client %s over the session duration; disconnected", self._client)
        transport = self.transport
        if transport is not None:
            write = getattr(transport, "write", None)
            if write is not None:
                write(b"421 4.7.0 Session too long, try again later\r\n")
            transport.close()

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        for prefix, replacement in _REWRITES:
            if text.startswith(prefix):
                text = replacement
                break
        await super().push(text)

    def _refuse(self, transport: asyncio.BaseTransport, limit: str, text: str) -> None:
        SMTP_LIMITED.labels(limit).inc()
        write = getattr(transport, "write", None)
        if write is not None:
            write(f"421 4.7.0 {text}, try again later\r\n".encode())
        transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._counted:
            # STARTTLS hands the same session a new transport: not a new connection.
            super().connection_made(transport)
            return
        cls = type(self)
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        if cls.active_connections >= self.max_connections:
            # Slowloris or a flood: refuse before any session state is built.
            self._refuse(transport, "connections", "Too many connections")
            return
        if cls.per_client.get(client, 0) >= self.max_per_client:
            # One client holding many slots must not lock the others out.
            log.warning("job=- smtp client %s over the per-client connection limit", client)
            self._refuse(transport, "per_client", "Too many connections from your address")
            return
        self._refused = False
        self._counted = True
        self._client = client
        cls.active_connections += 1
        cls.per_client[client] = cls.per_client.get(client, 0) + 1
        self._expiry = asyncio.get_running_loop().call_later(self.max_session_seconds, self._expire)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._refused = True  # count each connection once
        cls = type(self)
        cls.active_connections -= 1
        left = cls.per_client.get(self._client, 1) - 1
        if left > 0:
            cls.per_client[self._client] = left
        else:
            cls.per_client.pop(self._client, None)
        if self._expiry is not None:
            self._expiry.cancel()
        super().connection_lost(error)


class IntakeHandler:
    def __init__(self, settings: Settings, spool: Spool, on_queued: asyncio.Event) -> None:
        self.settings = settings
        self.spool = spool
        self.on_queued = on_queued
        self.domains = frozenset(settings.smtp.accepted_domains)
        self._depth = 0
        self._depth_at = 0.0

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # SIZE= was already checked by aiosmtpd against data_size_limit (its reply is
        # rewritten to 552 5.3.4 in GatewaySMTP.push).
        if _CONTROL.search(address):
            return "553 5.1.7 Bad sender address syntax"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if _CONTROL.search(address):
            return "553 5.1.3 Bad recipient address syntax"
        match = _ADDRESS.match(address)
        if not match or match.group(1).lower().rstrip(".") not in self.domains:
            return "550 5.7.1 Relaying denied"
        if len(envelope.rcpt_tos) >= self.settings.smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    def _backlog(self) -> int:
        # Counting the spool is a directory scan: refresh at most once a second.
        now = time.monotonic()
        if now - self._depth_at > 1.0:
            self._depth = self.spool.depth()
            self._depth_at = now
        return self._depth

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._data(session, envelope)
        SMTP_REPLIES.labels(reply[:3]).inc()
        return reply

    async def _data(self, session: Session, envelope: Envelope) -> str:
        job_id = new_id()
        try:
            if not envelope.rcpt_tos:
                return "503 5.5.1 No valid recipients"
            if self._backlog() >= self.settings.smtp.max_backlog:
                log.warning(
                    "job=%s refused: backlog over %s", job_id, self.settings.smtp.max_backlog
                )
                return "451 4.3.0 Backlog too large, try again later"
            data = envelope.original_content or b""
            if len(data) > self.settings.smtp.max_message_bytes:
                return "552 5.3.4 Message too big for this gateway"
            peer = session.peer
            sender = str(envelope.mail_from or "")
            meta = JobMeta(
                id=job_id,
                kind="mail",
                # aiosmtpd keeps the null sender (bounces, DSNs) as "<>": spool it empty.
                mail_from="" if sender.strip() == "<>" else sender,
                rcpt_tos=tuple(envelope.rcpt_tos),
                peer=str(peer[0]) if isinstance(peer, tuple) else str(peer or ""),
                helo=str(session.host_name or ""),
            )
            await asyncio.to_thread(self.spool.put, meta, data)
            self._depth += 1
        except SpoolError as exc:
            log.error("job=%s spool write failed: %s", job_id, exc.detail)
            return "451 4.3.0 Temporary local problem, try again later"
        except Exception:  # noqa: BLE001 - any bug of ours is a tempfail, never a 250 or a 500
            log.exception("job=%s intake failed", job_id)
            return "451 4.3.0 Temporary local problem, try again later"
        log.info("job=%s queued size=%d rcpts=%d", job_id, len(data), len(envelope.rcpt_tos))
        self.on_queued.set()
        return f"250 2.0.0 queued as {job_id}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp session error: %s", type(error).__name__)
        return "451 4.3.0 Temporary local problem, try again later"


class TlsProvider:
    """The STARTTLS context, reloaded when the certificate or key file changes on disk,
    so a renewed certificate takes effect for new connections without a restart."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._stamp: tuple[int, int] | None = None
        self._ctx: ssl.SSLContext | None = None

    def _mtimes(self) -> tuple[int, int]:
        return self.cert.stat().st_mtime_ns, self.key.stat().st_mtime_ns

    def current(self) -> ssl.SSLContext:
        try:
            stamp = self._mtimes()
        except OSError:
            stamp = self._stamp or (0, 0)
        if self._ctx is None or stamp != self._stamp:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(str(self.cert), str(self.key))
            except (OSError, ssl.SSLError):
                if self._ctx is None:
                    raise
                # A half-written renewal: keep serving the previous certificate.
                log.warning("job=- TLS reload failed; keeping the previous certificate")
                return self._ctx
            if self._ctx is not None:
                log.info("job=- TLS certificate reloaded")
            self._ctx, self._stamp = ctx, stamp
        return self._ctx


def tls_provider(settings: Settings) -> TlsProvider | None:
    if settings.tls.cert_file and settings.tls.key_file:
        provider = TlsProvider(settings.tls.cert_file, settings.tls.key_file)
        provider.current()  # a broken certificate stops the start, not the first client
        return provider
    return None


async def start_smtp(
    settings: Settings, spool: Spool, on_queued: asyncio.Event
) -> asyncio.base_events.Server:
    """Listen on ``smtp.listen`` (port 0 picks a free port: see ``server.sockets``)."""
    handler = IntakeHandler(settings, spool, on_queued)
    host, port = split_hostport(settings.smtp.listen, 25)
    tls = tls_provider(settings)
    cfg = settings.smtp

    class Protocol(GatewaySMTP):
        line_length_limit = cfg.max_line_bytes
        max_connections = cfg.max_connections
        max_per_client = cfg.max_connections_per_client
        max_commands = cfg.max_commands
        max_session_seconds = cfg.max_session_duration
        active_connections = 0
        per_client: dict[str, int] = {}  # noqa: RUF012 - per server, on purpose

    def factory() -> GatewaySMTP:
        kwargs: dict[str, Any] = dict(
            data_size_limit=cfg.max_message_bytes,
            hostname=cfg.hostname,
            ident="mugai ESMTP",
            decode_data=False,
            enable_SMTPUTF8=True,
            timeout=cfg.command_timeout,
            tls_context=tls.current() if tls is not None else None,
            require_starttls=False,
        )
        return Protocol(handler, **kwargs)

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port)
