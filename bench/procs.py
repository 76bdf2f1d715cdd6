"""Running the fresh-process helpers (ours_child, pdf_baseline) and reading their JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO


def run_json(module: str, *args: str, timeout: float = 900) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [PYTHON, "-m", module, *args],
        cwd=REPO, env=env, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(
            f"{module} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
        )
    data: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return data


def ours(src: Path, out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run_json("bench.ours_child", str(src), str(out_dir))
    if result["status"] != ["sanitized"] or len(result["outputs"]) != 1:
        raise RuntimeError(f"mugai did not sanitize {src.name}: {result['status']}")
    return result


def baseline(src: Path, dst: Path, dpi: int) -> dict[str, Any]:
    return run_json("bench.pdf_baseline", str(src), str(dst), str(dpi))


def pdf_pages(path: Path) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path.read_bytes())
    try:
        return len(pdf)
    finally:
        pdf.close()
