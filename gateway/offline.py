"""`mugai sanitize`: the same sanitizers, offline, on files and .eml messages.

A message is recognised by its content (``detect``, whatever its extension) and becomes
``<name>.sanitized.eml``; any other file becomes its rebuilt file(s). A
``report.json`` lands beside the outputs. No virus scan here: offline use is
for operators inspecting files and for the benchmarks.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.errors import Permanent
from gateway.mime.detect import detect
from gateway.mime.tokens import removed_any
from gateway.model import Action, PartReport
from gateway.paths import unique_path
from gateway.pipeline import sanitize_message
from gateway.sanitize.base import Context, OfficeConverter, PageBudget
from gateway.sanitize.office import OfficePool
from gateway.sanitize.registry import sanitize_part
from gateway.settings import Settings
from gateway.spool import JobMeta, new_id


def _report_dict(report: PartReport) -> dict[str, Any]:
    data = asdict(report)

    def fix(d: dict[str, Any]) -> dict[str, Any]:
        d["action"] = d["action"].value if isinstance(d["action"], Action) else d["action"]
        d["children"] = [fix(c) for c in d["children"]]
        return d

    return fix(data)


def sanitize_one(
    path: Path, out_dir: Path, settings: Settings, office: OfficeConverter
) -> tuple[dict[str, Any], bool]:
    data = path.read_bytes()
    started = time.monotonic()
    entry: dict[str, Any] = {"input": str(path), "size": len(data)}
    detected = detect(data, path.name, "")
    if detected.kind == "eml":  # by content: detect() recognises a header block
        meta = JobMeta(id=new_id(), kind="mail", received_at=time.time())
        try:
            result = sanitize_message(data, meta, settings, office)
        except Permanent as exc:
            entry.update(kind="message", status="withheld", reason=exc.reason, detail=exc.detail)
            return entry, False
        target = unique_path(out_dir / f"{path.name}.sanitized.eml")
        target.write_bytes(result.data)
        parts = list(result.report.parts)
        entry.update(
            kind="message",
            status="sanitized",
            id=meta.id,
            output=str(target),
            tokens=list(result.report.tokens),
            parts=[_report_dict(p) for p in parts],
        )
        clean = not removed_any(parts)
    else:
        ctx = Context(
            limits=settings.sanitize,
            pages=PageBudget(settings.sanitize.max_pages_per_message),
            office=office,
        )
        report, files = sanitize_part(data, path.name, "", ctx, "1")
        outputs = []
        for f in files:
            target = unique_path(out_dir / f.filename)
            target.write_bytes(f.data)
            outputs.append(str(target))
        entry.update(
            kind="file",
            status="sanitized" if files else "withheld",
            outputs=outputs,
            part=_report_dict(report),
        )
        clean = bool(files) and not removed_any([report])
    entry["seconds"] = round(time.monotonic() - started, 3)
    return entry, clean


def sanitize_paths(
    paths: list[Path], out: Path | None, settings: Settings
) -> tuple[dict[str, Any], bool]:
    office = OfficePool.from_settings(settings.sanitize)
    entries: list[dict[str, Any]] = []
    all_clean = True
    try:
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                out_dir = out or file.parent
                out_dir.mkdir(parents=True, exist_ok=True)
                entry, clean = sanitize_one(file, out_dir, settings, office)
                entries.append(entry)
                all_clean = all_clean and clean
    finally:
        office.close()
    report = {"all_clean": all_clean, "items": entries}
    report_dir = out or (paths[0].parent if paths and not paths[0].is_dir() else paths[0])
    (report_dir / "report.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return report, all_clean
