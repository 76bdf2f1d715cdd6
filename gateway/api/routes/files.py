"""File gateway over HTTP: upload, status, sanitized download (DESIGN.md §4.5)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import GatewayDep, require
from gateway.api.disposition import content_disposition, safe_filename
from gateway.api.schemas import ID_PATTERN
from gateway.errors import SpoolError
from gateway.spool import JobMeta, new_id
from gateway.store.tokens import Principal
from gateway.vocab import MessageStatus

router = APIRouter(prefix="/api/v1/files", tags=["files"])
FileId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
_CHUNK = 1 << 20


async def _read_upload(request: Request, limit: int) -> tuple[str, bytes]:
    """Stream the multipart body, refusing (413) as soon as the file passes ``limit``."""
    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "multipart field 'file' is required")
        chunks: list[bytes] = []
        total = 0
        while chunk := await upload.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise HTTPException(413, f"file larger than {limit} bytes")
            chunks.append(chunk)
        return upload.filename or "", b"".join(chunks)
    finally:
        await form.close()


@router.post("", status_code=202)
async def upload_file(
    request: Request,
    who: Annotated[Principal, Depends(require("request"))],
    gw: GatewayDep,
) -> dict[str, str]:
    settings = gw.settings
    # The guard (gateway/api/guard.py) already cuts the streaming body at max_bytes plus the
    # multipart framing, Content-Length or not; this caps how many such spools one token holds.
    uploads: dict[int, int] = request.app.state.uploads
    if uploads.get(who.token_id, 0) >= settings.admin.uploads_per_token:
        raise HTTPException(429, "too many uploads in progress for this token")
    uploads[who.token_id] = uploads.get(who.token_id, 0) + 1
    try:
        name, data = await _read_upload(request, settings.files.max_bytes)
    finally:
        uploads[who.token_id] -= 1
        if not uploads[who.token_id]:
            del uploads[who.token_id]
    if not data:
        raise HTTPException(400, "empty file")
    # Only the base name, no controls or bidi overrides: it ends up in reports and outputs.
    filename = safe_filename(name, fallback="upload")
    meta = JobMeta(
        id=new_id(),
        kind="file",
        filename=filename,
        received_at=time.time(),
        extra={"source": "http", "uploaded_by": who.actor},
    )
    try:
        await asyncio.to_thread(gw.spool.put, meta, data)
    except SpoolError as exc:
        raise HTTPException(503, "spool unavailable, try again later") from exc
    await asyncio.to_thread(
        gw.store.audit, who.actor, "file.upload", meta.id, {"filename": filename, "size": len(data)}
    )
    wakeup = getattr(gw, "wakeup", None)
    if isinstance(wakeup, asyncio.Event):
        wakeup.set()
    return {"id": meta.id, "status": "queued"}


# What the uploader is told (DESIGN §4.5's file statuses), from the record's status. A file
# job that hit the worker's catch-all is quarantined: for the uploader, withheld.
_FILE_STATUS: dict[str, str] = {
    MessageStatus.DONE: "done",
    MessageStatus.WITHHELD: "withheld",
    MessageStatus.QUARANTINED: "withheld",
    MessageStatus.DELETED: "withheld",
    MessageStatus.DEFERRED: "queued",
}


def _status(row_status: str) -> str:
    return _FILE_STATUS.get(row_status, "processing")


@router.get("/{file_id}")
async def file_status(
    file_id: FileId,
    who: Annotated[Principal, Depends(require("request"))],  # operator (DESIGN.md §4.5)
    gw: GatewayDep,
) -> JSONResponse:
    row = await asyncio.to_thread(gw.store.get, file_id)
    if row is None or row.kind != "file":
        where = await asyncio.to_thread(gw.spool.locate, file_id)
        if where is None or row is not None:
            raise HTTPException(404, "not found")
        return JSONResponse({"id": file_id, "status": where})
    body: dict[str, Any] = {
        "id": row.id,
        "status": _status(row.status),
        "filename": row.filename,
        "reasons": list(row.reasons or []),
        "size": row.size,
        "sha256": row.sha256,
        "outputs": _outputs(row.parts),
        "parts": row.parts or [],
    }
    return JSONResponse(body)


@router.get("/{file_id}/sanitized")
async def file_sanitized(
    file_id: FileId,
    who: Annotated[Principal, Depends(require("request"))],  # operator (DESIGN.md §4.5)
    gw: GatewayDep,
) -> Response:
    row = await asyncio.to_thread(gw.store.get, file_id)
    if row is None or row.kind != "file":
        raise HTTPException(404, "not found")
    if row.status != MessageStatus.DONE:
        raise HTTPException(409, f"file is {_status(row.status)}")
    data = await asyncio.to_thread(gw.store.blob, file_id, "sanitized")
    if data is None:
        raise HTTPException(404, "sanitized file gone")
    outputs = _outputs(row.parts)
    if len(outputs) == 1:
        name = outputs[0]
        media = _media_type(name)
    else:
        name = (row.filename.rsplit(".", 1)[0] or "files") + ".zip"
        media = "application/zip"
    return Response(
        data,
        media_type=media,
        headers={
            "Content-Disposition": content_disposition(name),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


def _outputs(parts: list[dict[str, Any]] | None) -> list[str]:
    """Names of the rebuilt files, from the stored part reports."""
    return [o for p in (parts or []) for o in p.get("outputs", [])]


def _media_type(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower()
    return {
        "pdf": "application/pdf",
        "png": "image/png",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "txt": "text/plain; charset=utf-8",
        "csv": "text/csv; charset=utf-8",
    }.get(ext, "application/octet-stream")
