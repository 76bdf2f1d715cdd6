"""One closed set of reason codes: every code used anywhere in gateway/ has both labels."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway
from gateway import errors
from gateway.mime.notice import REASONS_JA
from gateway.reasons import LABELS_EN, LABELS_JA, Reason, all_reasons, label_ja

ROOT = Path(gateway.__file__).resolve().parent
_REASON_NAMES = {"reason", "reasons"}
# Calls whose positional arguments at these indexes are reason codes.
_POSITIONAL = {"Quarantine": 0, "mark_quarantined": 1, "mark_deferred": 1, "FileResult": 2}


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    if isinstance(node, ast.BoolOp):  # reasons = reasons or ("empty_result",)
        return [s for v in node.values for s in _strings(v)]
    if isinstance(node, ast.IfExp):  # "relay_timeout" if ... else "queue_timeout"
        return _strings(node.body) + _strings(node.orelse)
    return []


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def used_codes() -> dict[str, str]:
    """code → where it is used, from every module of gateway/ (except the label tables)."""
    found: dict[str, str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "reasons.py" or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values: list[str] = []
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if node.value is not None and any(_name(t) in _REASON_NAMES for t in targets):
                    values = _strings(node.value)
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg in _REASON_NAMES:
                        values += _strings(kw.value)
                index = _POSITIONAL.get(_name(node.func))
                if index is not None and len(node.args) > index:
                    values += _strings(node.args[index])
            for value in values:
                if value:
                    found.setdefault(value, f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return found


def _error_classes(cls: type) -> list[type]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _error_classes(sub)]


def test_every_reason_has_japanese_and_english_labels() -> None:
    for code in Reason:
        assert LABELS_JA.get(code, "").strip(), code
        assert LABELS_EN.get(code, "").strip(), code
        assert not LABELS_JA[code].isascii(), code  # really Japanese
    assert set(LABELS_JA) == set(LABELS_EN) == set(Reason)


def test_every_code_used_in_gateway_is_in_the_closed_set() -> None:
    used = used_codes()
    # The scan itself must see the codes we know are there, or it proves nothing.
    # (empty_archive, empty_tnef, queue_timeout and relay_timeout are Reason members now.)
    for known in ("virus_found", "empty_result", "removed", "links_disarmed"):
        assert known in used, known
    unknown = {code: where for code, where in used.items() if code not in set(Reason)}
    assert unknown == {}


def test_every_exception_reason_is_in_the_closed_set() -> None:
    for cls in _error_classes(errors.MugaiError):
        assert cls.reason in set(Reason), cls


def test_notice_labels_come_from_the_one_table() -> None:
    assert set(REASONS_JA) <= set(Reason)
    assert REASONS_JA["empty_archive"] and REASONS_JA["empty_tnef"]


def test_labels_for_unknown_codes_and_union() -> None:
    assert label_ja("virus_found") == "ウイルスを検知"
    assert label_ja("legacy_code") == "legacy_code"
    parts = [{"reasons": ["a"], "children": [{"reasons": ["b", "a"]}]}, {"reasons": None}, "x"]
    assert all_reasons(["c", "a"], parts) == ["c", "a", "b"]
