"""The replay engine: a producer reading sources, N sender tasks sharing a token bucket.

Every SMTP step has a timeout and each transaction has an outer bound as well, so a gateway
that stalls, refuses or vanishes shows up in the counters and never hangs the run.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiosmtplib

from gateway.loadtest.headers import (
    header_recipients,
    header_sender,
    message_id,
    rewrite_recipient,
    with_message_id,
)
from gateway.loadtest.progress import NoProgress, ProgressSink
from gateway.loadtest.ratelimit import TokenBucket
from gateway.loadtest.relaywatch import RelayWatch
from gateway.loadtest.report import Stats
from gateway.loadtest.sources import Item, Message, Skip

log = logging.getLogger(__name__)

DEFAULT_SENDER = "mugai-replay@localhost"
ID_DOMAIN = "replay.mugai.invalid"
_BATCH_ITEMS = 32
_BATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class ReplayConfig:
    host: str
    port: int
    concurrency: int = 10
    rate: float | None = None  # messages per second over all senders
    limit: int | None = None  # messages to send (counting refused and failed ones)
    rcpt: str | None = None  # "user@dom" for every message, or "@dom" to keep local parts
    mail_from: str | None = None  # None: Return-Path, else From, of each message
    loop: bool = False  # repeat the sources with fresh Message-IDs until limit/timeout
    timeout: float | None = None  # the whole run, relay wait included
    smtp_timeout: float = 30.0  # each SMTP command
    reuse: int = 1  # messages per SMTP connection
    relay_timeout: float = 300.0
    starttls: bool = False
    helo: str = "mugai-replay.localhost"


@dataclass(frozen=True)
class Outgoing:
    origin: str
    mail_from: str
    rcpts: list[str]
    data: bytes
    message_id: str


def prepare(msg: Message, cfg: ReplayConfig, run_id: str, seq: int) -> Outgoing | Skip:
    """Envelope and bytes for one message; every message leaves with a Message-ID that can be
    looked for at the relay (fresh in loop mode, inserted where missing, as an MSA would)."""
    data = msg.data
    mid = None if cfg.loop else message_id(data)
    if mid is None:
        mid = f"{run_id}.{seq}@{ID_DOMAIN}"
        data = with_message_id(data, mid)
    rcpts = header_recipients(data)
    if cfg.rcpt:
        mapped = list(dict.fromkeys(rewrite_recipient(a, cfg.rcpt) for a in rcpts))
        fallback = f"replay{cfg.rcpt}" if cfg.rcpt.startswith("@") else cfg.rcpt
        rcpts = mapped or [fallback]
    if not rcpts:
        return Skip(msg.origin, "no_recipients")
    sender = cfg.mail_from if cfg.mail_from is not None else header_sender(data)
    if sender is None:
        sender = DEFAULT_SENDER
    return Outgoing(msg.origin, sender, rcpts, data, mid)


def classify(exc: BaseException) -> tuple[str, str]:
    """("refused", reply code) or ("error", kind) for a failed transaction."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return ("refused", str(codes[0])) if codes else ("error", "protocol")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # Greeting, HELO, MAIL, RCPT or DATA answered with a failure code.
        return "refused", str(exc.code)
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return "error", "connect_timeout"
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__
        if isinstance(cause, ConnectionRefusedError):
            return "error", "connect_refused"
        if isinstance(cause, aiosmtplib.SMTPServerDisconnected | ConnectionError):
            return "error", "disconnected"
        return "error", "connect_error"
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError too
        return "error", "timeout"
    if isinstance(exc, ConnectionError):  # SMTPServerDisconnected, reset, broken pipe
        return "error", "disconnected"
    if isinstance(exc, ssl.SSLError):
        return "error", "tls"
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return "error", "not_supported"
    if isinstance(exc, ValueError):
        return "error", "bad_address"
    if isinstance(exc, aiosmtplib.SMTPException):
        return "error", "protocol"
    if isinstance(exc, OSError):
        return "error", "os_error"
    return "error", "internal"


class _Run:
    def __init__(
        self,
        cfg: ReplayConfig,
        stats: Stats,
        progress: ProgressSink,
        expected: Counter[str],
    ) -> None:
        self.cfg = cfg
        self.stats = stats
        self.progress = progress
        self.expected = expected
        self.bucket = TokenBucket(cfg.rate) if cfg.rate else None
        self.queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(maxsize=2 * cfg.concurrency)
        self.run_id = f"{int(time.time())}.{secrets.token_hex(4)}"

    def _skip(self, skip: Skip) -> None:
        self.stats.skipped[skip.reason] += 1
        log.debug("skipped %s: %s", skip.origin, skip.reason)
        self.progress.update(self.stats)

    def _prepare(self, item: Item, seq: int) -> Outgoing | Skip:
        if isinstance(item, Skip):
            return item
        try:
            return prepare(item, self.cfg, self.run_id, seq)
        except Exception:  # header parsing of hostile input: skip it, never stop the run
            log.warning("cannot prepare %s", item.origin, exc_info=True)
            return Skip(item.origin, "unparseable")

    async def produce(self, items: Callable[[], Iterator[Item]]) -> None:
        seq = 0
        first_pass = True
        while True:
            queued = 0
            it = items()
            while batch := await asyncio.to_thread(_read_batch, it):
                for item in batch:
                    out = self._prepare(item, seq)
                    if isinstance(out, Skip):
                        if first_pass:  # in loop mode, count each bad input once
                            self._skip(out)
                        continue
                    await self.queue.put(out)
                    seq += 1
                    queued += 1
                    if self.cfg.limit is not None and seq >= self.cfg.limit:
                        return
            first_pass = False
            if not self.cfg.loop or queued == 0:
                return

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.smtp_timeout,
            start_tls=self.cfg.starttls,
            validate_certs=False,  # load tests target our own, often self-signed, gateway
            local_hostname=self.cfg.helo,
        )

    async def _close(self, client: aiosmtplib.SMTP | None, polite: bool) -> None:
        if client is None or not client.is_connected:
            return
        if polite:
            try:
                async with asyncio.timeout(self.cfg.smtp_timeout):
                    await client.quit()
                return
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
        client.close()

    def _count(self, outcome: str, detail: str, latency_ms: float | None = None) -> None:
        s = self.stats
        s.sent += 1
        if outcome == "accepted":
            s.accepted += 1
        elif outcome == "refused":
            s.refused[detail] += 1
        else:
            s.errors[detail] += 1
        if latency_ms is not None:
            s.latencies_ms.append(latency_ms)
        self.progress.update(s)

    async def _transaction(self, client: aiosmtplib.SMTP, out: Outgoing) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        try:
            # aiosmtplib times each command; this outer bound also covers a server that
            # trickles bytes to keep single reads alive.
            async with asyncio.timeout(cfg.smtp_timeout * (3 + len(out.rcpts))):
                rcpt_errors, _ = await client.sendmail(out.mail_from, out.rcpts, out.data)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            _, code = classify(exc)
            self._count("refused", code, (time.perf_counter() - t0) * 1000)
            return
        latency = (time.perf_counter() - t0) * 1000
        for response in rcpt_errors.values():
            self.stats.refused_recipients[str(response.code)] += 1
        self.expected[out.message_id] += 1
        self._count("accepted", "", latency)

    async def send(self) -> None:
        client: aiosmtplib.SMTP | None = None
        used = 0
        try:
            while True:
                out = await self.queue.get()
                if out is None:
                    break
                if self.bucket is not None:
                    await self.bucket.take()
                try:
                    if client is None or used >= self.cfg.reuse or not client.is_connected:
                        await self._close(client, polite=True)
                        client, used = self._client(), 0
                        async with asyncio.timeout(self.cfg.smtp_timeout * 3):
                            await client.connect()
                    used += 1
                    await self._transaction(client, out)
                except asyncio.CancelledError:
                    self._count("error", "aborted")  # in flight when --timeout or Ctrl-C hit
                    raise
                except Exception as exc:  # every failure is a counted outcome, never a crash
                    outcome, detail = classify(exc)
                    if detail in ("internal", "os_error"):
                        log.warning("replay of %s failed: %r", out.origin, exc)
                    self._count(outcome, detail)
                    # After a failure the session state is unknown: start a new one.
                    await self._close(client, polite=False)
                    client = None
        finally:
            await self._close(client, polite=False)


async def replay(
    items: Callable[[], Iterator[Item]],
    cfg: ReplayConfig,
    stats: Stats,
    progress: ProgressSink | None = None,
    watch: RelayWatch | None = None,
) -> Stats:
    """Replay what ``items()`` yields (called again for each pass with ``cfg.loop``).

    ``stats`` is filled in place, so a caller that is cancelled still has the partial counts.
    ``watch`` must already be started; it is waited on (bounded) but not closed here.
    """
    run = _Run(cfg, stats, progress or NoProgress(), Counter())
    stats.started = time.monotonic()
    deadline = None if cfg.timeout is None else stats.started + cfg.timeout
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            senders = [asyncio.create_task(run.send()) for _ in range(cfg.concurrency)]
            try:
                await run.produce(items)
                for _ in senders:
                    await run.queue.put(None)
                await asyncio.gather(*senders)
            finally:
                for task in senders:
                    task.cancel()
                await asyncio.gather(*senders, return_exceptions=True)
    except TimeoutError:
        stats.timed_out = True
    stats.finished = time.monotonic()
    if watch is not None:
        wait = cfg.relay_timeout
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        await watch.wait(run.expected, wait)
        stats.relay = watch.result(run.expected, stats.started)
    return stats


def _read_batch(it: Iterator[Item]) -> list[Item]:
    """A few items per thread hop (files are read off the event loop, so senders keep their
    timing); bounded in count and bytes."""
    batch: list[Item] = []
    size = 0
    for item in it:
        batch.append(item)
        size += len(item.data) if isinstance(item, Message) else 0
        if len(batch) >= _BATCH_ITEMS or size >= _BATCH_BYTES:
            break
    return batch


def _loop_time(deadline: float | None) -> float | None:
    """asyncio deadlines are on the loop clock; ours are time.monotonic()."""
    if deadline is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
