"""Watching the far side of the gateway, to time when replayed messages reach the relay.

Two kinds of watch, matched by Message-ID (the gateway keeps it unchanged, DESIGN.md §4.4):
- ``smtp://HOST:PORT``: replay runs its own SMTP sink there; point the gateway's
  ``delivery.relay`` at it. Best for measuring the gateway alone: nothing downstream slows it.
- a Maildir path (or ``maildir:PATH``): files that appear in ``new/`` or ``cur/`` after the start,
  e.g. the gateway's demo outbox (``<data_dir>/outbox``) or a test mailbox behind the real relay.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.loadtest.headers import message_id
from gateway.loadtest.report import RelayResult

_HEAD_BYTES = 64 * 1024
_SINK_MAX_BYTES = 256 * 1024 * 1024
_POLL_SECONDS = 0.2


class WatchSpecError(ValueError):
    pass


class RelayWatch:
    """Arrival times (monotonic) by Message-ID; subclasses feed ``record``."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self._changed = asyncio.Event()

    def record(self, mid: str | None, when: float) -> None:
        if mid:
            self.arrivals[mid].append(when)
            self._changed.set()

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _complete(self, expected: Counter[str]) -> bool:
        return all(len(self.arrivals.get(mid, ())) >= n for mid, n in expected.items())

    async def wait(self, expected: Counter[str], timeout: float) -> None:
        """Until every expected message arrived (as often as it was accepted) or timeout."""
        try:
            async with asyncio.timeout(timeout):
                while not self._complete(expected):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass

    def result(self, expected: Counter[str], started: float) -> RelayResult:
        received = 0
        last: float | None = None
        for mid, n in expected.items():
            times = sorted(self.arrivals.get(mid, ()))[:n]
            received += len(times)
            if times:
                last = max(times[-1], last if last is not None else times[-1])
        total = sum(expected.values())
        seconds = None if received < total or last is None else max(0.0, last - started)
        return RelayResult(self.spec, total, received, seconds)


class _SinkHandler:
    def __init__(self, watch: SmtpSinkWatch) -> None:
        self._watch = watch

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        # Only the Message-ID is looked at; the content is dropped at once.
        self._watch.record(message_id(data[:_HEAD_BYTES]), time.monotonic())
        return "250 2.0.0 OK"


class _Sink(SMTP):
    line_length_limit = 1 << 20  # real mail has long lines; the gateway relays them


class SmtpSinkWatch(RelayWatch):
    def __init__(self, spec: str, host: str, port: int) -> None:
        super().__init__(spec)
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        handler = _SinkHandler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Sink(handler, decode_data=False, data_size_limit=_SINK_MAX_BYTES),
            self.host,
            self.port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


class MaildirWatch(RelayWatch):
    def __init__(self, spec: str, path: Path) -> None:
        super().__init__(spec)
        self.path = path
        self._known: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def _names(self) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = []
        for sub in ("new", "cur"):
            try:
                entries = os.listdir(self.path / sub)
            except OSError:  # not created yet
                continue
            # In cur/ a ":2,flags" suffix is added when a client reads the file: same message.
            out.extend((name.split(":", 1)[0], self.path / sub / name) for name in entries)
        return out

    def _scan(self) -> None:
        for key, file in self._names():
            if key in self._known:
                continue
            try:
                with file.open("rb") as fh:
                    head = fh.read(_HEAD_BYTES)
                mtime = file.stat().st_mtime
            except OSError:  # moved from new/ to cur/ meanwhile: seen on the next scan
                continue
            self._known.add(key)
            now = time.monotonic()
            when = min(now, now - (time.time() - mtime))
            self.record(message_id(head), when)

    async def _poll(self) -> None:
        while True:
            await asyncio.to_thread(self._scan)
            await asyncio.sleep(_POLL_SECONDS)

    async def start(self) -> None:
        # Whatever is there already belongs to earlier runs.
        self._known = {key for key, _ in self._names()}
        self._task = asyncio.create_task(self._poll())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


def parse_watch(spec: str) -> RelayWatch:
    if spec.startswith("smtp://"):
        hostport = spec[len("smtp://") :].rstrip("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise WatchSpecError(f"--wait-relay: expected smtp://HOST:PORT, got {spec!r}")
        return SmtpSinkWatch(spec, host.strip("[]"), int(port))
    raw = spec[len("maildir:") :] if spec.startswith("maildir:") else spec
    path = Path(raw)
    if path.exists() and not (path / "new").is_dir() and not (path / "cur").is_dir():
        raise WatchSpecError(f"--wait-relay: {raw} is not a Maildir (no new/ or cur/)")
    if not path.exists() and not path.parent.is_dir():
        raise WatchSpecError(f"--wait-relay: no such folder: {path.parent}")
    return MaildirWatch(spec, path)
