"""A counting SMTP sink in its own process: `python -m bench.sink`.

Prints ``PORT <n>`` once listening, then one line per received message:
``<time.monotonic()> <bytes>``. CLOCK_MONOTONIC is system-wide on Linux, so the benchmark
process can compare these times with its own. Message content is not kept (a burst of 200
large mails would otherwise fill the memory of the process measuring it).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class _Counter:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        size = len(envelope.original_content or b"")
        sys.stdout.write(f"{time.monotonic():.6f} {size}\n")
        sys.stdout.flush()
        return "250 2.0.0 OK"


class _Big(SMTP):
    line_length_limit = 1 << 20


async def main() -> None:
    loop = asyncio.get_running_loop()
    handler = _Counter()

    def factory() -> Any:
        return _Big(handler, decode_data=False, data_size_limit=None, enable_SMTPUTF8=True)

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
