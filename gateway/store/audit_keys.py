"""What the audit chain relies on outside the database: a MAC key file and an anchor file.

Key file: one key per line, ``<key id> <64 hex>``; the LAST line signs new entries, earlier
lines only verify older ones (rotation appends a line, see docs/operations.md). The first line of a
file made by the gateway ends in `` unkeyed-until=<seq>``: the entries that existed unMACed when
the key was made. Every later entry must carry a MAC, so stripping all MACs (which makes the whole
chain look like entries from before the upgrade) is detected without the anchor. It is created
with mode 0600 and refused when group or others can read it: whoever holds the key can forge
entries, so it must not be in the database nor readable by the database's users.

Anchor file: one line per audit entry, ``<seq> <hash> <mac>``, appended (O_APPEND) and fsynced
after each commit, in a directory of its own (ideally another disk or host mount). A database
rolled back to an older copy, truncated, or rewritten and re-chained no longer contains what
the anchor recorded. Each node writes its own file (``anchor-<node>.log``).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_KEY_LINE = re.compile(r"^([0-9A-Za-z_-]{1,32}) ([0-9a-f]{64})(?: unkeyed-until=([0-9]{1,18}))?$")
_ANCHOR_LINE = re.compile(r"^([0-9]{1,18}) ([0-9a-f]{64}) ([0-9a-f]{64})$")
MAX_KEYS = 100
log = logging.getLogger(__name__)


class AuditKeyError(Exception):
    """The key file is missing, unsafe or malformed: audit entries cannot be signed."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    current: str
    # Entries up to this seq may lack a MAC (written before the key); None: not recorded
    # (a key file from before this line existed, or from `mugai audit init-key`).
    unkeyed_until: int | None = None

    def mac(self, key_id: str, seq: int, prev_mac: str, entry_hash: str) -> str:
        key = self.keys[key_id]
        message = f"{key_id}|{seq}|{prev_mac}|{entry_hash}".encode("ascii")
        return hmac.new(key, message, hashlib.sha256).hexdigest()


def _new_line() -> str:
    return f"k{secrets.token_hex(4)} {secrets.token_hex(32)}\n"


def create_key_file(path: Path, unkeyed_until: int | None = None) -> str:
    """A new key file (0600, parent 0700); refuses to overwrite. Returns the key id.
    ``unkeyed_until``: the last seq written without a MAC (0 for an empty log)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = _new_line()
    if unkeyed_until is not None:
        line = f"{line.rstrip()} unkeyed-until={int(unkeyed_until)}\n"
    # Written whole under a temporary name, then linked: another node starting at the same
    # moment sees either no file or the complete one (os.link fails if it exists).
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return line.split()[0]


def rotate_key_file(path: Path) -> str:
    """Append a new current key; the old ones stay to verify the entries they signed."""
    load_keyring(path)  # refuses an unsafe or broken file before touching it
    line = _new_line()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return line.split()[0]


def load_keyring(path: Path) -> Keyring:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise AuditKeyError(f"audit key file {path} missing (mugai audit init-key)") from None
    except OSError as exc:
        raise AuditKeyError(f"audit key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AuditKeyError(f"audit key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise AuditKeyError(
                f"audit key file {path} is readable by others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
            )
        data = fh.read(MAX_KEYS * 120)
    keys: dict[str, bytes] = {}
    current = ""
    unkeyed_until: int | None = None
    for n, line in enumerate(data.decode("ascii", "replace").splitlines(), 1):
        if not line.strip():
            continue
        found = _KEY_LINE.fullmatch(line.strip())
        if found is None:
            raise AuditKeyError(f"audit key file {path} line {n} is malformed")
        if found.group(3) is not None and not keys:  # only the first key's line says it
            unkeyed_until = int(found.group(3))
        keys[found.group(1)] = bytes.fromhex(found.group(2))
        current = found.group(1)
    if not current:
        raise AuditKeyError(f"audit key file {path} holds no key")
    return Keyring(keys, current, unkeyed_until)


@dataclass(frozen=True)
class AnchorEntry:
    seq: int
    hash: str
    mac: str
    where: str  # file:line, for the report


class SyslogCopy:
    """The same anchor line to syslog as well (a unix socket path such as /dev/log, or
    host:port over UDP): a copy on another machine survives even the anchor directory."""

    # facility auth (4) * 8 + severity notice (5), RFC 3164
    PRI = 37

    def __init__(self, address: str) -> None:
        self.address = address
        self.target: str | tuple[str, int]
        if address.startswith("/"):
            self.family, self.target = socket.AF_UNIX, address
        else:
            host, _, port = address.rpartition(":")
            self.family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
            self.target = (host.strip("[]"), int(port))
        self.failed = False

    def send(self, node: str, line: str) -> None:
        message = f"<{self.PRI}>mugai-audit[{node}]: {line}".encode("ascii", "replace")
        try:
            with socket.socket(self.family, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self.target)
            self.failed = False
        except OSError as exc:
            if not self.failed:  # once per outage, not once per entry
                log.error("job=- audit syslog copy to %s failed: %s", self.address, exc.strerror)
            self.failed = True


class Anchor:
    def __init__(self, directory: Path, node: str, syslog: SyslogCopy | None = None) -> None:
        self.directory = directory
        self.node = re.sub(r"[^0-9A-Za-z._-]", "_", node)[:100] or "node"
        self.path = directory / f"anchor-{self.node}.log"
        self.syslog = syslog

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def write(self, seq: int, entry_hash: str, mac: str) -> None:
        """One line, appended and fsynced (the caller logs a failure; the entry stands)."""
        line = f"{seq} {entry_hash} {mac}\n".encode("ascii")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.syslog is not None:
            self.syslog.send(self.node, line.decode("ascii").strip())

    def last(self) -> tuple[int, str] | None:
        """(seq, hash) of this node's last complete anchor line, reading only the file's end."""
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 4096))
                tail = fh.read().decode("ascii", "replace")
        except FileNotFoundError:
            return None
        for line in reversed(tail.split("\n")[:-1]):  # [:-1]: a torn last line is skipped
            found = _ANCHOR_LINE.fullmatch(line.strip())
            if found is not None:
                return int(found.group(1)), found.group(2)
        return None

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("anchor-*.log") if p.is_file())


def _read(path: Path, problems: list[str]) -> Iterator[AnchorEntry]:
    last = 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            line = raw.decode("ascii", "replace")
            complete = line.endswith("\n")
            found = _ANCHOR_LINE.fullmatch(line.strip())
            if found is None:
                if complete:  # a torn last line (crash while writing) is no tampering
                    problems.append(f"anchor {path.name}:{n}: malformed line (file edited)")
                continue
            seq = int(found.group(1))
            if seq <= last:
                problems.append(
                    f"anchor {path.name}:{n}: seq {seq} after seq {last} "
                    "(the database went back: restored from an older copy)"
                )
            last = max(last, seq)
            yield AnchorEntry(seq, found.group(2), found.group(3), f"{path.name}:{n}")


def anchored(files: list[Path], problems: list[str]) -> Iterator[AnchorEntry]:
    """Every file's entries merged in seq order (bounded memory: one line per file)."""
    return heapq.merge(*(_read(p, problems) for p in files), key=lambda e: e.seq)
