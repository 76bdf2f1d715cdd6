"""mugai's offline sanitizer in a fresh process: `python -m bench.ours_child IN OUT_DIR`.

Imports happen before the clock starts (as in the baseline); then `gateway.offline.
sanitize_paths` runs on IN. Prints JSON ``{"seconds", "bytes", "outputs", "report",
"maxrss_mib", "children_maxrss_mib"}``; a fresh process keeps the rusage peaks clean.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    src, out_dir = Path(argv[0]), Path(argv[1])
    from gateway.offline import sanitize_paths
    from gateway.sanitize.sandbox import peak_rss_mb
    from gateway.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="mugai-bench-data-") as data_dir:
        settings = load_settings(None, storage={"data_dir": data_dir})
        started = time.monotonic()
        report, _ = sanitize_paths([src], out_dir, settings, scan=None)  # speed, not viruses
        seconds = time.monotonic() - started
    outputs = [Path(p) for item in report["items"] for p in item.get("outputs", [])]
    me, kids = peak_rss_mb()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "bytes": sum(p.stat().st_size for p in outputs),
                "outputs": [str(p) for p in outputs],
                "status": [item.get("status") for item in report["items"]],
                "maxrss_mib": me,
                "children_maxrss_mib": kids,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
