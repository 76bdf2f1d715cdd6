"""gateway/serialize.py: the one JSON form of the value types (spool metadata, reports)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gateway.model import Action, MessageReport, PartReport, ScanResult
from gateway.serialize import dumps, load, plain
from gateway.spool import JobMeta

INNER = PartReport("2.1", "中身.exe", "", "exe", Action.REMOVED, ("executable",), 10)
OUTER = PartReport(
    "2", "見積.zip", "application/zip", "zip", Action.CONVERTED, ("archive",), 99,
    sha256="ab" * 32, outputs=("見積.pdf",), children=(INNER,),
)  # fmt: skip


def test_a_report_is_plain_json_with_enum_values_and_nested_children() -> None:
    data = plain(MessageReport(parts=(OUTER,), tokens=("CONV_ATTACH",), scan=ScanResult(True)))
    assert json.loads(json.dumps(data)) == data  # builtins only
    part = data["parts"][0]
    assert part["action"] == "converted" and type(part["action"]) is str
    assert part["children"][0]["action"] == "removed"
    assert part["children"][0]["filename"] == "中身.exe"
    assert part["outputs"] == ["見積.pdf"]
    assert data["scan"] == {"clean": True, "signature": "", "seconds": 0.0, "auth": {}}


def test_spool_metadata_round_trips_on_one_ascii_line() -> None:
    meta = JobMeta(
        "0193a", "mail", "a@example.jp", ("x@town.lg.jp",), 1.5, 2, "192.0.2.1", "helo",
        "請求書\n\u2028.pdf", {"relayed": True, "recoveries": 1},
    )  # fmt: skip
    line = meta.to_json()
    assert line.isascii() and b"\n" not in line
    assert JobMeta.from_json(line) == meta


def test_old_spool_lines_still_load() -> None:
    # A spool written before a field was added: the missing ones take their defaults.
    assert JobMeta.from_json(b'{"id": "x", "kind": "file"}') == JobMeta("x", "file")


def test_a_wrong_type_is_refused_not_guessed() -> None:
    with pytest.raises(ValidationError):
        load(JobMeta, {"id": "x", "kind": "mail", "attempts": "many"})


def test_dumps_is_the_spool_form() -> None:
    assert dumps({"name": "ü"}) == b'{"name": "\\u00fc"}'
