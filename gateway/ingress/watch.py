"""Watched folder: files dropped on the Internet side come out sanitized on the LGWAN side.

A file is taken once it has stopped growing (same size and mtime on two polls),
read without following symlinks, spooled durably as a ``file`` job, and only
then removed from the inbox. Results are written by ``deliver_watch_result``:
rebuilt files into ``outbox`` (with a report beside them); on refusal the
original and a report go to ``failed`` (which stays on the Internet side).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import SpoolError
from gateway.model import CleanFile
from gateway.paths import unique_path, write_atomic
from gateway.sanitize.names import clean_name
from gateway.settings import WatchSettings
from gateway.spool import JobMeta, Spool, new_id
from gateway.vocab import MessageStatus

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_FILES_PER_POLL = 1000
MAX_DEPTH = 8


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    polls: int = 1


def _walk(root: Path) -> list[tuple[Path, os.stat_result]]:
    """Regular files under root (no symlinks followed, hidden names skipped), bounded."""
    found: list[tuple[Path, os.stat_result]] = []
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack and len(found) < MAX_FILES_PER_POLL:
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue  # editors' and our own temporary files
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                stack.append((Path(entry.path), depth + 1))
            elif stat.S_ISREG(st.st_mode):
                found.append((Path(entry.path), st))
    return found


def _read_nofollow(path: Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file: {path.name}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise OSError("file too large for the watched folder")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class FolderWatcher:
    def __init__(self, settings: WatchSettings, spool: Spool, wakeup: asyncio.Event) -> None:
        assert settings.inbox is not None and settings.outbox is not None
        self.settings = settings
        self.inbox = settings.inbox
        self.spool = spool
        self.wakeup = wakeup
        self._seen: dict[Path, _Seen] = {}
        self._stopping = False
        for folder in (settings.inbox, settings.outbox, settings.failed):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.to_thread(self.poll_once)
            except Exception:  # noqa: BLE001 - one bad poll must not stop the loop
                log.exception("job=- watch poll failed")
            await asyncio.sleep(self.settings.interval)

    def poll_once(self) -> list[str]:
        """Spool every file that has stopped growing; returns the new job ids."""
        current = _walk(self.inbox)
        present = {p for p, _ in current}
        for gone in set(self._seen) - present:
            del self._seen[gone]
        queued: list[str] = []
        for path, st in current:
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._seen[path] = _Seen(st.st_size, st.st_mtime_ns)
                continue  # new or still growing: look again next poll
            job_id = self._take(path)
            if job_id:
                queued.append(job_id)
            self._seen.pop(path, None)
        if queued:
            self.wakeup.set()
        return queued

    def _take(self, path: Path) -> str | None:
        rel = path.relative_to(self.inbox)
        job_id = new_id()
        try:
            data = _read_nofollow(path, self.settings.max_file_bytes)
        except OSError as exc:
            log.warning("job=%s watch: cannot read a file: %s", job_id, exc.strerror or exc)
            self._move_failed(path, rel, job_id, "unreadable")
            return None
        meta = JobMeta(
            id=job_id,
            kind="file",
            filename=path.name,
            received_at=time.time(),
            extra={"source": "watch", "relpath": str(rel)},
        )
        try:
            self.spool.put(meta, data)
        except SpoolError as exc:
            log.error("job=%s watch: spool write failed: %s", job_id, exc.detail)
            return None  # stays in the inbox; retried next poll
        try:
            path.unlink()
        except OSError:
            log.warning("job=%s watch: could not remove the taken file", job_id)
        log.info("job=%s watch: queued size=%d", job_id, len(data))
        return job_id

    def _move_failed(self, path: Path, rel: Path, job_id: str, reason: str) -> None:
        failed = self.settings.failed
        if failed is None:
            return
        target = unique_path(failed / rel.parent / rel.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, target)
        except OSError:
            return
        _write_json(report_path(target.parent, target.name), {
            "id": job_id, "file": rel.as_posix(), "status": MessageStatus.WITHHELD,
            "reasons": [reason],
        })  # fmt: skip


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"))


def report_path(folder: Path, filename: str) -> Path:
    """``<name>.report.json`` with the name through the same cleaner as the outputs: no RLO,
    no CR/LF or other controls, no path parts (the report sits on the LGWAN side)."""
    name = Path(filename.replace("\\", "/")).name
    return unique_path(folder / (clean_name(name, Path(name).suffix) + ".report.json"))


def _safe_rel_dir(relpath: str) -> Path:
    """The sub-folder of the original, with nothing that could climb out of the outbox."""
    parts = [p for p in Path(relpath).parent.parts if p not in ("", ".", "..", "/")]
    return Path(*[clean_name(p, "").rstrip(".") or "_" for p in parts]) if parts else Path()


def deliver_watch_result(
    settings: WatchSettings,
    meta: JobMeta,
    original: bytes,
    files: tuple[CleanFile, ...],
    report_data: dict[str, Any],
) -> list[Path]:
    """Write a file job's outcome into outbox (or failed); returns the paths written."""
    assert settings.outbox is not None
    relpath = str(meta.extra.get("relpath", meta.filename))
    sub = _safe_rel_dir(relpath)
    written: list[Path] = []
    if files:
        folder = settings.outbox / sub
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            target = unique_path(folder / f.filename)
            write_atomic(target, f.data)
            written.append(target)
        report = report_path(folder, meta.filename)
    else:
        folder = (settings.failed or settings.outbox) / sub
        folder.mkdir(parents=True, exist_ok=True)
        if settings.failed is not None:
            # The untrusted original goes back to the Internet-side failed folder only.
            target = unique_path(folder / clean_name(meta.filename, Path(meta.filename).suffix))
            write_atomic(target, original)
            written.append(target)
        report = report_path(folder, meta.filename)
    _write_json(report, report_data)
    written.append(report)
    return written
