"""Record statuses are spelled once, in gateway/vocab.py: a typo elsewhere would be a silent
bug (a comparison that is never true), so a scan of the code and the console templates fails
on any status spelled as a bare string where a status is compared, assigned or listed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gateway.vocab import FINAL_STATUSES, MessageStatus, ReleaseStatus

ROOT = Path(__file__).parents[1] / "gateway"
STATUS_WORDS = {s.value for s in MessageStatus} | {s.value for s in ReleaseStatus}


def _strings(node: ast.AST) -> list[ast.Constant]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    if isinstance(node, (ast.Tuple, ast.Set, ast.List)):
        return [e for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        if node.func.id in ("frozenset", "set", "tuple"):
            return _strings(node.args[0])
    return []


def _is_status_target(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "status") or (
        isinstance(node, ast.Attribute) and node.attr == "status"
    )


def bare_statuses(source: str) -> list[tuple[int, str]]:
    """(line, word) of each status spelled as a string in a status position."""
    found: list[ast.Constant] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                found += _strings(side)
        elif isinstance(node, ast.keyword) and node.arg == "status":
            found += _strings(node.value)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(_is_status_target(t) for t in targets):
                found += _strings(node.value)
        elif isinstance(node, (ast.Tuple, ast.Set, ast.List)):
            words = _strings(node)
            if len(words) >= 2 and len(words) == len(node.elts):
                if all(w.value in STATUS_WORDS for w in words):
                    found += words
        elif isinstance(node, ast.Dict):
            keys = [
                k for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)
            ]
            if sum(k.value in STATUS_WORDS for k in keys) >= 2:
                found += keys
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id == "Literal":  # a Literal[...] of statuses instead of the enum
                found += [
                    c
                    for c in ast.walk(node.slice)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                ]
    return sorted({(c.lineno, c.value) for c in found if c.value in STATUS_WORDS})


# Other vocabularies that happen to share a word: the relay's per-recipient answer
# (gateway/api/release_flow.py: "rejected"/"deferred" recipients of one SMTP transaction).
NOT_STATUSES = {("api/release_flow.py", "rejected"), ("api/release_flow.py", "deferred")}


def test_no_status_is_spelled_outside_its_enum() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "vocab.py":
            continue
        rel = path.relative_to(ROOT).as_posix()
        for line, word in bare_statuses(path.read_text()):
            if (rel, word) not in NOT_STATUSES:
                offenders.append(f"gateway/{rel}:{line}: {word!r}")
    assert offenders == []


_TEMPLATE_TAG = re.compile(r"\{%.*?%\}", re.S)
_QUOTED = re.compile(r"""['"]([a-z_]+)['"]""")


def test_no_status_is_spelled_in_a_template() -> None:
    offenders = []
    for path in sorted((ROOT / "api" / "console" / "templates").rglob("*.html")):
        for tag in _TEMPLATE_TAG.findall(path.read_text()):
            offenders += [f"{path.name}: {w}" for w in _QUOTED.findall(tag) if w in STATUS_WORDS]
    assert offenders == []


def test_the_scan_finds_a_planted_typo() -> None:
    planted = (
        "if row.status == 'quarantined':\n    pass\n"
        "msg.status = 'released'\n"
        "OPEN = frozenset({'pending', 'approved'})\n"
        "store.update(x, status='deferred')\n"
        "S = Literal['done', 'withheld']\n"
        "row.status = MessageStatus.DELIVERED\n"
    )
    assert bare_statuses(planted) == [
        (1, "quarantined"),
        (3, "released"),
        (4, "approved"),
        (4, "pending"),
        (5, "deferred"),
        (6, "done"),
        (6, "withheld"),
    ]


def test_members_behave_as_their_stored_strings() -> None:
    # Rows read back from SQLite/PostgreSQL are plain str: they must match members, in sets
    # and dict keys too (StrEnum hashes as its value).
    assert "delivered" in FINAL_STATUSES and "processing" not in FINAL_STATUSES
    assert {MessageStatus.DONE: 1}["done"] == 1
    assert f"{ReleaseStatus.PENDING}" == "pending"
