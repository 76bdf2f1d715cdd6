"""The egress checker is written apart: it imports nothing of the sanitizers or the disarmer."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.egress

FORBIDDEN = ("gateway.sanitize", "gateway.mime", "gateway.pipeline", "gateway.offline")


def test_egress_imports_no_sanitizer_or_disarm_helper() -> None:
    package = Path(gateway.egress.__file__).parent
    files = sorted(package.glob("*.py"))
    assert len(files) >= 3
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(FORBIDDEN), (path.name, name)
