"""Run the reliability scenarios with a larger load and write docs/reliability.md.

    .venv/bin/python scripts/reliability_report.py [--scale 1.0] [--out docs/reliability.md]

The scenarios are the ones the tests in tests/reliability run with small loads (real gateway,
real clamd, real relay sink, real processes; fakes only for the injected faults). The fuzzing
figures come from bench/fuzz/results.json (written by bench/fuzz/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.plugins.clamd import start_clamd  # noqa: E402
from tests.reliability import scenarios as sc  # noqa: E402
from tests.reliability import stall  # noqa: E402

FUZZ_RESULTS = REPO / "bench" / "fuzz" / "results.json"

INTRO = """# Reliability and security figures

Produced by `scripts/reliability_report.py` (do not edit by hand; rerun it). Every scenario runs
the real gateway (SMTP listener, spool, workers, pipeline, SQLite store) against a real clamd
and a real SMTP relay sink; the crash scenario runs `mugai serve` as a separate process and
kills it with SIGKILL. Faults are injected with small fakes only where the fault itself is the
point (a clamd that hangs or answers garbage, converter plugins that crash).

The same scenarios run in CI with smaller loads: `tests/reliability/` (and the abuse tests in
`tests/security/`); `MUGAI_LONG=1` raises the loads of the crash and fuzz tests.

Columns: **accepted** = mails that got `250 queued`; **delivered** = distinct mails the relay
received; **quarantined** = kept in quarantine (by design in that scenario); **lost** = accepted
but neither delivered nor quarantined; **duplicated** = extra copies the relay received.
"""

_FINDING_ROWS = [
    (
        "fuzzing (hypothesis `sanitize`, atheris)",
        "**Header injection.** An encoded-word that our decoder leaves alone (empty charset "
        "`=??B?…?=`, or a label over 64 characters) is decoded *again* by Python's `email` "
        "package when `gateway/mime/rebuild.py` sets the header, CR/LF included, so the "
        "delivered message gets extra header lines (`Bcc:`, anything). Subject and the display "
        "names of From/To/Cc/Reply-To.",
        "fixed in ce51ac4 (rebuild hardening); regression tests `tests/security/"
        "test_injection.py::test_encoded_crlf_never_makes_a_header`",
    ),
    (
        "fuzzing",
        "A subject with U+2028/U+2029 (Unicode line separators) made `build_message` raise "
        "`ValueError`; the worker's catch-all quarantined the whole mail as `internal_error` "
        "instead of delivering it.",
        "fixed in ce51ac4; regression test "
        "`test_unicode_line_separators_in_a_subject_are_delivered`",
    ),
    (
        "fuzzing",
        "An unterminated encoded-word in a Subject (cut by a bare LF) made the `email` folder "
        "raise `UnicodeEncodeError` while serialising: quarantine as `internal_error`, as in 2. "
        "Same root cause as 1; defusing `=?` fixes it.",
        "fixed in ce51ac4; covered by `tests/reliability/test_fuzz_mime.py`",
    ),
    (
        "atheris (after the hardening)",
        "A Message-ID with 8-bit characters (`<あい@example.jp>`) passes `_MSGID` in "
        "`rebuild.py` and makes serialising raise `UnicodeEncodeError`: the mail is "
        "quarantined as `internal_error` instead of delivered.",
        "fixed (`_MSGID` accepts printable ASCII only, as RFC 5322 says); regression test "
        "`test_non_ascii_message_ids_do_not_stop_delivery`",
    ),
    (
        "crash scenario",
        "A kill between the relay's `250` and the database update delivers that mail again "
        "after the restart (at-least-once, as Postfix). The copies carry the same `Message-ID` "
        "and `X-Mugai-Id`, so the LGWAN side can drop them.",
        "by design; counted in the table",
    ),
]

FINDINGS = (
    "## Findings\n\n| # | found by | what | status |\n|---|---|---|---|\n"
    + "".join(f"| {i} | {a} | {b} | {c} |\n" for i, (a, b, c) in enumerate(_FINDING_ROWS, 1))
    + """
Not findings, but worth knowing: every relay retry re-runs the whole pipeline (scan and
sanitize) on the original; with the default schedule (1m, 5m, 15m, 1h) that is negligible. The
SMTP idle timeout is reset only by complete commands, so a client trickling bytes is cut off
after `smtp.command_timeout` (tested); `smtp.max_connections` bounds how many can try at once.
"""
)


def fmt_table(rows: list[sc.Row]) -> str:
    out = [
        "| scenario | load | faults injected | accepted | delivered | quarantined | lost | "
        "duplicated | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.scenario} | {r.load} | {r.faults} | {r.accepted} | {r.delivered} | "
            f"{r.quarantined} | **{r.lost}** | {r.duplicated} | {r.seconds:g} |"
        )
    return "\n".join(out)


def fmt_notes(rows: list[sc.Row]) -> str:
    out = ["## Observations per scenario", ""]
    for r in rows:
        out.append(f"- **{r.scenario}**: " + "; ".join(r.notes))
    return "\n".join(out)


def fuzz_section() -> str:
    if not FUZZ_RESULTS.exists():
        return "## Fuzzing\n\nNo long run recorded yet: `bench/fuzz/run.py --minutes N`.\n"
    runs: list[dict[str, Any]] = json.loads(FUZZ_RESULTS.read_text())
    lines = [
        "## Fuzzing",
        "",
        "Long runs with `bench/fuzz/run.py` (hypothesis strategies for MIME structure, headers "
        "and charsets, see `tests/reliability/fuzz_targets.py`; atheris on raw bytes seeded "
        "with generated mails and corpus mails). Targets: `parse_message` (only `Permanent` "
        "may escape), the charset functions (total; lossless under the right label), "
        "`sanitize_message` with office=None (output passes `tests/checks.check_delivered`). "
        "CI runs 200 examples per property (`tests/reliability/test_fuzz_mime.py`).",
        "",
        "| date | engine | hours | inputs | distinct findings |",
        "|---|---|---:|---:|---:|",
    ]
    total_s = 0.0
    total_n = 0
    for run in runs:
        total_s += float(run.get("seconds", 0))
        total_n += int(run.get("inputs", 0))
        lines.append(
            f"| {run.get('date', '')} | {run['engine']} | {float(run.get('seconds', 0)) / 3600:.2f}"
            f" | {run.get('inputs', 0)} | {len(run.get('findings', {}))} |"
        )
    lines += ["", f"Total: {total_s / 3600:.2f} hours, {total_n} inputs.", ""]
    sigs: dict[str, int] = {}
    for run in runs:
        for sig, item in run.get("findings", {}).items():
            key = f"{run['engine']} — {sig}"
            sigs[key] = sigs.get(key, 0) + int(item.get("count", 1))
    if sigs:
        lines += ["Distinct failures seen (type and innermost gateway frame):", ""]
        lines += [f"- `{sig}` (×{n})" for sig, n in sorted(sigs.items())]
    return "\n".join(lines) + "\n"


async def run_all(scale: float, only: set[str] | None) -> list[sc.Row]:
    def n(x: int) -> int:
        return max(2, int(x * scale))

    work = Path(tempfile.mkdtemp(prefix="mugai-reliability-"))
    clamd = start_clamd(work / "clamd-daemon")
    extra: list[Any] = []

    def small_clamd() -> Any:
        # A clamd whose StreamMaxLength is below what mugai is told (too_large_to_scan).
        limits: dict[str, str | None] = {"StreamMaxLength": "256K", "MaxFileSize": "256K"}
        small = start_clamd(work / "clamd-small", tcp=False, overrides=limits)
        extra.append(small)
        return small

    plan: list[tuple[str, Callable[[Path], Awaitable[sc.Row | None]]]] = [
        ("crash", lambda w: sc.crash_burst(w, clamd.unix_address, total=n(1000), kills=3)),
        ("outage", lambda w: sc.relay_outage(w, clamd.unix_address, count=n(90))),
        ("expiry", lambda w: sc.relay_expiry(w, clamd.unix_address, count=n(50))),
        ("clamd", lambda w: sc.clamd_outage(w, clamd.unix_address, count=n(50), mode="down")),
        ("clamd-hang", lambda w: sc.clamd_outage(w, clamd.unix_address, count=n(20),
                                                 mode="hang")),
        ("clamd-garbage", lambda w: sc.clamd_outage(w, clamd.unix_address, count=n(20),
                                                    mode="garbage")),
        ("slow", lambda w: sc.clamd_slow(w, clamd.unix_address, count=n(40))),
        ("faults", lambda w: sc.converter_faults(w, clamd.unix_address,
                                                 rounds=max(1, int(3 * scale)))),
        ("backlog", lambda w: sc.backpressure(w, clamd.unix_address, count=n(60),
                                              backlog=n(20))),
        ("disk", lambda w: sc.disk_full(w, clamd.unix_address, count=n(40))),
        ("loop", lambda w: sc.mail_loop(w, clamd.unix_address, count=n(20))),
        # issue 13: a gateway that cannot be stalled
        ("store-sqlite", lambda w: stall.store_outage(w, clamd.unix_address, backend="sqlite",
                                                      count=n(20))),
        ("store-postgresql", lambda w: stall.store_outage(w, clamd.unix_address,
                                                          backend="postgresql", count=n(20))),
        ("poison", lambda w: stall.crash_loop(w, clamd.unix_address, innocent=n(6))),
        ("fairness", lambda w: stall.fairness(w, clamd.unix_address, count=n(20))),
        ("too-large", lambda w: stall.too_large_to_scan(w, small_clamd().unix_address,
                                                        count=n(5))),
    ]  # fmt: skip
    rows: list[sc.Row] = []
    try:
        for name, scenario in plan:
            if only and name not in only:
                continue
            print(f"== {name}", flush=True)
            sub = work / name
            sub.mkdir()
            row = await scenario(sub)
            if row is None:
                print("   skipped (needs root for the tmpfs)")
                continue
            print("  ", json.dumps(row.as_dict(), ensure_ascii=False), flush=True)
            rows.append(row)
    finally:
        clamd.stop()
        for other in extra:
            other.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every load")
    parser.add_argument("--only", nargs="*", help="scenario names (crash, outage, ...)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reliability.md")
    args = parser.parse_args()
    started = time.monotonic()
    rows = asyncio.run(run_all(args.scale, set(args.only) if args.only else None))
    lost = sum(r.lost for r in rows)
    env = (
        f"Run {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.monotonic() - started:.0f} s in total. Lost mails over all scenarios: **{lost}**."
    )
    doc = "\n".join([INTRO, env, "", fmt_table(rows), "", fmt_notes(rows), "",
                     fuzz_section(), FINDINGS])  # fmt: skip
    args.out.write_text(doc, encoding="utf-8")
    print(f"wrote {args.out}; lost={lost}")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
