"""Loop detection that an outsider cannot forge (issue 13).

Our Received line carries ``(loop <token>)`` after the job id, the token being an HMAC of
our hostname and that id under a per-instance secret. Only lines whose token verifies count
as hops through us, each job id once: three copied ``by <host> (mugai)`` lines no longer get
a stranger's mail quarantined as ``mail_loop``, and a real loop (a new id on every pass)
still is.

The secret is ``[smtp] loop_key`` when set (give every node of a cluster the same one, so
a loop through two nodes counts), else a random key kept in ``<data_dir>/loop.key``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from gateway.settings import Settings

KEY_FILE = "loop.key"
_TOKEN_HEX = 24


def load_key(settings: Settings) -> bytes:
    configured = settings.smtp.loop_key.get_secret_value()
    if configured:
        return configured.encode("utf-8")
    path = settings.storage.data_dir / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)  # another process made it first
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 32:
        # A truncated key would make every token guessable: refuse to start.
        raise ValueError(f"{path} is too short to be a loop key; delete it to make a new one")
    return text.encode("ascii")


def token(key: bytes, hostname: str, mugai_id: str) -> str:
    mac = hmac.new(key, f"{hostname.lower()} {mugai_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:_TOKEN_HEX]


def our_hops(received: Iterable[str], key: bytes, hostname: str) -> int:
    """Distinct job ids among Received lines with a valid token of this instance."""
    return len(verified_ids(received, key, hostname))


def earlier_hop(key: bytes, hostname: str, mugai_id: str) -> str:
    """A verified earlier pass, re-emitted in the rebuilt message (which keeps no other
    Received line): without it a loop through us would show one hop per pass, never three.
    Its date is the id's own (ids start with the time of receipt in milliseconds)."""
    try:
        when = int(mugai_id[:12], 16) / 1000
    except ValueError:
        when = 0.0
    stamp = email.utils.formatdate(when, localtime=True)
    mac = token(key, hostname, mugai_id)
    return f"by {hostname} (mugai) with ESMTP id {mugai_id} (loop {mac}); {stamp}"


def verified_ids(received: Iterable[str], key: bytes, hostname: str) -> list[str]:
    """Job ids (first seen first, each once) of Received lines with a valid token."""
    if not key:
        return []
    pattern = re.compile(
        rf"\bby {re.escape(hostname)} \(mugai\) with ESMTP id ([0-9a-f]{{1,40}}) "
        rf"\(loop ([0-9a-f]{{{_TOKEN_HEX}}})\)",
        re.IGNORECASE,
    )
    seen: dict[str, None] = {}
    for line in received:
        for mugai_id, mac in pattern.findall(" ".join(line.split())):
            if hmac.compare_digest(mac.lower(), token(key, hostname, mugai_id.lower())):
                seen[mugai_id.lower()] = None
    return list(seen)
