"""docs/architecture.md stays true: every module and symbol it names exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def _named_modules() -> set[str]:
    return set(re.findall(r"gateway/[A-Za-z0-9_/]+\.py", DOC.read_text(encoding="utf-8")))


def test_the_page_names_modules() -> None:
    # The check below proves nothing if the pattern finds nothing.
    assert len(_named_modules()) >= 30


def test_every_named_module_exists() -> None:
    missing = sorted(m for m in _named_modules() if not (ROOT / m).is_file())
    assert missing == []


def test_the_sanitizer_recipe_names_real_things() -> None:
    registry = importlib.import_module("gateway.sanitize.registry")
    detect = importlib.import_module("gateway.mime.detect")
    base = importlib.import_module("gateway.sanitize.base")
    errors = importlib.import_module("gateway.errors")
    sandbox = importlib.import_module("gateway.sanitize.sandbox")
    assert isinstance(registry.REGISTRY, dict) or hasattr(registry.REGISTRY, "keys")
    assert "pdf" in detect.KINDS
    assert hasattr(base, "Sanitizer") and hasattr(errors, "PartRefused")
    assert callable(sandbox.run)


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _calls(path: Path) -> set[str]:
    import ast

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
    return out


# Entry points that build what they use themselves: `mugai serve` (app.py), the offline
# `mugai sanitize` (offline.py) and the admin commands (admin_cli.py, cli.py).
_ROOTS = {"app.py", "offline.py", "admin_cli.py", "cli.py"}
_ADAPTERS = {"Store", "ClamdScanner", "SmtpRelay", "MaildirRelay", "Pipeline", "OfficePool"}


def test_one_composition_root() -> None:
    """Only the entry points build adapters; the API, workers, SMTP intake and watcher are
    handed theirs, and nothing imports the composition root (not even for types)."""
    checked = 0
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        rel = path.relative_to(ROOT / "gateway").as_posix()
        if rel in _ROOTS:
            continue
        checked += 1
        imports = _imports(path)
        assert not {"gateway.app", "gateway.app.Gateway"} & imports, rel
        built = _calls(path) & _ADAPTERS
        if rel == "sanitize/office.py":
            built.discard("OfficePool")  # its own classmethod constructor
        assert built == set(), (rel, built)
    assert checked > 50


def test_a_planted_adapter_is_found(tmp_path: Path) -> None:
    # The scan above proves nothing unless it sees a construction and a type import.
    planted = tmp_path / "x.py"
    planted.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.app import Gateway\n"
        "s = Store('sqlite://')\nr = relay.SmtpRelay('x')\n",
        encoding="utf-8",
    )
    assert "gateway.app" in _imports(planted)
    assert {"Store", "SmtpRelay"} <= _calls(planted)
