"""Small filesystem helpers shared by the offline command and the watched folder."""

from __future__ import annotations

import os
from pathlib import Path


def unique_path(path: Path) -> Path:
    """``path``, or ``name-2.ext``, ``name-3.ext``… when it already exists (never overwrite)."""
    if not path.exists():
        return path
    for i in range(2, 100_000):
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see either nothing or the whole file (hidden tmp name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)
