"""Outlook .msg attachments: turned into a MIME message in a sandboxed child, then sanitized
exactly like an attached .eml (headers and body as text, each attachment through the
registry). See msg_child.py for the reader and why it is our own (extract-msg is GPL).

Bounds: the child has the usual sandbox limits (time, memory, output), attachments count
against ``max_archive_members`` and their bytes against ``max_unpacked_bytes``; embedded
messages nest at most ``max_archive_depth`` deep, and the .eml sanitizer applies its own
part/depth/header limits to what the child returns.
"""

from __future__ import annotations

import dataclasses

from gateway.errors import ArchiveLimit, ConversionFailed
from gateway.model import Detected, SanitizeResult
from gateway.sanitize import sandbox
from gateway.sanitize.base import Context
from gateway.sanitize.eml import sanitize_eml

_CHILD = "gateway.sanitize.msg_child"
_EXIT_LIMIT = 3


def sanitize_msg(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    limits = ctx.limits
    if ctx.depth >= limits.max_archive_depth:
        raise ArchiveLimit("nested messages too deep")
    depth_left = max(0, limits.max_archive_depth - ctx.depth - 1)
    # base64 makes attachments 4/3 larger in the MIME output, plus headers.
    out_cap = limits.max_unpacked_bytes * 4 // 3 + 4 * 1024 * 1024
    result = sandbox.run(
        [
            *sandbox.python_child(_CHILD),
            str(limits.max_archive_members),
            str(limits.max_unpacked_bytes),
            str(depth_left),
        ],
        stdin=data,
        limits=sandbox.Limits(
            seconds=max(limits.min_seconds, 1.0),
            memory_mb=limits.memory_mb,
            max_output_bytes=out_cap,
        ),
        network=limits.network_isolation,
    )
    if result.returncode == _EXIT_LIMIT and result.killed is None:
        raise ArchiveLimit(f"Outlook message: {_first_line(result.stderr)}")
    if result.killed == "output_too_large":
        raise ArchiveLimit("Outlook message contents over the unpacked size limit")
    if result.killed is not None or result.returncode != 0 or not result.stdout:
        raise ConversionFailed(f"unreadable Outlook message ({result.killed or result.returncode})")
    sanitized = sanitize_eml(result.stdout, filename or "message.msg", detected, ctx)
    return dataclasses.replace(sanitized, reasons=(*sanitized.reasons, "msg_converted"))


def _first_line(stderr: bytes) -> str:
    # Diagnostic text from an untrusted child: shortened, printable only.
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return "".join(c for c in (text[-1] if text else "") if c.isprintable())[:200]
