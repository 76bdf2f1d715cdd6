"""Parent side of the PPAP unlock: decrypt one withheld part in a sandbox child.

The password goes to the child on stdin only (see ``decrypt_child``); what comes back is
the same content without encryption, for the normal sanitizers. Fail closed: any answer
but a clean exit with output is a refusal.
"""

from __future__ import annotations

import struct

from gateway.errors import (
    ArchiveLimit,
    ConversionFailed,
    ConversionTimeout,
    UnlockUnsupported,
    WrongPassword,
)
from gateway.model import Detected
from gateway.sanitize import decrypt_child as proto
from gateway.sanitize import sandbox
from gateway.settings import SanitizeSettings

MAX_PASSWORD_CHARS = 256
_OFFICE_KINDS = frozenset(
    {"doc", "docx", "docm", "dot", "xls", "xlsx", "xlsm", "ppt", "pptx", "pptm"}
)


def child_kind(detected: Detected) -> str:
    """Which unlocker fits the detected type; ``UnlockUnsupported`` when none does."""
    if detected.kind == "zip":
        return "zip"
    if detected.kind == "pdf":
        return "pdf"
    if detected.kind in _OFFICE_KINDS:
        return "office"
    raise UnlockUnsupported(f"no unlocker for {detected.kind}")


def decrypt(
    data: bytes, kind: str, password: str, limits: SanitizeSettings, *, seconds: float
) -> bytes:
    if kind not in proto.KINDS:
        raise UnlockUnsupported(kind)
    secret = password.encode("utf-8")
    if not secret or len(password) > MAX_PASSWORD_CHARS:
        raise WrongPassword("empty or overlong password")
    max_bytes = limits.max_unpacked_bytes
    result = sandbox.run(
        [
            *sandbox.python_child("gateway.sanitize.decrypt_child"),
            kind,
            str(limits.max_archive_members),
            str(max_bytes),
        ],
        stdin=struct.pack(">I", len(secret)) + secret + data,
        limits=sandbox.Limits(
            seconds=max(seconds, 1.0),
            memory_mb=limits.memory_mb,
            # The rebuilt ZIP adds headers per member to the unpacked bytes.
            max_output_bytes=max_bytes + 1024 * (limits.max_archive_members + 1),
        ),
        network=limits.network_isolation,
    )
    # The child's stderr is never logged or returned: it is untrusted and, in a crash,
    # could contain anything it was given.
    if result.killed in ("timeout", "cpu"):
        raise ConversionTimeout(f"decrypting child killed ({result.killed})")
    if result.killed in ("output_too_large", "memory"):
        raise ArchiveLimit(f"decrypted content too large ({result.killed})")
    code = result.returncode
    if code == proto.EXIT_OK and result.stdout:
        return result.stdout
    if code == proto.EXIT_WRONG_PASSWORD:
        raise WrongPassword()
    if code == proto.EXIT_UNSUPPORTED:
        raise UnlockUnsupported("not encrypted, or an encryption that cannot be opened")
    if code == proto.EXIT_LIMIT:
        raise ArchiveLimit("decrypted content over the archive limits")
    raise ConversionFailed(f"decrypting child exited with {code}")
