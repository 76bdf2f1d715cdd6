"""Word/Excel/PowerPoint/ODF/RTF: LibreOffice → PDF in the sandbox, then pixels only.

``OfficePool`` keeps ``size`` warm ``soffice`` listeners, each in its own sandbox
(network namespace, process group, rlimits) with its own throw-away user profile,
listening on a named UNO pipe (a Unix socket in /tmp: no TCP port, and reachable from
another network namespace). A document is converted by a one-shot UNO driver
(``uno_worker.py`` on the system python, which has python3-uno) run through
``sandbox.run``; soffice itself stays up, which is what makes it warm (~0.2 s against
~1.4 s for a cold ``soffice --convert-to``; a persistent driver would need a
``sandbox.spawn`` with pipes). On timeout or crash the worker's whole process group is
killed and a new one started; after ``recycle_after`` documents it is restarted anyway
to bound leaks.

``sanitize_office`` is the sanitizer: convert, then hand the PDF to the PDF renderer,
so what leaves is page images and nothing of the original (macros included).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import queue
import secrets
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from gateway.errors import (
    ConversionFailed,
    ConversionTimeout,
    ConverterBusy,
    Encrypted,
    PartTooLarge,
    UnsupportedType,
)
from gateway.model import Action, Detected, SanitizeResult
from gateway.sanitize import jail, pdf, sandbox
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name
from gateway.sanitize.sandbox import Limits, NetworkMode
from gateway.sanitize.sheet_notes import reasons_and_detail, record_notes, take_notes  # issue 16
from gateway.settings import SanitizeSettings

log = logging.getLogger(__name__)

SOFFICE = "soffice"
SYSTEM_PYTHON = "/usr/bin/python3"  # python3-uno is packaged for Debian's interpreter only
DRIVER = str(Path(__file__).with_name("uno_worker.py"))

_SOFFICE_FLAGS = (
    "--headless",
    "--invisible",
    "--nologo",
    "--norestore",
    "--nodefault",
    "--nofirststartwizard",
)
_STARTUP_SECONDS = 60.0
_TERMINATE_SECONDS = 10.0
_DRIVER_MEMORY_MB = 1024
_DRIVER_OUTPUT_BYTES = 64 * 1024
# RLIMIT_CPU is cumulative over a listener's life; the per-document wall clock and
# recycling bound the real use, this only stops a runaway that escapes both.
_LISTENER_CPU_SECONDS = 6 * 3600
# RLIMIT_NPROC per jail (its own user namespace): soffice runs a few dozen threads.
_LISTENER_PROCESSES = 512
_DRIVER_PROCESSES = 64
_PIPE_DIR = Path("/tmp")  # where LibreOffice's osl layer puts its pipe sockets (no jail)

# Detected kind → file suffix LibreOffice sees (its type detection uses it as a hint).
SUFFIXES: dict[str, str] = {
    kind: kind
    for kind in (
        "doc", "docx", "docm", "dot", "dotx", "dotm",
        "xls", "xlsx", "xlsm", "xlsb", "xlt", "xltx", "xltm",
        "ppt", "pptx", "pptm", "pps", "ppsx", "ppsm", "pot", "potx", "potm",
        "odt", "ods", "odp", "odg", "rtf",
    )
}  # fmt: skip

# Seeded into each fresh profile: no macros whatever the load call says, links never
# updated (Writer 0 = never, Calc 1 = never), no recovery data written.
_REGISTRY = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update">\
<prop oor:name="Link" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update">\
<prop oor:name="Link" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Recovery/AutoSave">\
<prop oor:name="Enabled" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Recovery/RecoveryInfo">\
<prop oor:name="Enabled" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc">\
<prop oor:name="FirstRun" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""


# --- helpers ---------------------------------------------------------------------------------


def _seed_profile(profile: Path) -> str:
    """A fresh user profile with our security settings; returns its file URL."""
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(_REGISTRY, encoding="utf-8")
    return profile.as_uri()


def _pipe_sockets(pipe: str | None, profile_url: str, pipe_dir: Path = _PIPE_DIR) -> list[Path]:
    """Socket files soffice leaves in /tmp when it is killed rather than closed.

    Besides the accept pipe there is the single-instance pipe, named after the MD5 of
    the profile URL in UTF-16 with each byte in unpadded hex (LibreOffice's own recipe).
    """
    uid = os.getuid()
    digest = hashlib.md5(profile_url.encode("utf-16-le"), usedforsecurity=False).digest()
    ipc = "".join(format(b, "x") for b in digest)
    paths = [pipe_dir / f"OSL_PIPE_{uid}_SingleOfficeIPC_{ipc}"]
    if pipe is not None:
        paths.append(pipe_dir / f"OSL_PIPE_{uid}_{pipe}")
    return paths


# The worker's directory is bound read-write into the jail: below it, every name may be a
# symlink or FIFO planted by a compromised soffice. The trusted side opens the directory and
# the file with O_NOFOLLOW and only reads or writes regular files it opened itself.
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Tampered(ConversionFailed):
    """What only a compromised soffice leaves behind: the worker is replaced."""


def _jail_dir_fd(directory: Path) -> int:
    try:
        return os.open(directory, _NOFOLLOW_DIR)
    except OSError as exc:
        raise _Tampered("LibreOffice work directory was tampered with") from exc


def _write_input(path: Path, data: bytes) -> None:
    """Write the document as a new regular file ``path`` (whatever the jail left there)."""
    dir_fd = _jail_dir_fd(path.parent)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name, dir_fd=dir_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path.name, flags, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise _Tampered("LibreOffice work directory was tampered with") from exc
        with open(fd, "wb") as fh:
            fh.write(data)
    finally:
        os.close(dir_fd)


def _remove(path: Path) -> None:
    """Unlink ``path`` itself, never through a symlinked parent directory."""
    try:
        dir_fd = _jail_dir_fd(path.parent)
    except _Tampered:
        return
    try:
        with contextlib.suppress(OSError):
            os.unlink(path.name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _read_pdf(path: Path, max_bytes: int) -> bytes:
    """LibreOffice sometimes reports success and writes nothing: check what is there."""
    dir_fd = _jail_dir_fd(path.parent)
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path.name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ConversionFailed("LibreOffice produced no output") from None
    except OSError as exc:  # ELOOP: a symlink
        raise _Tampered("LibreOffice output is not a regular file") from exc
    finally:
        os.close(dir_fd)
    with open(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Tampered("LibreOffice output is not a regular file")
        if info.st_size > max_bytes:
            raise PartTooLarge(f"converted PDF is larger than {max_bytes} bytes")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PartTooLarge(f"converted PDF is larger than {max_bytes} bytes")
    if not data.startswith(b"%PDF-"):
        raise ConversionFailed("LibreOffice output is not a PDF")
    return data


def _last_reply(stdout: bytes) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "ok" in obj:
            return obj
    return None


def _short(text: object) -> str:
    """A driver-supplied string, bounded and printable, for a reason detail."""
    return "".join(ch for ch in str(text)[:80] if ch.isprintable())


# --- one warm listener -----------------------------------------------------------------------


class _Worker:
    """One soffice listener; used by one thread at a time (the pool's queue)."""

    def __init__(self, index: int, pool: OfficePool) -> None:
        self.index = index
        self._pool = pool
        self._lock = threading.Lock()  # convert vs close
        self.proc: subprocess.Popen[bytes] | None = None
        self.pipe = ""
        self._dir: Path | None = None
        self._profile_url = ""
        self.docs = 0
        self._generation = 0

    # lifecycle
    def start(self) -> None:
        """Spawn soffice (returns at once; readiness is awaited before the next document)."""
        self._generation += 1
        self._dir = self._pool.work_dir() / f"w{self.index}-{self._generation}"
        (self._dir / "io").mkdir(parents=True)
        _seed_profile(self._dir / "profile")
        self._profile_url = self._pool.inside(self._dir, self._dir / "profile").as_uri()
        self.pipe = f"mugai_{os.getpid()}_{self.index}_{self._generation}_{secrets.token_hex(4)}"
        self.docs = 0
        self.proc = sandbox.spawn(
            [
                SOFFICE,
                *_SOFFICE_FLAGS,
                f"--accept=pipe,name={self.pipe};urp;",
                f"-env:UserInstallation={self._profile_url}",
            ],
            limits=Limits(
                seconds=_STARTUP_SECONDS,  # informational for spawn: we enforce per document
                memory_mb=self._pool.memory_mb,
                cpu_seconds=_LISTENER_CPU_SECONDS,
                max_file_mb=self._pool.max_output_mb,
                max_processes=_LISTENER_PROCESSES,
            ),
            network=self._pool.network,
            workdir=str(self._dir),
        )
        log.info("office worker %d started (pid %d)", self.index, self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait_ready(self) -> None:
        assert self._dir is not None
        socket = self._pool.pipe_dir(self._dir) / f"OSL_PIPE_{os.getuid()}_{self.pipe}"
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not socket.exists():
            if not self.alive():
                raise ConversionFailed("LibreOffice exited while starting")
            if time.monotonic() > deadline:
                raise ConversionFailed("LibreOffice did not start")
            time.sleep(0.05)

    def stop(self, *, graceful: bool) -> None:
        """End the listener and remove every trace of it; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if graceful and proc.poll() is None:
                # Best effort: a clean exit removes soffice's sockets and temp files itself.
                with contextlib.suppress(Exception):
                    self._driver(["--terminate"], b"", _TERMINATE_SECONDS)
                    proc.wait(timeout=_TERMINATE_SECONDS)
            sandbox.kill_group(proc)
        if self._dir is not None:
            pipe_dir = self._pool.pipe_dir(self._dir)
            for path in _pipe_sockets(self.pipe, self._profile_url, pipe_dir):
                with contextlib.suppress(OSError):
                    path.unlink()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def restart(self, why: str) -> None:
        log.warning("office worker %d restarted: %s", self.index, why)
        self.stop(graceful=False)
        self.start()

    # conversion
    def _driver(self, args: list[str], stdin: bytes, seconds: float) -> sandbox.RunResult:
        return sandbox.run(
            [SYSTEM_PYTHON, "-I", DRIVER, "--pipe", self.pipe, *args],
            stdin=stdin,
            limits=Limits(
                seconds=seconds,
                memory_mb=_DRIVER_MEMORY_MB,
                max_output_bytes=_DRIVER_OUTPUT_BYTES,
                max_processes=_DRIVER_PROCESSES,
            ),
            network=self._pool.network,
            workdir=None if self._dir is None else str(self._dir),
        )

    def convert(self, data: bytes, suffix: str, timeout: float) -> bytes:
        with self._lock:
            if self._pool.closed:
                raise ConverterBusy("office pool closed")
            if self.proc is None:
                self.start()
            elif not self.alive():
                self.restart("soffice exited")
            try:
                self._wait_ready()
            except ConversionFailed:
                self.restart("start failed")
                raise
            assert self._dir is not None
            io_dir = self._dir / "io"
            src, dst = io_dir / f"in.{suffix}", io_dir / "out.pdf"
            try:
                _write_input(src, data)
                return self._convert(src, dst, timeout)
            except _Tampered:
                # Only a compromised soffice rearranges its directory: replace it.
                self.restart("work directory tampered with")
                raise
            finally:
                for path in (src, dst):
                    _remove(path)

    def _convert(self, src: Path, dst: Path, timeout: float) -> bytes:
        assert self._dir is not None
        inside = self._pool.inside
        names = {"in": str(inside(self._dir, src)), "out": str(inside(self._dir, dst))}
        request = json.dumps(names).encode() + b"\n"
        result = self._driver(["--connect-timeout", str(timeout)], request, timeout)
        self.docs += 1
        if result.killed == "timeout":
            # soffice is stuck on the document (or dead): kill the whole group.
            self.restart("conversion timeout")
            raise ConversionTimeout(f"LibreOffice took longer than {timeout:g}s")
        reply = _last_reply(result.stdout)
        if reply is None or reply.get("fatal") or result.returncode != 0:
            self.restart("driver failed" if self.alive() else "soffice died")
            detail = _short(reply.get("error", "")) if reply else f"exit {result.returncode}"
            raise ConversionFailed(f"LibreOffice failed ({detail})")
        if not reply.get("ok"):
            raise ConversionFailed(f"LibreOffice could not convert ({_short(reply.get('error'))})")
        record_notes(reply)  # issue 16: hidden / shrunk sheets, for the notice
        if not self.alive():
            self.restart("soffice died")
        return _read_pdf(dst, self._pool.max_output_mb * 1024 * 1024)


# --- the pool --------------------------------------------------------------------------------


class OfficePool:
    """``OfficeConverter`` backed by ``size`` warm LibreOffice listeners (thread-safe).

    ``size == 0`` ⇒ a cold ``soffice --convert-to pdf`` per document. Nothing is started
    before ``start()`` or the first ``to_pdf``; ``close()`` ends every process.
    """

    def __init__(
        self,
        size: int = 1,
        *,
        memory_mb: int = 2048,
        network: NetworkMode = "required",
        recycle_after: int = 200,
        max_output_mb: int = 256,
    ) -> None:
        if size < 0 or recycle_after < 1:
            raise ValueError("size must be >= 0 and recycle_after >= 1")
        self.size = size
        self.memory_mb = memory_mb
        self.network: NetworkMode = network
        self.recycle_after = recycle_after
        self.max_output_mb = max_output_mb
        self.closed = False
        self._base: Path | None = None  # created on first use: an idle pool leaves nothing
        self._base_lock = threading.Lock()
        self._workers = [_Worker(i, self) for i in range(size)]
        self._cold_ids = itertools.count(size)  # cold listeners' directories never collide
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._workers:
            self._idle.put(worker)

    @classmethod
    def from_settings(cls, settings: SanitizeSettings) -> OfficePool:
        return cls(
            settings.office_pool,
            memory_mb=settings.memory_mb,
            network=settings.network_isolation,
        )

    @property
    def jailed(self) -> bool:
        return self.network != "off"

    def inside(self, workdir: Path, path: Path) -> Path:
        """``path`` (under ``workdir``) as the jailed soffice and driver see it."""
        if not self.jailed:
            return path
        return Path(jail.INSIDE_TMP) / path.relative_to(workdir)

    def pipe_dir(self, workdir: Path) -> Path:
        """Where soffice's UNO pipe sockets appear on the host: the jail's /tmp is workdir."""
        return workdir if self.jailed else _PIPE_DIR

    def work_dir(self) -> Path:
        """Temporary directory holding the workers' profiles and documents."""
        with self._base_lock:
            if self._base is None:
                self._base = Path(sandbox.work_dir("office"))
            return self._base

    def start(self) -> None:
        """Spawn the listeners now, so the first document finds them warm."""
        for worker in self._workers:
            with worker._lock:
                if not self.closed and not worker.alive():
                    worker.start()

    def worker_pids(self) -> list[int]:
        """Pids of the running listeners (the oosplash launcher heads each group)."""
        return [w.proc.pid for w in self._workers if w.proc is not None and w.alive()]

    def to_pdf(self, data: bytes, suffix: str, *, timeout: float) -> bytes:
        if self.closed:
            raise ConverterBusy("office pool closed")
        if not suffix.isascii() or not suffix.isalnum():
            raise ValueError(f"bad suffix {suffix!r}")
        if self.size == 0:
            return self._cold(data, suffix, timeout)
        try:
            worker = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise ConverterBusy("all LibreOffice workers busy") from None
        try:
            return worker.convert(data, suffix, timeout)
        finally:
            with worker._lock:
                if self.closed:
                    worker.stop(graceful=False)
                elif worker.docs >= self.recycle_after:
                    log.info(
                        "office worker %d recycled after %d documents", worker.index, worker.docs
                    )
                    worker.stop(graceful=True)
                    worker.start()
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every listener (waits for conversions in progress); idempotent."""
        self.closed = True
        for worker in self._workers:
            with worker._lock:
                worker.stop(graceful=True)
        with self._base_lock:
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None

    def __enter__(self) -> OfficePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # cold path
    def _cold(self, data: bytes, suffix: str, timeout: float) -> bytes:
        """One listener for one document, stopped and removed afterwards. The same jail, driver
        and page setup as a warm worker (wide sheets are fitted the same way; a bare
        ``soffice --convert-to`` would print them across pages), and no state survives it."""
        worker = _Worker(next(self._cold_ids), self)
        try:
            return worker.convert(data, suffix, timeout)
        finally:
            with worker._lock:
                worker.stop(graceful=False)


# --- the sanitizer ---------------------------------------------------------------------------


def sanitize_office(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    """Office/ODF/RTF → LibreOffice PDF → page images in a new PDF."""
    if "encrypted" in detected.flags:
        raise Encrypted("暗号化された文書は無害化できません / encrypted document")
    suffix = SUFFIXES.get(detected.kind)
    if suffix is None:
        raise UnsupportedType(f"{detected.kind} is not an office type")
    if ctx.office is None:
        raise ConversionFailed("no office converter")
    # Pages are unknown before conversion: the floor of the conversion budget applies.
    take_notes()  # issue 16: nothing left over from an earlier document
    pdf_bytes = ctx.office.to_pdf(data, suffix, timeout=ctx.limits.min_seconds)
    sheet_reasons, sheet_detail = reasons_and_detail(take_notes())  # issue 16
    stem = clean_name(filename, "pdf").removesuffix(".pdf")
    clean = pdf.render_pdf_to_clean_pdf(pdf_bytes, stem, ctx)
    # The output is pixels: whatever macros the original carried are gone; say so.
    reasons = ("macros_removed",) if "macros" in detected.flags else ()
    return SanitizeResult(
        files=(clean,),
        action=Action.CONVERTED,
        reasons=(*reasons, *sheet_reasons),  # issue 16
        detail=f"converted by LibreOffice, rendered to images ({ctx.limits.dpi} dpi)"
        + (f"; {sheet_detail}" if sheet_detail else ""),  # issue 16
    )
