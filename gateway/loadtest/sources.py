"""Where replayed messages come from: .eml files, folders (recursively), mbox files, Maildirs.

Items are produced lazily, one message in memory at a time, so a corpus of any size can be
replayed. Anything that is not a sendable message becomes a ``Skip`` with a reason; a bad input
never stops the run.
"""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.loadtest.headers import FIELD_RE, split_head

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_SNIFF_BYTES = 64 * 1024
# A head with at least one of these is a message (and not, say, an HTTP dump or a .ini file).
_MAIL_FIELDS = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"received",
        b"return-path",
        b"mime-version",
        b"content-type",
        b"delivered-to",
        b"x-original-to",
    }
)


@dataclass(frozen=True)
class Message:
    origin: str  # path, or path#key inside an mbox/Maildir: for the operator, never content
    data: bytes


@dataclass(frozen=True)
class Skip:
    origin: str
    reason: str  # unreadable | empty | too_large | not_mail | no_recipients | unparseable


Item = Message | Skip


def looks_like_mail(data: bytes) -> bool:
    """An RFC 5322 head: starts with a header field and names at least one mail field."""
    head, _ = split_head(data[:_SNIFF_BYTES])
    lines = head.splitlines()
    if not lines or FIELD_RE.match(lines[0]) is None:
        return False
    for line in lines:
        m = FIELD_RE.match(line)
        if m is not None and m.group(1).lower() in _MAIL_FIELDS:
            return True
    return False


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _is_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"From "
    except OSError:
        return False


def _read_file(path: Path, max_bytes: int) -> Item:
    origin = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError:
        return Skip(origin, "unreadable")
    return _check(origin, data, max_bytes)


def _check(origin: str, data: bytes, max_bytes: int) -> Item:
    if not data.strip():
        return Skip(origin, "empty")
    if len(data) > max_bytes:
        return Skip(origin, "too_large")
    if not looks_like_mail(data):
        return Skip(origin, "not_mail")
    return Message(origin, data)


def _iter_mbox(path: Path, max_bytes: int) -> Iterator[Item]:
    # stdlib mbox splits at "From " lines after a blank line and leaves ">From " quoting in
    # the bytes as it is (mboxo/mboxrd cannot be told apart): the bytes are kept raw.
    try:
        box = mailbox.mbox(str(path), create=False)
        keys = sorted(box.keys())
    except (OSError, mailbox.Error):
        yield Skip(str(path), "unreadable")
        return
    try:
        for key in keys:
            origin = f"{path}#{key}"
            try:
                with box.get_file(key) as fh:
                    data = fh.read(max_bytes + 1)
            except (OSError, KeyError):
                yield Skip(origin, "unreadable")
                continue
            yield _check(origin, data, max_bytes)
    finally:
        box.close()


def _iter_maildir(path: Path, max_bytes: int) -> Iterator[Item]:
    try:
        box = mailbox.Maildir(str(path), factory=None, create=False)
        keys = sorted(box.keys())
    except OSError:
        yield Skip(str(path), "unreadable")
        return
    for key in keys:
        origin = f"{path}#{key}"
        try:
            with box.get_file(key) as fh:
                data = fh.read(max_bytes + 1)
        except (OSError, KeyError):  # moved away (read by a client) while we iterate
            yield Skip(origin, "unreadable")
            continue
        yield _check(origin, data, max_bytes)


def _iter_dir(path: Path, max_bytes: int) -> Iterator[Item]:
    for root, dirs, files in os.walk(path, onerror=None, followlinks=False):
        here = Path(root)
        # A Maildir inside a folder is read as a Maildir (its tmp/ holds partial deliveries).
        boxes = [d for d in dirs if is_maildir(here / d)]
        dirs[:] = sorted(d for d in dirs if d not in boxes)
        for d in sorted(boxes):
            yield from _iter_maildir(here / d, max_bytes)
        for name in sorted(files):
            yield from _iter_file(here / name, max_bytes)


def _iter_file(path: Path, max_bytes: int) -> Iterator[Item]:
    if _is_mbox(path):
        yield from _iter_mbox(path, max_bytes)
    else:
        yield _read_file(path, max_bytes)


def iter_items(paths: Iterable[Path], max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """Every message (or skip) under ``paths``, in a stable order."""
    for path in paths:
        if path.is_dir():
            if is_maildir(path):
                yield from _iter_maildir(path, max_bytes)
            else:
                yield from _iter_dir(path, max_bytes)
        elif path.exists():
            yield from _iter_file(path, max_bytes)
        else:
            yield Skip(str(path), "unreadable")


def estimate_count(paths: Iterable[Path]) -> int:
    """Cheap upper bound for the progress bar: files, plus the messages in each mbox."""
    total = 0
    for path in paths:
        if path.is_dir():
            for _root, _dirs, files in os.walk(path, followlinks=False):
                for name in files:
                    total += _count_file(Path(_root) / name)
        else:
            total += _count_file(path)
    return total


def _count_file(path: Path) -> int:
    if not _is_mbox(path):
        return 1
    count = 0
    try:
        with path.open("rb") as fh:
            for line in fh:
                count += line.startswith(b"From ")
    except OSError:
        return 1
    return max(count, 1)
