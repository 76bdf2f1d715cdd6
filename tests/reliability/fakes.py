"""Fault injection only: a misbehaving clamd, converters that fail in every way, /proc checks.

Everything else in the reliability tests is the real component.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from gateway.errors import ConversionFailed, ConversionTimeout, PartTooLarge
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize import sandbox
from gateway.sanitize.base import Context, Sanitizer
from gateway.sanitize.registry import REGISTRY
from tests import waiting

T = TypeVar("T")

# --- clamd ---------------------------------------------------------------------------------


@dataclass
class FakeClamd:
    """A TCP clamd that reads INSTREAM fully, then answers as told.

    mode: "ok" (``stream: OK``), "hang" (never answers until ``release()``), "garbage",
    "truncated" (``stream: OK`` without the NUL terminator, then close), "close" (no reply).
    """

    mode: str = "ok"
    server: asyncio.base_events.Server | None = None
    scans: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> FakeClamd:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    def hang(self) -> None:
        self.mode = "hang"
        self._released.clear()

    def release(self) -> None:
        self.mode = "ok"
        self._released.set()

    async def close(self) -> None:
        self._released.set()
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            command = await reader.readuntil(b"\0")
            if command == b"zINSTREAM\0":
                while True:  # read the whole stream, as clamd does
                    (size,) = struct.unpack(">I", await reader.readexactly(4))
                    if size == 0:
                        break
                    await reader.readexactly(size)
                self.scans += 1
            elif command != b"zPING\0":
                return
            # A broken clamd is broken for PING too (readiness must see it).
            if self.mode == "hang":
                await self._released.wait()
            ok = b"PONG\0" if command == b"zPING\0" else b"stream: OK\0"
            reply = {
                "ok": ok,
                "garbage": b"stream: maybe fine?\0",
                "truncated": ok[:-1],
                "close": b"",
            }.get(self.mode, ok)
            writer.write(reply)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


# --- converters ------------------------------------------------------------------------------

# Each fault, by the stem of the attachment's file name (one registry entry serves them all).
FAULTS = ("crash", "hang", "memory", "garbage", "huge", "bug")
_LIMITS = sandbox.Limits(seconds=2, memory_mb=256, max_output_bytes=1024 * 1024)


def _python(code: str) -> list[str]:
    # python -I -c CODE with the gateway's interpreter; sandboxed like every converter.
    return [sys.executable, "-I", "-c", code]


def fault_sanitizer(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    """A converter plugin that fails the way the file name says, through the real sandbox."""
    fault = filename.rsplit(".", 1)[0]
    if fault == "crash":  # the converter dies of a signal
        result = sandbox.run(
            _python("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"),
            stdin=data,
            limits=_LIMITS,
        )
        raise ConversionFailed(f"converter exited with {result.returncode}")
    if fault == "hang":  # never finishes: the wall clock kills its group
        result = sandbox.run(["sleep", "600"], stdin=b"", limits=_LIMITS)
        if result.killed == "timeout":
            raise ConversionTimeout("converter hung")
        raise ConversionFailed(f"hang fault ended with {result.returncode}")
    if fault == "memory":  # allocates far beyond RLIMIT_AS
        result = sandbox.run(_python("x = bytearray(2 * 1024 ** 3)"), stdin=b"", limits=_LIMITS)
        raise ConversionFailed(f"converter died ({result.killed or result.returncode})")
    if fault == "garbage":  # labels non-PDF bytes as a PDF: the registry must catch it
        return SanitizeResult(
            files=(CleanFile("garbage.pdf", "application/pdf", b"MZ\x90\x00 not a pdf"),),
            action=Action.CONVERTED,
        )
    if fault == "huge":  # writes without end: the output cap kills it
        result = sandbox.run(["yes"], stdin=b"", limits=_LIMITS)
        if result.killed == "output_too_large":
            raise PartTooLarge("converter output over its cap")
        raise ConversionFailed(f"huge fault ended with {result.killed or result.returncode}")
    if fault == "bug":  # a plain exception in our own code
        raise RuntimeError("sanitizer bug")
    raise AssertionError(f"unknown fault {fault}")


@contextlib.contextmanager
def faulty_registry(kinds: tuple[str, ...] = ("pdf",)) -> Iterator[None]:
    """Swap the registry entries for ``kinds`` with the fault plugin (restored afterwards)."""
    table: MutableMapping[str, Sanitizer] = REGISTRY  # type: ignore[assignment]
    saved = {k: table[k] for k in kinds}
    try:
        for k in kinds:
            table[k] = fault_sanitizer
        yield
    finally:
        table.update(saved)


def tiny_pdf() -> bytes:
    """A one-page PDF (what the fault plugin pretends to convert)."""
    import io

    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 200))
    buf = io.BytesIO()
    pdf.save(buf)
    return buf.getvalue()


# --- /proc ---------------------------------------------------------------------------------


def _stat(pid: str) -> tuple[str, str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    comm = raw[raw.find(b"(") + 1 : raw.rfind(b")")].decode("utf-8", "replace")
    fields = raw[raw.rfind(b")") + 2 :].split()
    return comm, fields[0].decode(), int(fields[1])


def descendants(root: int | None = None) -> list[tuple[int, str, str]]:
    """(pid, comm, state) of every process below ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    table: dict[int, list[tuple[int, str, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st is not None:
                comm, state, ppid = st
                table.setdefault(ppid, []).append((int(entry), comm, state))
    found: list[tuple[int, str, str]] = []
    stack = [root]
    while stack:
        for child in table.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def _trusted_encoders() -> set[int]:
    """The long-lived trusted page encoders (``sandbox.trusted_pool``: a multiprocessing
    forkserver and its workers). They are meant to stay; they are not converters."""
    from multiprocessing import forkserver, resource_tracker

    keep: set[int] = set()
    # The forkserver (whose children are the pool's workers) and multiprocessing's tracker.
    for pid in (
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    ):
        if pid:
            keep |= {pid} | {p for p, _, _ in descendants(pid)}
    return keep


def zombies_and_converters(root: int | None = None) -> list[tuple[int, str, str]]:
    """Children left behind: zombies, soffice, or the fault plugins' own programs."""
    suspicious = ("soffice", "oosplash", "sleep", "yes", "python")
    keep = _trusted_encoders()
    return [
        p
        for p in descendants(root)
        if p[0] not in keep and (p[2] == "Z" or any(p[1].startswith(s) for s in suspicious))
    ]


def orphan_soffice() -> set[int]:
    """soffice processes adopted by init (ppid 1): what a converter killed badly leaves behind.

    Other engineers' gateways may run soffice on the same machine, so only orphans count;
    our own children are covered by ``zombies_and_converters``.
    """
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st is not None and st[0].startswith(("soffice", "oosplash")) and st[2] == 1:
                found.add(int(entry))
    return found


def settle(check: Callable[[], T], seconds: float = 5.0) -> T:
    """Poll ``check`` until its result is empty (a SIGKILLed process takes a moment to go)."""
    return waiting.settle(check, timeout=seconds)
