"""egress_text: what the egress gate costs per text mail, next to the rest of the path.

In one process, per mail: ``sanitize_message`` (parse, disarm, rebuild), then the gate — a real
clamd scan of the rebuilt message (shipped config and signatures) and the independent
checker ``check_message``. Half the mails carry links (the checker's link reading is the part
that grows with text). The baseline is the first scan of the *original* mail the pipeline does
anyway, so the ratio reads "the gate costs N times the scan we already did".
"""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from pathlib import Path

from bench.common import Result, median, ratio, spread
from bench.payloads import text_mail
from bench.servers import clamd

NAME = "egress_text"
TITLE = "egress gate (clamd on the rebuilt mail + checker) per text mail vs the original's scan"
_LINKS = "\n".join(
    f"詳細: https://www.city{i}.example.lg.jp/info/{i}?id={i} www.example{i}.co.jp"
    for i in range(10)
)


def _mail(i: int) -> bytes:
    if i % 2 == 0:
        return text_mail(i, lines=30)
    msg = EmailMessage()
    msg["From"] = "sender@example.co.jp"
    msg["To"] = "user@town.example.lg.jp"
    msg["Subject"] = f"リンク付きのお知らせ（第{i}号）"
    msg.set_content("本文です。\n" * 20 + _LINKS + "\n")
    return msg.as_bytes()


def run(work: Path, quick: bool) -> Result:
    from gateway.egress.check import check_message
    from gateway.pipeline import sanitize_message
    from gateway.scan.clamd import ClamdScanner
    from gateway.settings import load_settings
    from gateway.spool import JobMeta, new_id

    n = 10 if quick else 200
    settings = load_settings(None)
    mails = [_mail(i) for i in range(n)]
    scan_in: list[float] = []
    sanitize: list[float] = []
    scan_out: list[float] = []
    check: list[float] = []
    with clamd(work) as address:
        scanner = ClamdScanner(address, timeout=60)

        async def one(raw: bytes) -> None:
            t0 = time.monotonic()
            if not (await scanner.scan(raw)).clean:
                raise RuntimeError("clean mail scanned positive")
            t1 = time.monotonic()
            out = sanitize_message(
                raw, JobMeta(id=new_id(), kind="mail", received_at=0), settings, None
            )
            t2 = time.monotonic()
            if not (await scanner.scan(out.data)).clean:
                raise RuntimeError("rebuilt mail scanned positive")
            t3 = time.monotonic()
            check_message(out.data)
            t4 = time.monotonic()
            scan_in.append(t1 - t0)
            sanitize.append(t2 - t1)
            scan_out.append(t3 - t2)
            check.append(t4 - t3)

        async def main() -> None:
            await one(mails[0])  # warm-up, excluded
            scan_in.clear(), sanitize.clear(), scan_out.clear(), check.clear()
            for raw in mails:
                await one(raw)

        asyncio.run(main())
    gate = [a + b for a, b in zip(scan_out, check, strict=True)]
    result = Result(
        NAME, TITLE, ratio(median(gate), median(scan_in)), "egress ms / original scan ms"
    )
    ms = "{:.2f}"
    result.add("egress gate per mail (scan + check)", spread([g * 1000 for g in gate], ms) + " ms")
    result.add("  clamd scan of the rebuilt mail", spread([s * 1000 for s in scan_out], ms) + " ms")
    result.add("  independent checker", spread([c * 1000 for c in check], ms) + " ms")
    result.add(
        "clamd scan of the original", spread([s * 1000 for s in scan_in], ms) + " ms", "baseline"
    )
    result.add("parse + disarm + rebuild", spread([s * 1000 for s in sanitize], ms) + " ms")
    result.add("mails", f"{n}", "half with 10 links each; one warm-up excluded")
    return result
