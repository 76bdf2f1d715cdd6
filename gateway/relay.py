"""Delivery to the LGWAN-side relay (SMTP) or, with no relay configured, a Maildir outbox.

4xx replies and connection trouble raise ``RelayTemporary`` (retry on the
schedule); 5xx raise ``RelayRejected`` (quarantine with the reply recorded; no
bounce to the Internet side, where senders are often forged).
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib

from gateway.errors import RelayRejected, RelayTemporary
from gateway.settings import split_hostport


@dataclass(frozen=True)
class DeliveryResult:
    accepted: tuple[str, ...]
    # Recipients refused for good (5xx): recorded, not retried.
    rejected: dict[str, str]
    # Recipients refused for now (4xx): the worker retries only these.
    deferred: dict[str, str]


class Relay(Protocol):
    async def send(
        self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes
    ) -> DeliveryResult: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, remembering whether this transaction's MAIL FROM was accepted."""

    mail_accepted = False

    async def mail(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        response = await super().mail(*args, **kwargs)
        self.mail_accepted = True
        return response


def _dead_before_mail(client: _Client, exc: BaseException) -> bool:
    """The reused session was gone before this transaction began, so resending is safe.

    Only when MAIL FROM itself failed — by a disconnect, a socket error, a timeout or a 421
    (service closing) — has nothing of this message reached the relay: no RCPT, no DATA, so
    no copy can have been accepted. Once MAIL FROM was accepted we never resend on this path:
    a disconnect after DATA's final dot may follow the relay's having queued the message, and
    only the existing retry schedule (RelayTemporary) may decide to send it again.
    """
    if client.mail_accepted:
        return False
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | OSError)


_IDLE_SECONDS = 30.0  # relays (Postfix: smtpd_timeout 300s) keep idle sessions longer
_MAX_IDLE = 16


class SmtpRelay:
    def __init__(
        self,
        address: str,
        *,
        hostname: str,
        timeout: float = 60.0,
        require_tls: bool = False,
        ca_file: Path | None = None,
    ) -> None:
        self.host, self.port = split_hostport(address, 25)
        self.hostname = hostname
        self.timeout = timeout
        self.require_tls = require_tls
        # TLS required ⇒ verified; never fall back to plaintext (aiosmtplib raises instead).
        self.tls_context = (
            ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if require_tls
            else None
        )
        self._idle: list[tuple[_Client, float]] = []

    def _client(self) -> _Client:
        return _Client(
            hostname=self.host,
            port=self.port,
            local_hostname=self.hostname,
            timeout=self.timeout,
            start_tls=self.require_tls,
            tls_context=self.tls_context,
        )

    async def _acquire(self) -> tuple[_Client, bool]:
        """A connected client and whether it is a reused one (no NOOP: see ``send``)."""
        now = time.monotonic()
        while self._idle:
            client, used = self._idle.pop()
            if now - used < _IDLE_SECONDS and client.is_connected:
                return client, True
            client.close()
        client = self._client()
        await client.connect()
        return client, False

    def _release(self, client: _Client) -> None:
        if len(self._idle) < _MAX_IDLE and client.is_connected:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    async def close(self) -> None:
        while self._idle:
            client, _ = self._idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def send(self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes) -> DeliveryResult:
        client: _Client | None = None
        try:
            # Connections are reused: connect, greeting, EHLO and QUIT per message cost more
            # round trips than the message itself on a LAN relay. No NOOP before reuse: a
            # session the relay dropped while idle shows as its MAIL FROM failing, and then
            # the send is retried once on a fresh connection.
            client, reused = await self._acquire()
            try:
                errors, _ = await self._sendmail(client, mail_from, rcpt_tos, data)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if not (reused and _dead_before_mail(client, exc)):
                    raise
                client.close()
                client = self._client()
                await client.connect()
                errors, _ = await self._sendmail(client, mail_from, rcpt_tos, data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if client is not None:
                client.close()  # session state unknown after a refusal: never reuse
            return self._split({r.recipient: (r.code, r.message) for r in exc.recipients}, ())
        except aiosmtplib.SMTPResponseException as exc:
            if client is not None:
                client.close()
            reply = f"{exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                raise RelayTemporary(reply) from exc
            raise RelayRejected(reply) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if client is not None:
                client.close()
            raise RelayTemporary(f"{type(exc).__name__}: {exc}") from exc
        self._release(client)
        refused = {rcpt: (resp.code, resp.message) for rcpt, resp in errors.items()}
        accepted = tuple(r for r in rcpt_tos if r not in refused)
        return self._split(refused, accepted)

    @staticmethod
    async def _sendmail(
        client: _Client, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        client.mail_accepted = False
        return await client.sendmail(mail_from, list(rcpt_tos), data)

    @staticmethod
    def _split(refused: dict[str, tuple[int, str]], accepted: tuple[str, ...]) -> DeliveryResult:
        rejected = {r: f"{c} {m}" for r, (c, m) in refused.items() if c >= 500}
        deferred = {r: f"{c} {m}" for r, (c, m) in refused.items() if c < 500}
        return DeliveryResult(accepted=accepted, rejected=rejected, deferred=deferred)

    async def ping(self) -> bool:
        client = self._client()
        try:
            await client.connect(timeout=5)
            await client.noop()
            await client.quit()
            return True
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return False


class MaildirRelay:
    """For demos: deliveries land in <data_dir>/outbox as a Maildir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    async def send(self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes) -> DeliveryResult:
        name = f"{time.time():.6f}.{os.getpid()}_{os.urandom(4).hex()}.{socket.gethostname()}"
        envelope = (
            f"Return-Path: <{mail_from}>\r\n"
            + "".join(f"X-Mugai-Envelope-To: <{r}>\r\n" for r in rcpt_tos)
        ).encode("ascii", "replace")
        tmp = self.root / "tmp" / name
        try:
            with open(tmp, "wb") as fh:
                fh.write(envelope + data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.root / "new" / name)
        except OSError as exc:
            raise RelayTemporary(f"outbox write failed: {exc}") from exc
        return DeliveryResult(accepted=tuple(rcpt_tos), rejected={}, deferred={})

    async def ping(self) -> bool:
        return os.access(self.root / "new", os.W_OK)

    async def close(self) -> None:
        return None
