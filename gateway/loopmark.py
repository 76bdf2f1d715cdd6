"""Loop detection that an outsider cannot forge (issue 13).

Our Received line carries ``(loop <token>)`` after the job id, the token being an HMAC of
our hostname, that id and the message's Message-ID under a per-instance secret. Only lines
whose token verifies count as hops through us, each job id once: three copied
``by <host> (mugai)`` lines no longer get a stranger's mail quarantined as ``mail_loop``, and
a real loop (a new id on every pass, the same Message-ID, which the rebuild keeps) still is.
Binding the Message-ID means valid lines harvested from our delivered mail (seen again in
bounces or forwards) count only for that very message, never for someone else's.

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


def _message_key(message_id: str) -> str:
    # The same id however the header was folded or cased on the way.
    return "".join(message_id.split()).lower()


def token(key: bytes, hostname: str, mugai_id: str, message_id: str = "") -> str:
    subject = f"{hostname.lower()} {mugai_id} {_message_key(message_id)}"
    mac = hmac.new(key, subject.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return mac.hexdigest()[:_TOKEN_HEX]


def our_hops(received: Iterable[str], key: bytes, hostname: str, message_id: str = "") -> int:
    """Distinct job ids among Received lines with a valid token of this instance (for this
    Message-ID)."""
    return len(verified_ids(received, key, hostname, message_id))


def earlier_hop(key: bytes, hostname: str, mugai_id: str, message_id: str = "") -> str:
    """A verified earlier pass, re-emitted in the rebuilt message (which keeps no other
    Received line): without it a loop through us would show one hop per pass, never three.
    Its date is the id's own (ids start with the time of receipt in milliseconds)."""
    try:
        when = int(mugai_id[:12], 16) / 1000
    except ValueError:
        when = 0.0
    stamp = email.utils.formatdate(when, localtime=True)
    mac = token(key, hostname, mugai_id, message_id)
    return f"by {hostname} (mugai) with ESMTP id {mugai_id} (loop {mac}); {stamp}"


def verified_ids(
    received: Iterable[str], key: bytes, hostname: str, message_id: str = ""
) -> list[str]:
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
            expected = token(key, hostname, mugai_id.lower(), message_id)
            if hmac.compare_digest(mac.lower(), expected):
                seen[mugai_id.lower()] = None
    return list(seen)
