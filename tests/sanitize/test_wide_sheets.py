"""Wide spreadsheets fit the page width (issue 16): checked by page count and page shape."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import pytest

from gateway.sanitize import office
from gateway.sanitize.office import OfficePool
from gateway.settings import SanitizeSettings
from tests.sanitize.test_office import _convert_with_soffice

pytestmark = pytest.mark.skipif(
    not (Path("/usr/bin/soffice").exists() and Path(office.SYSTEM_PYTHON).exists()),
    reason="LibreOffice or the system python with python3-uno is not installed",
)

_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def wide_fods(columns: int = 40, rows: int = 12) -> str:
    cells = "".join(
        "<table:table-row>"
        + "".join(
            f"<table:table-cell><text:p>列{c}行{r}データ</text:p></table:table-cell>"
            for c in range(columns)
        )
        + "</table:table-row>"
        for r in range(rows)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document {_NS} '
        'office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">'
        f'<office:body><office:spreadsheet><table:table table:name="台帳">{cells}'
        "</table:table></office:spreadsheet></office:body></office:document>"
    )


@pytest.fixture(scope="module", params=[1, 0], ids=["warm", "cold"])
def pool(request: pytest.FixtureRequest) -> Iterator[OfficePool]:
    # office_pool = 0 (a listener per document) must fit wide sheets exactly as the warm pool.
    p = OfficePool.from_settings(SanitizeSettings(office_pool=request.param))
    yield p
    p.close()


def test_wide_sheet_is_one_landscape_page_wide(
    pool: OfficePool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("wide")
    src = out / "wide.fods"
    src.write_text(wide_fods(), encoding="utf-8")
    xlsx = _convert_with_soffice(src, "xlsx", out)
    pdf = pool.to_pdf(xlsx, "xlsx", timeout=120)
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        # 40 columns at the default width would print across several portrait pages.
        assert len(doc.pages) == 1
        box = [float(v) for v in doc.pages[0].mediabox]
        assert box[2] - box[0] > box[3] - box[1]  # landscape


def two_sheets_fods() -> str:
    visible = wide_fods(columns=3, rows=3)
    hidden = (
        '<table:table table:name="秘密" table:style-name="ta_hidden"><table:table-row>'
        "<table:table-cell><text:p>非表示</text:p></table:table-cell></table:table-row>"
        "</table:table>"
    )
    styles = (
        '<office:automatic-styles><style:style style:name="ta_hidden" style:family="table">'
        '<style:table-properties table:display="false"/></style:style></office:automatic-styles>'
    )
    doc = visible.replace("</table:table></office:spreadsheet>", "</table:table>" + hidden
                          + "</office:spreadsheet>")  # fmt: skip
    doc = doc.replace("<office:body>", styles + "<office:body>")
    return doc.replace(
        "<office:document ",
        '<office:document xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" ',
    )


def test_notes_reach_the_part_report(
    pool: OfficePool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from gateway.model import Action
    from gateway.sanitize.base import Context, PageBudget
    from gateway.sanitize.registry import sanitize_part
    from gateway.settings import load_settings

    out = tmp_path_factory.mktemp("notes")
    limits = load_settings().sanitize
    ctx = Context(limits=limits, pages=PageBudget(100), office=pool)
    (out / "wide.fods").write_text(wide_fods(), encoding="utf-8")
    report, files = sanitize_part(
        _convert_with_soffice(out / "wide.fods", "xlsx", out), "台帳.xlsx", "", ctx, "1"
    )
    assert report.action is Action.CONVERTED and files
    assert "sheet_scaled_small" in report.reasons and "台帳" in report.detail
    (out / "two.fods").write_text(two_sheets_fods(), encoding="utf-8")
    report, _ = sanitize_part(
        _convert_with_soffice(out / "two.fods", "xlsx", out), "two.xlsx", "", ctx, "1"
    )
    assert "sheet_hidden" in report.reasons and "秘密" in report.detail
    assert "sheet_scaled_small" not in report.reasons  # 3 columns fit at full size
