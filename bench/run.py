"""Run the benchmarks and append a section to docs/benchmarks.md.

    .venv/bin/python -m bench.run [--quick] [--only NAME...] [--output FILE]

Each benchmark measures its own baseline in the same run; the headline of each table is the
ratio to that baseline, so results from different (noisy, 2-core) machines stay comparable.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench.common import REPO, Result, git_commit, machine_line

BENCHMARKS = (
    "smtp_text",
    "pdf_pages",
    "office_warm_cold",
    "rss_300",
    "accept_latency",
    "burst_rss",
    "jail_cost",
    "egress_text",
    "qr_mask_pdf",
    "spool_claim",
    "sanitize_startup",
)
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Produced by `.venv/bin/python -m bench.run [--quick] [--only NAME...]`, which appends one
section per run. Every benchmark measures its baseline in the same run on the same machine, and
the first row of each table is the ratio to that baseline: compare ratios across machines, not
absolute numbers. Values are medians with (min–max, n) over repeats; latencies are p50 / p95 /
p99. `--quick` runs are smoke-test sized and say little about performance.
"""


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def section(
    results: list[Result], failures: dict[str, str], quick: bool, argv: list[str], load: str
) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"## {now} — {'quick' if quick else 'full'} run",
        "",
        f"- machine: {machine_line()}",
        f"- commit: `{git_commit()}`",
        f"- load average at start: {load}; at end: {_load()} (other work on the machine skews "
        "absolute numbers; ratios less so)",
        f"- command: `{' '.join(['python -m bench.run', *argv])}`",
        "",
    ]
    for result in results:
        lines.append(result.markdown())
    for name, error in failures.items():
        lines += [f"### {name} — FAILED", "", "```", error.strip(), "```", ""]
    return "\n".join(lines)


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        path.write_text(_HEADER, encoding="utf-8")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n" + text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    results: list[Result] = []
    failures: dict[str, str] = {}
    load = _load()
    work_root = Path(tempfile.mkdtemp(prefix="mugai-bench-"))
    try:
        for name in names:
            work = work_root / name
            work.mkdir()
            started = time.monotonic()
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            try:
                result = _module(name).run(work, args.quick)
            except KeyboardInterrupt:
                raise
            # BaseException: tests.plugins.clamd reports a failed start with pytest.fail.
            # One broken benchmark must not lose the others' numbers.
            except BaseException:
                failures[name] = traceback.format_exc(limit=8)
                print(failures[name], file=sys.stderr)
                continue
            elapsed = time.monotonic() - started
            result.add("benchmark wall time", f"{elapsed:.0f} s")
            results.append(result)
            print(
                f"[bench] {name}: {result.ratio:.2f}x {result.ratio_label} ({elapsed:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if args.keep:
            print(f"[bench] work directory kept: {work_root}", file=sys.stderr)
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    append(args.output, section(results, failures, args.quick, argv, load))
    print(f"[bench] appended to {args.output}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
