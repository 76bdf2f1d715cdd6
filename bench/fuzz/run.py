"""Long fuzzing runs (not in CI): hypothesis strategies and atheris on raw bytes.

    .venv/bin/python bench/fuzz/run.py --minutes 30 [--engine hypothesis|atheris|both]

The properties are those of tests/reliability/fuzz_targets.py. Findings are deduplicated by
exception type and the innermost gateway frame; each run is appended to
bench/fuzz/results.json, which scripts/reliability_report.py sums up for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "fuzz" / "results.json"
ATHERIS_TARGET = REPO / "bench" / "fuzz" / "atheris_target.py"


def signature(exc: BaseException) -> str:
    """Exception type plus the innermost frame in our code: one line per distinct bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/gateway/" in f.filename] or frames[-1:]
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__} at {where}"


def _counted(
    check: Callable[..., None], counts: dict[str, int], name: str
) -> Callable[[tuple[Any, ...]], None]:
    def body(args: tuple[Any, ...]) -> None:
        counts[name] += 1
        check(*args)

    return body


def hypothesis_run(seconds: float) -> dict[str, Any]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from tests.reliability import fuzz_targets as ft

    targets: dict[str, tuple[Any, Callable[..., None]]] = {
        "parse": (st.tuples(ft.messages()), ft.check_parse),
        "sanitize": (st.tuples(ft.messages()), ft.check_sanitize),
        "headers": (st.tuples(ft.encoded_word_header()), ft.check_header_text),
        "roundtrip": (st.tuples(ft.plain_texts, st.sampled_from(ft.CODECS)),
                      ft.check_body_roundtrip),
        "bytes": (st.tuples(st.binary(max_size=2000), st.sampled_from(ft.LABELS)),
                  ft.check_bytes),
    }  # fmt: skip
    counts = dict.fromkeys(targets, 0)
    findings: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, (strategy, check) in targets.items():
            if time.monotonic() >= deadline:
                break

            test = settings(
                max_examples=100,
                deadline=None,
                database=None,
                # No shrinking: a long run wants breadth; the regression tests hold minimal cases.
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(strategy)(_counted(check, counts, name)))
            try:
                test()
            except Exception as exc:  # noqa: BLE001 - a finding, recorded and deduplicated
                found = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
                for one in found:
                    sig = f"{name}: {signature(one)}"
                    notes = str(one).splitlines()[0][:200] if str(one) else ""
                    notes += "\n" + "\n".join(getattr(one, "__notes__", []))[:2000]
                    entry = findings.setdefault(sig, {"count": 0, "example": notes})
                    entry["count"] += 1
    return {"engine": "hypothesis", "inputs": sum(counts.values()), "per_target": counts,
            "findings": findings}  # fmt: skip


def seeds(directory: Path, count: int = 80) -> None:
    """Starting inputs: generated messages and, where present, corpus mails (not copied into
    the repository: they live in a temporary directory for the run only)."""
    from hypothesis import HealthCheck, given, settings

    from tests.conftest import corpus_dir
    from tests.reliability import fuzz_targets as ft

    made: list[bytes] = []

    @settings(max_examples=count, database=None, suppress_health_check=list(HealthCheck))
    @given(ft.messages())
    def collect(raw: bytes) -> None:
        made.append(raw)

    collect()
    corpus = corpus_dir()
    if corpus is not None:
        mails = sorted(p for p in corpus.rglob("*.eml") if p.stat().st_size < 64_000)
        random.Random(0).shuffle(mails)
        made += [p.read_bytes() for p in mails[:count]]
    for i, raw in enumerate(made):
        (directory / f"seed-{i:04d}").write_bytes(raw)


def atheris_run(seconds: float) -> dict[str, Any]:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {"engine": "atheris", "skipped": "atheris not installed", "inputs": 0,
                "findings": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mugai-fuzz-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        corpus.mkdir()
        seeds(corpus)
        findings_file = work / "findings.jsonl"
        env = {**os.environ, "MUGAI_FUZZ_FINDINGS": str(findings_file), "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, str(ATHERIS_TARGET), f"-max_total_time={int(seconds)}",
             "-max_len=65536", "-timeout=120", "-rss_limit_mb=6144", str(corpus)],
            capture_output=True, text=True, env=env, cwd=REPO, check=False,
        )  # fmt: skip
        runs = re.findall(r"Done (\d+) runs", done.stderr)
        progress = re.findall(r"^#(\d+)\s", done.stderr, re.M)
        inputs = int(runs[-1]) if runs else int(progress[-1]) if progress else 0
        findings: dict[str, dict[str, Any]] = {}
        if findings_file.exists():
            for line in findings_file.read_text().splitlines():
                item = json.loads(line)
                entry = findings.setdefault(
                    item["signature"], {"count": 0, "example": item["example"]}
                )
                entry["count"] += 1
        if done.returncode != 0 and not runs:
            findings.setdefault("atheris: engine stopped", {"count": 1,
                                "example": done.stderr[-2000:]})  # fmt: skip
    return {"engine": "atheris", "inputs": inputs, "findings": findings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--engine", choices=["hypothesis", "atheris", "both"], default="both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    engines = ["hypothesis", "atheris"] if args.engine == "both" else [args.engine]
    seconds = args.minutes * 60 / len(engines)
    runs = []
    for engine in engines:
        started = time.monotonic()
        result = hypothesis_run(seconds) if engine == "hypothesis" else atheris_run(seconds)
        result["seconds"] = round(time.monotonic() - started, 1)
        result["date"] = time.strftime("%Y-%m-%d %H:%M")
        runs.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "findings"}))
        for sig, item in result["findings"].items():
            print(f"  FINDING ×{item['count']}: {sig}")
    history = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps(history + runs, ensure_ascii=False, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
