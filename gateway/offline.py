"""`mugai sanitize`: the same scan and sanitizers, offline, on files and .eml messages.

A message is recognised by its content (``detect``, whatever its extension) and becomes
``<name>.sanitized.eml``; any other file becomes its rebuilt file(s). A
``report.json`` lands beside the outputs.

Like the gateway, every original is scanned by clamd first: a hit withholds it with
nothing written but the report; an unreachable clamd stops the run
(:class:`CannotScan`) unless the operator chose ``--no-scan``, and then every item
says ``unscanned`` and the run is never called ``all_clean``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gateway.egress.check import check_file, check_message
from gateway.errors import Permanent, ScannerUnavailable, TooLargeToScan, VirusFoundOutput
from gateway.mime.detect import detect
from gateway.mime.tokens import removed_any
from gateway.model import PartReport, ScanResult
from gateway.paths import unique_path
from gateway.pipeline import Scanner, sanitize_message
from gateway.sanitize.base import Context, OfficeConverter, PageBudget
from gateway.sanitize.office import OfficePool
from gateway.sanitize.registry import sanitize_part
from gateway.serialize import plain
from gateway.settings import Settings
from gateway.spool import JobMeta, new_id
from gateway.vocab import MessageStatus

# One blocking scan; None means the operator chose --no-scan.
ScanFn = Callable[[bytes], ScanResult]


class CannotScan(Exception):
    """clamd could not be asked: the run stops, nothing unscanned is written."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


def blocking_scan(scanner: Scanner) -> ScanFn:
    """The async clamd client as one blocking call per original (the CLI has no loop)."""

    def scan(data: bytes) -> ScanResult:
        return asyncio.run(scanner.scan(data))

    return scan


def _scan_entry(path: Path, data: bytes, scan: ScanFn | None) -> dict[str, Any]:
    if scan is None:
        return {"status": "unscanned"}
    try:
        result = scan(data)
    except ScannerUnavailable as exc:
        raise CannotScan(path, exc.detail or exc.reason) from exc
    except TooLargeToScan as exc:  # not scanned either: the run stops
        raise CannotScan(path, f"over clamd's size limit: {exc.detail}") from exc
    if result.clean:
        return {"status": "clean", "seconds": round(result.seconds, 4)}
    return {"status": "infected", "signature": result.signature}


def sanitize_one(
    path: Path,
    out_dir: Path,
    settings: Settings,
    office: OfficeConverter,
    scan: ScanFn | None,
) -> tuple[dict[str, Any], bool]:
    """One input: ``(report entry, sanitized with nothing removed)``."""
    data = path.read_bytes()
    started = time.monotonic()
    entry: dict[str, Any] = {"input": str(path), "size": len(data)}
    entry["scan"] = _scan_entry(path, data, scan)  # before anything is parsed or written
    if entry["scan"]["status"] == "infected":
        entry.update(
            kind="file",
            status=MessageStatus.WITHHELD,
            reasons=["virus_found"],
            outputs=[],
            reason="virus_found",
        )
        return entry, False
    reports: list[PartReport]
    detected = detect(data, path.name, "")
    if detected.kind == "eml":  # by content: detect() recognises a header block
        meta = JobMeta(id=new_id(), kind="mail", received_at=time.time())
        try:
            result = sanitize_message(data, meta, settings, office)
            _last_gate(path, result.data, scan, lambda: check_message(result.data))
        except Permanent as exc:
            entry.update(
                kind="message",
                status=MessageStatus.WITHHELD,
                reason=exc.reason,
                reasons=[exc.reason],
                outputs=[],
                detail=exc.detail,
            )
            return entry, False
        target = unique_path(out_dir / f"{path.name}.sanitized.eml")
        target.write_bytes(result.data)
        reports = list(result.report.parts)
        entry.update(
            kind="message",
            status="sanitized",
            id=meta.id,
            output=str(target),
            outputs=[str(target)],
            tokens=list(result.report.tokens),
            parts=[plain(p) for p in reports],
        )
    else:
        ctx = Context(
            limits=settings.sanitize,
            pages=PageBudget(settings.sanitize.max_pages_per_message),
            office=office,
        )
        report, files = sanitize_part(data, path.name, "", ctx, "1")
        reports = [report]
        try:
            for f in files:
                _last_gate(
                    path, f.data, scan, partial(check_file, f.filename, f.content_type, f.data)
                )
        except Permanent as exc:
            entry.update(
                kind="file", status=MessageStatus.WITHHELD, outputs=[],
                part=plain(report), reason=exc.reason, detail=exc.detail,
            )  # fmt: skip
            entry["reasons"] = sorted({*_reason_codes(reports), exc.reason})
            return entry, False
        outputs = []
        for f in files:
            target = unique_path(out_dir / f.filename)
            target.write_bytes(f.data)
            outputs.append(str(target))
        entry.update(
            kind="file",
            status="sanitized" if files else MessageStatus.WITHHELD,
            outputs=outputs,
            part=plain(report),
        )
    entry["reasons"] = _reason_codes(reports)
    entry["seconds"] = round(time.monotonic() - started, 3)
    # The one place that decides "was anything removed" for both kinds of input.
    clean = entry["status"] == "sanitized" and not removed_any(reports)
    return entry, clean


def _last_gate(path: Path, data: bytes, scan: ScanFn | None, check: Callable[[], None]) -> None:
    """The gateway's last gate before anything is written: the output rescanned (unless
    --no-scan) and checked by the egress checker; raises ``Permanent`` on a refusal."""
    if scan is not None:
        try:
            result = scan(data)
        except ScannerUnavailable as exc:
            raise CannotScan(path, exc.detail or exc.reason) from exc
        if not result.clean:
            raise VirusFoundOutput(result.signature)
    check()


def _reason_codes(reports: list[PartReport]) -> list[str]:
    codes: set[str] = set()
    stack = list(reports)
    while stack:
        r = stack.pop()
        codes.update(c for c in r.reasons if c != "alternative_not_used")
        stack.extend(r.children)
    return sorted(codes)


def sanitize_paths(
    paths: list[Path],
    out: Path | None,
    settings: Settings,
    *,
    scan: ScanFn | None,
) -> tuple[dict[str, Any], bool]:
    """Sanitize every input; ``(report, everything sanitized with nothing removed)``.

    ``scan`` is required on purpose: skipping the virus scan is spelled ``scan=None``.
    On :class:`CannotScan` the report (items so far, then the one that could not be
    scanned) is still written, then the exception propagates.
    """
    office = OfficePool.from_settings(settings.sanitize)
    entries: list[dict[str, Any]] = []
    all_sanitized = True
    failure: CannotScan | None = None
    try:
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                out_dir = out or file.parent
                out_dir.mkdir(parents=True, exist_ok=True)
                try:
                    entry, ok = sanitize_one(file, out_dir, settings, office, scan)
                except CannotScan as exc:
                    failure = exc
                    entries.append(
                        {
                            "input": str(file),
                            "kind": "file",
                            "status": "cannot_scan",
                            "scan": {"status": "unavailable", "detail": exc.detail},
                            "reasons": ["clamd_unavailable"],
                            "outputs": [],
                        }
                    )
                    break
                entries.append(entry)
                all_sanitized = all_sanitized and ok
            if failure is not None:
                break
    finally:
        office.close()
    scanned = scan is not None and failure is None
    report = {
        # Never "clean" without a scan: --no-scan only vouches for the sanitizing.
        "all_clean": all_sanitized and scanned,
        "all_sanitized": all_sanitized and failure is None,
        "scanned": scanned,
        "items": entries,
    }
    report_dir = out or (paths[0].parent if paths and not paths[0].is_dir() else paths[0])
    (report_dir / "report.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    if failure is not None:
        raise failure
    return report, all_sanitized


def _printable(text: str) -> str:
    """A hostile file name must not drive the terminal (RLO, CR, ESC)."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per input: status, outputs, reasons (for a human; ``--json`` for tools)."""
    lines = []
    for item in report["items"]:
        status = item["status"]
        if item.get("scan", {}).get("status") == "unscanned":
            status += " (unscanned)"
        outputs = ", ".join(_printable(o) for o in item.get("outputs", [])) or "-"
        shown = ",".join(item.get("reasons", [])) or "-"
        signature = item.get("scan", {}).get("signature")
        extra = f" signature={_printable(signature)}" if signature else ""
        lines.append(f"{status}\t{_printable(item['input'])} -> {outputs}\treasons={shown}{extra}")
    return lines
