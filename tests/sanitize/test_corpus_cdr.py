"""Held-in corpus through the real registry, checked independently (issue 3 "done when").

Every file under adversarial/ and documents/ must come out as allowed types with no active
content, or be removed with a reason: no crash, no hang, no unsafe output. The check uses
other tools than the sanitizers (libmagic, pikepdf, oletools).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import magic
import pytest
from oletools.olevba import FileOpenError, VBA_Parser

from gateway.model import Action, PartReport
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.office import OfficePool
from gateway.sanitize.registry import sanitize_part
from gateway.settings import Settings, load_settings
from tests.checks import check_clean_file

_OFFICE_MAGIC = ("application/msword", "application/vnd.", "application/CDFV2", "application/x-ole")


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def office(settings: Settings) -> Iterator[OfficePool]:
    pool = OfficePool.from_settings(settings.sanitize)
    yield pool
    pool.close()


def _office_container(name: str, data: bytes) -> str | None:
    """olevba's view: the container type when it opens the bytes as an Office file.

    olevba reads any text as "VBA source" (type Text); that is not a container."""
    try:
        vba = VBA_Parser(name, data=data)
    except FileOpenError:
        return None
    try:
        return None if vba.type == "Text" else str(vba.type)
    finally:
        vba.close()


def _walk(report: PartReport) -> Iterator[PartReport]:
    stack = [report]
    while stack:
        r = stack.pop()
        yield r
        stack.extend(r.children)


@pytest.mark.corpus
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("group", ["adversarial", "documents"])
def test_corpus_files_come_out_clean_or_removed_with_reason(
    corpus: Path, settings: Settings, office: OfficePool, group: str
) -> None:
    outcomes: Counter[str] = Counter()
    files = sorted(p for p in (corpus / group).rglob("*") if p.is_file())
    assert files
    for path in files:
        ctx = Context(
            limits=settings.sanitize,
            pages=PageBudget(settings.sanitize.max_pages_per_message),
            office=office,
        )
        report, outputs = sanitize_part(path.read_bytes(), path.name, "", ctx, "1")
        for r in _walk(report):
            if r.action is Action.REMOVED:
                assert r.reasons, (path, r)
                assert "internal_error" not in r.reasons, (path, r)
        for out in outputs:
            check_clean_file(out.content_type, out.data)
            kind = magic.from_buffer(out.data[:65536], mime=True)
            assert not kind.startswith(_OFFICE_MAGIC), (path, out.filename, kind)
            assert _office_container(out.filename, out.data) is None, (path, out.filename)
            assert "\u202e" not in out.filename and "/" not in out.filename
        outcomes[report.action.value] += 1
        for reason in report.reasons:
            outcomes[reason] += 1
    print(group, dict(outcomes))
    assert outcomes["converted"] + outcomes["kept"] > 0
