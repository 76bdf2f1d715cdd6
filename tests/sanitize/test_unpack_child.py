"""7z and olevba run in the jail; the trusted side believes nothing the unpacker says unbounded.

The records are what a compromised ``unpack_child`` could send (failure injection by writing
its output directly): lies about sizes, types, names, counts and the end of the stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import ArchiveLimit, ConversionFailed, Encrypted, IsolationUnavailable
from gateway.sanitize import jail
from gateway.sanitize.archive.budget import ArchiveBudget
from gateway.sanitize.archive.entry import Entry
from gateway.sanitize.archive.sevenzip import parse_sevenzip_records
from tests.sanitize.test_archive import make_ctx, run, sevenzip


def _rec(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


END = _rec(end=True)


def _parse(out: bytes, max_entries: int = 10, packed: int = 1000) -> list[Entry]:
    return parse_sevenzip_records(out, max_entries, ArchiveBudget(packed, make_ctx()))


def test_honest_records_are_accepted() -> None:
    out = _rec(name="a.txt", kind="file", size=3) + b"abc" + _rec(name="l", kind="link", size=0)
    entries = _parse(out + END)
    assert [(e.name, e.kind) for e in entries] == [("a.txt", "file"), ("l", "link")]
    assert entries[0].read is not None and entries[0].read() == b"abc"


@pytest.mark.parametrize(
    "out",
    [
        b"",  # nothing at all
        _rec(name="a", kind="file", size=3) + b"abc",  # no end record
        _rec(name="a", kind="file", size=10) + b"abc" + END,  # size beyond the output
        _rec(name="a", kind="file", size=-1) + END,
        _rec(name="a", kind="file", size=True) + END,
        _rec(name="a", kind="file", size="3") + END,
        _rec(name="a", kind="exe", size=0) + END,
        _rec(name="a", kind="link", size=5) + b"xxxxx" + END,  # a link with content
        _rec(name="", kind="file", size=0) + END,
        _rec(name=["a"], kind="file", size=0) + END,
        _rec(name="a", kind="file", size=0, path="/etc/passwd") + END,  # unknown key
        END + b"trailing",  # data after the end
        b"[1, 2]\n" + END,
        b"x" * 20000,  # a header line without a bound
        _rec(error="whatever"),
    ],
)
def test_lies_are_refused(out: bytes) -> None:
    with pytest.raises((ConversionFailed, ArchiveLimit)):
        _parse(out)


def test_sizes_are_charged_to_the_budget_before_being_believed() -> None:
    big = 2 * 1024 * 1024  # over RATIO_FLOOR for a 1000-byte archive at ratio 100 → cap 1 MiB
    out = _rec(name="z", kind="file", size=big) + bytes(big) + END
    with pytest.raises(ArchiveLimit):
        _parse(out)


def test_entry_count_is_bounded() -> None:
    out = b"".join(_rec(name=f"l{i}", kind="link", size=0) for i in range(11)) + END
    with pytest.raises(ArchiveLimit):
        _parse(out, max_entries=10)


def test_unsafe_and_duplicate_names_are_refused_here_too() -> None:
    out = (
        _rec(name="../evil", kind="file", size=1) + b"x"
        + _rec(name="a", kind="file", size=1) + b"x"
        + _rec(name="a", kind="file", size=1) + b"y"
        + END
    )  # fmt: skip
    kinds = [(e.name, e.kind) for e in _parse(out)]
    assert kinds == [("../evil", "refused"), ("a", "file"), ("a", "refused")]


def test_child_errors_map_to_reasons() -> None:
    with pytest.raises(Encrypted):
        _parse(_rec(error="encrypted"))
    with pytest.raises(ArchiveLimit):
        _parse(_rec(error="bomb"))
    with pytest.raises(ArchiveLimit):
        _parse(_rec(error="too_many", detail=5))


def test_7z_is_never_parsed_without_the_jail(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection: no bubblewrap. The archive is withheld, py7zr never runs in-process.
    import py7zr

    data = sevenzip({"a.txt": b"x"})

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("py7zr ran in the gateway process")

    monkeypatch.setattr(py7zr, "SevenZipFile", boom)
    monkeypatch.setattr(jail, "BWRAP", "/nonexistent/bwrap")
    jail.reset_probe()
    try:
        with pytest.raises(IsolationUnavailable):
            run(data, "a.7z")
    finally:
        monkeypatch.undo()
        jail.reset_probe()


# --- olevba in the jail ------------------------------------------------------------------------

VBA_PPT = "adversarial/office/oletools/olevba__sample_with_vba.ppt"
CLEAN_PPT = "documents/dangerzone/sample-ppt.ppt"


def test_ole_structure_is_parsed_only_in_the_jail(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import msoffcrypto
    import olefile
    from oletools import olevba

    from gateway.mime.detect import detect

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("an OLE parser ran in the gateway process")

    # Only the jailed child may parse OLE: in this process every parser explodes.
    monkeypatch.setattr(olevba, "VBA_Parser", boom)
    monkeypatch.setattr(olefile, "OleFileIO", boom)
    monkeypatch.setattr(msoffcrypto, "OfficeFile", boom)
    assert "macros" in detect((corpus / VBA_PPT).read_bytes(), "a.ppt").flags
    clean = detect((corpus / CLEAN_PPT).read_bytes(), "a.ppt")
    assert clean.kind == "ppt" and "macros" not in clean.flags
    # Fault injection: no jail. No guess from this side: the name's office kind, whose
    # converter then withholds the part (isolation_unavailable).
    monkeypatch.setattr(jail, "BWRAP", "/nonexistent/bwrap")
    jail.reset_probe()
    try:
        assert detect((corpus / VBA_PPT).read_bytes(), "a.ppt").kind == "ppt"
    finally:
        monkeypatch.undo()
        jail.reset_probe()


def test_ole_answers_of_a_lying_child_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.mime import detect as det
    from gateway.sanitize import sandbox

    for stdout in (
        b'{"r": "doc"}\n',  # no macros/encrypted booleans
        b'{"r": "doc", "macros": 1, "encrypted": false}\n',
        b'{"r": "doc", "macros": false, "encrypted": false, "x": 1}\n',
        b'{"r": 5}\n',
        b"[]\n",
        b"not json",
    ):

        def fake_run(*args: object, stdout: bytes = stdout, **kwargs: object) -> sandbox.RunResult:
            return sandbox.RunResult(0, stdout, b"", 0.0, None)

        monkeypatch.setattr(sandbox, "run", fake_run)
        assert det._ole_inspect(b"x") is None, stdout
        flags: set[str] = set()
        # An unusable answer ⇒ the kind from the name only, no flags believed.
        assert det._ole_kind(b"x", "a.xls", "", flags) == "xls" and flags == set()
    monkeypatch.setattr(
        sandbox,
        "run",
        lambda *a, **k: sandbox.RunResult(0, b'{"r": "exe"}\n', b"", 0.0, None),
    )
    assert det._ole_kind(b"x", "a.doc", "", set()) == "doc"  # unknown verdicts not believed


# --- TNEF in the jail --------------------------------------------------------------------------


def test_tnef_is_never_parsed_without_the_jail(monkeypatch: pytest.MonkeyPatch) -> None:
    import tnefparse

    from tests.sanitize import test_tnef

    data = test_tnef.make_tnef([(b"a.txt", b"hello")])
    assert [f.filename for f in test_tnef.run(data).files]  # with the jail: unpacked

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("tnefparse ran in the gateway process")

    monkeypatch.setattr(tnefparse, "TNEF", boom)
    monkeypatch.setattr(jail, "BWRAP", "/nonexistent/bwrap")
    jail.reset_probe()
    try:
        with pytest.raises(IsolationUnavailable):
            test_tnef.run(data)
    finally:
        monkeypatch.undo()
        jail.reset_probe()


def test_tnef_records_are_bounded_by_the_message_limits() -> None:
    from gateway.sanitize.archive.records import parse_records

    total = [0]

    def take(n: int) -> None:
        total[0] += n
        if total[0] > 10:
            raise ArchiveLimit("over")

    out = _rec(name="a", kind="file", size=11) + bytes(11) + END
    with pytest.raises(ArchiveLimit):
        parse_records(out, 5, take, what="TNEF", check_names=False)
    # Duplicate attachment names are normal in TNEF (image001.png twice): kept, renamed later.
    total[0] = 0
    twice = _rec(name="a", kind="file", size=1) + b"x" + _rec(name="a", kind="file", size=1) + b"y"
    entries = parse_records(twice + END, 5, take, what="TNEF", check_names=False)
    assert [e.kind for e in entries] == ["file", "file"]
