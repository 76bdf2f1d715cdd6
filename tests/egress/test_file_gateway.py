"""The file gateway passes the same last gate: real clamd on each output, then the checker."""

from __future__ import annotations

import time

import pytest

from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.pipeline import Pipeline
from gateway.sanitize.base import Context, Sanitizer
from gateway.sanitize.registry import REGISTRY
from gateway.scan.clamd import ClamdScanner
from gateway.settings import load_settings
from gateway.spool import JobMeta, new_id
from tests.plugins.clamd import EICAR


def _emitting(payload: bytes) -> Sanitizer:
    def sanitizer(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        return SanitizeResult(
            files=(CleanFile("o.txt", "text/plain", payload),), action=Action.KEPT
        )

    return sanitizer


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, ""),
        (b"x " + EICAR, "virus_found_output"),
        (b"go https://evil.example.com/", "egress_live_link"),
    ],
)
async def test_file_outputs_are_scanned_and_checked(
    clamd_address: str, payload: bytes | None, reason: str
) -> None:
    # A compromised converter, injected through the pipeline's own registry (no global patched).
    registry = REGISTRY if payload is None else {**REGISTRY, "text": _emitting(payload)}
    settings = load_settings(None)
    pipeline = Pipeline(settings, ClamdScanner(clamd_address, timeout=20), registry=registry)
    try:
        meta = JobMeta(id=new_id(), kind="file", received_at=time.time(), filename="a.txt")
        result = await pipeline.process_file(meta, b"plain harmless text https://x.example.com/\n")
    finally:
        pipeline.close()
    assert result.reason == reason
    if reason:
        assert result.files == ()
    else:
        assert [f.filename for f in result.files] == ["a.txt"]
        assert "egress" in result.timings
