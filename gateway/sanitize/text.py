"""Text attachments: decoded (declared charset, then detection), disarmed, re-encoded as UTF-8.

Plain text (and ``.ics`` / ``.vcf``, delivered as text) goes through ``disarm`` like the body.
CSV is parsed and rewritten cell by cell: a cell Excel would evaluate (``=``, ``+``, ``-``,
``@``, TAB, CR at its start, and not a plain number) gets a leading ``'``; the file is written
as UTF-8 with a BOM so Japanese Excel does not open it as Shift_JIS.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Final

from gateway.errors import ConversionFailed, PartTooLarge
from gateway.mime import charset
from gateway.mime.defang import clean_text, disarm
from gateway.mime.html import html_to_text
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name

_MAX_TEXT_BYTES: Final = 50 * 1024 * 1024
_MAX_CSV_CELLS: Final = 5_000_000
# Cells that start with one of these are formulas to Excel, LibreOffice and Google Sheets
# (the fullwidth forms too: Japanese IMEs produce them and some importers fold them).
_FORMULA_START: Final = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20\u2212")
_NUMBER_RE: Final = re.compile(r"[+-]?(?:\d+(?:[.,]\d+)*|\d*\.\d+)(?:[eE][+-]?\d+)?%?")
_CALENDAR_TYPES: Final = ("text/calendar", "text/vcard", "text/x-vcard", "text/directory")
_FOLD_RE: Final = re.compile(r"\r?\n[ \t]")


def neutralize_cell(cell: str) -> str:
    """``=cmd|' /C calc'!A0`` → ``'=cmd|' /C calc'!A0``; ``-5`` and ``+81`` stay as they are."""
    core = cell.lstrip(" \u3000")
    if len(core) == 1 and core in "+-\uff0b\uff0d\u2212":
        return cell  # a lone dash means "none" in many tables and computes nothing
    if core and core[0] in _FORMULA_START and not _NUMBER_RE.fullmatch(core):
        return "'" + cell
    return cell


def _is_calendar(detected: Detected, filename: str) -> bool:
    return detected.mime in _CALENDAR_TYPES or filename.lower().endswith((".ics", ".vcf"))


def _csv_dialect(text: str, filename: str) -> str:
    if filename.lower().endswith(".tsv"):
        return "\t"
    head = text[:4096]
    return "\t" if head.count("\t") > head.count(",") else ","


def sanitize_csv_text(text: str, filename: str = "") -> tuple[str, int]:
    """Rewritten CSV (no BOM yet) and how many links were disarmed."""
    delimiter = _csv_dialect(text, filename)
    out = io.StringIO()
    # Read as the sender wrote it, written as Excel reads a .csv file (the output's name):
    # with commas. A tab-separated output would give Excel a new cell at every comma.
    writer = csv.writer(out, delimiter=",", lineterminator="\r\n")
    links = 0
    cells = 0
    try:
        for row in csv.reader(io.StringIO(clean_text(text), newline=""), delimiter=delimiter):
            cells += len(row)
            if cells > _MAX_CSV_CELLS:
                raise PartTooLarge(f"CSV of more than {_MAX_CSV_CELLS} cells")
            shown = [disarm(neutralize_cell(cell)) for cell in row]
            links += sum(s.links for s in shown)
            writer.writerow([s.text for s in shown])
    except csv.Error as exc:
        raise ConversionFailed(f"CSV not readable: {exc}") from exc
    return out.getvalue(), links


def sanitize_text(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    if len(data) > _MAX_TEXT_BYTES:
        raise PartTooLarge(f"text of {len(data)} bytes")
    text, used = charset.decode_bytes(data, None)
    text = text.lstrip("\ufeff")
    is_csv = detected.kind == "csv"
    if is_csv:
        body, links = sanitize_csv_text(text, filename)
        payload = "\ufeff" + body  # Excel reads UTF-8 only with a BOM
        name = clean_name(filename or "attachment", ".csv")
        ctype = "text/csv"
        detail = f"decoded as {used}, formulas neutralized, re-encoded as UTF-8 with BOM"
    else:
        if _is_calendar(detected, filename):
            text = _FOLD_RE.sub("", text)  # unfold: a URL split over lines is one URL
        shown = disarm(text)
        payload, links = shown.text, shown.links
        name = clean_name(filename or "attachment", ".txt")
        ctype = "text/plain"
        detail = f"decoded as {used}, re-encoded as UTF-8"
    return SanitizeResult(
        files=(CleanFile(name, ctype, payload.encode("utf-8")),),
        action=Action.KEPT,
        reasons=("links_disarmed",) if links else (),
        detail=detail,
    )


def sanitize_html_attachment(
    data: bytes, filename: str, detected: Detected, ctx: Context
) -> SanitizeResult:
    """HTML files become readable text; markup, scripts and live links never pass."""
    if len(data) > _MAX_TEXT_BYTES:
        raise PartTooLarge(f"html of {len(data)} bytes")
    text, _ = charset.decode_bytes(data, None)
    result = html_to_text(text)
    shown = disarm(result.text)
    name = clean_name(filename or "attachment", ".txt")
    links = result.links_disarmed + shown.links
    reasons = ("html_to_text",) + (("links_disarmed",) if links else ())
    return SanitizeResult(
        files=(CleanFile(name, "text/plain", shown.text.encode("utf-8")),),
        action=Action.CONVERTED,
        reasons=reasons,
    )
