"""UNO driver for one warm LibreOffice listener (run by Debian's /usr/bin/python3).

Not imported by the gateway: ``gateway.sanitize.office`` starts this script in the
sandbox next to one ``soffice --accept=pipe,...`` process. It connects to that
pipe, prints ``{"ready": true}`` and then serves one JSON request per stdin line
(the pool sends one and closes stdin)::

    {"in": "/abs/input.docx", "out": "/abs/output.pdf"}
    -> {"ok": true, "filter": "writer_pdf_Export"}
    -> {"ok": false, "error": "load failed", "fatal": false}

``fatal: true`` (and exit) when the connection to soffice is gone: the pool then
kills and restarts the whole worker. ``--terminate`` asks soffice to exit cleanly.
Standard library + python3-uno only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import uno  # python3-uno, only on the system interpreter

# Imported after ``uno``: the import hook that makes com.sun.star importable lives there.
from com.sun.star.beans import PropertyValue  # noqa: E402
from com.sun.star.connection import NoConnectException  # noqa: E402
from com.sun.star.lang import DisposedException  # noqa: E402

# Service the loaded component supports -> PDF export filter. Checked in order:
# a presentation is also a drawing document.
_FILTERS = (
    ("com.sun.star.text.WebDocument", "writer_web_pdf_Export"),
    ("com.sun.star.text.GenericTextDocument", "writer_pdf_Export"),
    ("com.sun.star.sheet.SpreadsheetDocument", "calc_pdf_Export"),
    ("com.sun.star.presentation.PresentationDocument", "impress_pdf_Export"),
    ("com.sun.star.drawing.DrawingDocument", "draw_pdf_Export"),
)

# com.sun.star.document.MacroExecMode.NEVER_EXECUTE / UpdateDocMode.NO_UPDATE
_NEVER_EXECUTE = 0
_NO_UPDATE = 0


def _props(**values: Any) -> tuple[Any, ...]:
    out = []
    for name, value in values.items():
        prop = PropertyValue()
        prop.Name = name
        prop.Value = value
        out.append(prop)
    return tuple(out)


def _connect(pipe: str, timeout: float) -> Any:
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            return ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        except NoConnectException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _filter_for(doc: Any) -> str | None:
    for service, name in _FILTERS:
        if doc.supportsService(service):
            return name
    return None


def _convert(desktop: Any, src: str, dst: str) -> dict[str, Any]:
    load = _props(
        Hidden=True,
        ReadOnly=True,
        MacroExecutionMode=_NEVER_EXECUTE,
        UpdateDocMode=_NO_UPDATE,
        RepairPackage=False,
        Silent=True,
    )
    doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(src), "_blank", 0, load)
    if doc is None:
        return {"ok": False, "error": "load failed", "fatal": False}
    try:
        name = _filter_for(doc)
        if name is None:
            return {"ok": False, "error": "no pdf filter for this document", "fatal": False}
        sheets = _fit_sheets(doc) if name == "calc_pdf_Export" else {}  # issue 16
        doc.storeToURL(uno.systemPathToFileUrl(dst), _props(FilterName=name, Overwrite=True))
        return {"ok": True, "filter": name, **sheets}
    finally:
        try:
            doc.close(True)
        except Exception:  # a vetoed/odd close must not mask the result
            doc.dispose()


# --- issue 16: wide sheets ---------------------------------------------------------------
_MAX_COLUMNS, _MAX_SHEETS = 1024, 256
_READABLE_SCALE = 0.5  # below half size a printed table is hard to read


def _fit_sheets(doc: Any) -> dict[str, Any]:
    """Each visible sheet's page style: as wide as its used range (or print area), as many
    pages down as needed, landscape when the range is wider than tall. Hidden sheets are not
    printed (LibreOffice skips them) and are named in the reply for the notice."""
    hidden: list[str] = []
    small: list[str] = []
    styles = doc.StyleFamilies.getByName("PageStyles")
    sheets = doc.Sheets
    for i in range(min(sheets.Count, _MAX_SHEETS)):
        sheet = sheets.getByIndex(i)
        if not sheet.IsVisible:
            hidden.append(str(sheet.Name)[:100])
            continue
        areas = sheet.getPrintAreas()
        if areas:
            a = areas[0]  # keep a print area the author set
            rng = sheet.getCellRangeByPosition(a.StartColumn, a.StartRow, a.EndColumn, a.EndRow)
        else:
            cursor = sheet.createCursor()
            cursor.gotoEndOfUsedArea(False)
            end = cursor.RangeAddress
            rng = sheet.getCellRangeByPosition(
                0, 0, min(end.EndColumn, _MAX_COLUMNS - 1), end.EndRow
            )
        size = rng.Size  # 1/100 mm
        style = styles.getByName(sheet.PageStyle)
        landscape = size.Width > size.Height
        if bool(style.IsLandscape) != landscape:
            width, height = style.Width, style.Height
            style.IsLandscape = landscape
            style.Width, style.Height = height, width
        style.ScaleToPagesX = 1
        style.ScaleToPagesY = 0  # as many pages down as the rows need
        printable = style.Width - style.LeftMargin - style.RightMargin
        if size.Width > 0 and printable / size.Width < _READABLE_SCALE:
            small.append(str(sheet.Name)[:100])
    return {"hidden_sheets": hidden, "small_sheets": small}


def _alive(desktop: Any) -> bool:
    try:
        desktop.getComponents()
        return True
    except Exception:  # noqa: BLE001 - any failure means the bridge is gone
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipe", required=True)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--terminate", action="store_true", help="ask soffice to exit")
    args = parser.parse_args()

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        desktop = _connect(args.pipe, args.connect_timeout)
    except Exception as exc:  # noqa: BLE001 - reported to the pool, which restarts us
        reply({"ready": False, "error": type(exc).__name__})
        return 2
    reply({"ready": True})
    if args.terminate:
        # A clean exit lets soffice remove its pipe sockets from /tmp.
        try:
            desktop.terminate()
        except Exception:  # noqa: BLE001 - the bridge drops as soffice exits
            pass
        return 0

    for line in sys.stdin:
        try:
            req = json.loads(line)
            src, dst = str(req["in"]), str(req["out"])
        except (ValueError, KeyError, TypeError):
            reply({"ok": False, "error": "bad request", "fatal": False})
            continue
        try:
            reply(_convert(desktop, src, dst))
        except Exception as exc:  # noqa: BLE001 - IOException, IllegalArgument, Disposed...
            # IllegalArgumentException is a RuntimeException too, so ask soffice
            # whether it is still there rather than guessing from the class.
            fatal = isinstance(exc, DisposedException) or not _alive(desktop)
            reply({"ok": False, "error": type(exc).__name__, "fatal": fatal})
            if fatal:
                return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
