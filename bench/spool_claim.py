"""spool_claim: claiming jobs from a deep spool — the ready index vs a directory scan per claim.

Both sides are the same ``Spool`` code on the same disk in the same run: ``rescan_every=0``
makes every claim scan queue/ and deferred/ (the behaviour before issue 14), the default
serves claims from the in-memory index. The spool is filled to a depth of 3,000 (600 in
--quick) and drained; CPU ms per claim is process time, beside the wall-clock rate.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.common import Result, median, ratio, spread

NAME = "spool_claim"
TITLE = "spool claims/s at depth 3,000: ready index vs a directory scan per claim"


def _drain(root: Path, depth: int, rescan_every: float) -> tuple[float, float]:
    from gateway.spool import JobMeta, Spool, new_id

    shutil.rmtree(root, ignore_errors=True)
    spool = Spool(root, rescan_every=rescan_every)
    for _ in range(depth):
        spool.put(JobMeta(id=new_id(), kind="mail", rcpt_tos=("u@town.example.lg.jp",)), b"x")
    wall, cpu = time.monotonic(), time.process_time()
    n = 0
    while (job := spool.claim()) is not None:
        spool.done(job)
        n += 1
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    if n != depth:
        raise RuntimeError(f"claimed {n} of {depth}")
    return n / wall, cpu * 1000 / n


def run(work: Path, quick: bool) -> Result:
    depth, rounds = (600, 2) if quick else (3000, 3)
    rates: dict[str, list[float]] = {"index": [], "scan": []}
    cpu: dict[str, list[float]] = {"index": [], "scan": []}
    for i in range(rounds):
        for mode in ("index", "scan") if i % 2 == 0 else ("scan", "index"):
            r, c = _drain(work / f"spool-{mode}", depth, 1.0 if mode == "index" else 0.0)
            rates[mode].append(r)
            cpu[mode].append(c)
    result = Result(
        NAME, TITLE, ratio(median(rates["index"]), median(rates["scan"])),
        "claims/s index / scan per claim",
    )  # fmt: skip
    result.add("claims/s, index", spread(rates["index"], "{:.0f}"), f"depth {depth}, incl. done()")
    result.add("claims/s, scan per claim", spread(rates["scan"], "{:.0f}"))
    result.add("CPU ms per claim, index", spread(cpu["index"], "{:.3f}"))
    result.add("CPU ms per claim, scan per claim", spread(cpu["scan"], "{:.3f}"))
    result.notes.append(
        "done() fsyncs active/ per job on both sides; that is most of the index side's time."
    )
    return result
