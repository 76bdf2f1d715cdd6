"""The smtp_text baseline: a bare aiosmtpd forwarder. `python -m bench.forwarder HOST:PORT`.

Receives, replies 250 at once and forwards each message to the relay with aiosmtplib (no
spool, no scan, no parsing), with as many deliveries at a time as the gateway has workers.
It is the floor of what any Python SMTP relay costs on this machine.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

DELIVERIES = 4  # the gateway's default [delivery] workers


class _Forward:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.slots = asyncio.Semaphore(DELIVERIES)
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        task = asyncio.create_task(
            self._send(str(envelope.mail_from), list(envelope.rcpt_tos), envelope.original_content)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "250 2.0.0 queued"

    async def _send(self, sender: str, rcpts: list[str], data: bytes | None) -> None:
        async with self.slots:
            try:
                await aiosmtplib.send(
                    data or b"", sender=sender, recipients=rcpts, hostname=self.host,
                    port=self.port, timeout=60,
                )  # fmt: skip
            except (aiosmtplib.SMTPException, OSError) as exc:
                print(f"forward failed: {type(exc).__name__}", file=sys.stderr)


class _Big(SMTP):
    line_length_limit = 65_536


async def main(relay: str) -> None:
    host, port = relay.rsplit(":", 1)
    handler = _Forward(host, int(port))
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return _Big(handler, decode_data=False, data_size_limit=None, enable_SMTPUTF8=True)

    server = await loop.create_server(factory, "127.0.0.1", 0)
    sys.stdout.write(f"PORT {server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
