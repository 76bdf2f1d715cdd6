"""atheris entry point (started by bench/fuzz/run.py): raw bytes as a message, a header value
and a body. Findings are written to $MUGAI_FUZZ_FINDINGS and the run goes on, so one known bug
does not end a long run; libFuzzer's own crashes (hangs, memory) still stop it."""

from __future__ import annotations

import json
import os
import sys
import traceback

import atheris

with atheris.instrument_imports(include=["gateway"]):
    from bench.fuzz.run import signature
    from tests.reliability import fuzz_targets as ft

FINDINGS = os.environ.get("MUGAI_FUZZ_FINDINGS", "findings.jsonl")
_seen: set[str] = set()


def one_input(data: bytes) -> None:
    try:
        ft.safe_bytes_target(data)
    except Exception as exc:  # noqa: BLE001 - recorded as a finding
        sig = signature(exc)
        with open(FINDINGS, "a", encoding="utf-8") as fh:
            example = repr(data[:1500]) if sig not in _seen else ""
            fh.write(json.dumps({"signature": sig, "example": example}) + "\n")
        if sig not in _seen:
            _seen.add(sig)
            traceback.print_exc()


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
