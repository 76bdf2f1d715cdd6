"""`mugai serve` with one injected fault: a mail whose Subject contains ``POISON-PILL`` kills
the whole process with SIGKILL while a worker handles it (as a parser bug in C or the OOM
killer would). Run as ``python -m tests.reliability.poison_serve serve --config ...``."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from gateway import cli
from gateway.pipeline import Pipeline
from gateway.spool import JobMeta

_real_process = Pipeline.process


async def _process(self: Pipeline, meta: JobMeta, raw: bytes) -> Any:
    if b"POISON-PILL" in raw.split(b"\r\n\r\n", 1)[0]:
        os.kill(os.getpid(), signal.SIGKILL)
    return await _real_process(self, meta, raw)


if __name__ == "__main__":
    Pipeline.process = _process  # type: ignore[method-assign]
    sys.exit(cli.main(sys.argv[1:]))
