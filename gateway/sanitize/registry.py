"""One explicit dict from detected type to sanitizer; anything not listed is removed.

Dispatch is by the type detected from the content, never by the declared type
or the extension. The registry also re-checks every output a sanitizer returns
(allowed type, content matching that type) so a buggy sanitizer fails closed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from gateway.errors import (
    Encrypted,
    InvalidOutput,
    PartRefused,
    Transient,
    TypeMismatch,
    UnsupportedType,
)
from gateway.mime.detect import detect
from gateway.model import Action, CleanFile, Detected, PartReport, SanitizeResult
from gateway.sanitize import archive, eml, image, office, pdf, text, tnef
from gateway.sanitize.base import ALLOWED_OUTPUT_TYPES, Context, Sanitizer
from gateway.sanitize.msg import sanitize_msg  # issue 16
from gateway.sanitize.qr import inspect as qr_inspect  # issue 16

log = logging.getLogger(__name__)

_OFFICE_KINDS = (
    "doc", "docx", "docm", "dot", "xls", "xlsx", "xlsm", "ppt", "pptx", "pptm",
    "odt", "ods", "odp", "rtf",
)  # fmt: skip
_IMAGE_KINDS = ("png", "jpeg", "gif", "bmp", "tiff", "webp")
_ARCHIVE_KINDS = ("zip", "tar", "gzip", "bzip2", "xz", "7z")
_QR_KINDS = frozenset({"pdf", *_OFFICE_KINDS, *_IMAGE_KINDS})  # issue 16: leaf sanitizers only

REGISTRY: Mapping[str, Sanitizer] = {
    "text": text.sanitize_text,
    "csv": text.sanitize_text,
    "html": text.sanitize_html_attachment,
    "pdf": pdf.sanitize_pdf,
    **{kind: office.sanitize_office for kind in _OFFICE_KINDS},
    **{kind: image.sanitize_image for kind in _IMAGE_KINDS},
    **{kind: archive.sanitize_archive for kind in _ARCHIVE_KINDS},
    "tnef": tnef.sanitize_tnef,
    "eml": eml.sanitize_eml,
    "msg": sanitize_msg,  # issue 16: Outlook .msg
}

# Magic prefixes of what each allowed output type must look like.
_OUTPUT_MAGIC: Mapping[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}


def _check_output(files: tuple[CleanFile, ...]) -> None:
    for f in files:
        if f.content_type not in ALLOWED_OUTPUT_TYPES:
            raise InvalidOutput(f"sanitizer produced {f.content_type}")
        magics = _OUTPUT_MAGIC.get(f.content_type)
        if magics is not None and not f.data.startswith(magics):
            raise InvalidOutput(f"output does not look like {f.content_type}")
        if f.content_type.startswith("text/"):
            try:
                f.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidOutput("text output is not UTF-8") from exc


def _run(
    data: bytes, filename: str, detected: Detected, ctx: Context, registry: Mapping[str, Sanitizer]
) -> SanitizeResult:
    if "type_mismatch" in detected.flags:
        raise TypeMismatch(f"content is {detected.kind}, name or declared type says otherwise")
    # PDFs decide themselves: owner-password-only PDFs (print/copy restrictions, common on
    # government documents) open without a password and are rendered; user-password ones
    # raise Encrypted inside the PDF sanitizer.
    if "encrypted" in detected.flags and detected.kind != "pdf":
        raise Encrypted(
            "暗号化されたファイル (パスワード付きZIP等) は無害化できません / encrypted content"
        )
    sanitizer = registry.get(detected.kind)
    if sanitizer is None:
        raise UnsupportedType(f"{detected.kind} ({detected.mime}) is not allowed")
    result = sanitizer(data, filename, detected, ctx)
    _check_output(result.files)
    return result


def sanitize_part(
    data: bytes,
    filename: str,
    declared_type: str,
    ctx: Context,
    index: str,
    *,
    registry: Mapping[str, Sanitizer] = REGISTRY,
    job_id: str = "-",
) -> tuple[PartReport, tuple[CleanFile, ...]]:
    """Detect and sanitize one part; never raises for the part's own faults."""
    started = time.monotonic()
    sha = hashlib.sha256(data).hexdigest()
    try:
        detected = detect(data, filename, declared_type)
    except Exception:  # noqa: BLE001 - detection bugs remove the part, never pass it
        log.exception("job=%s part=%s detection failed", job_id, index)
        detected = Detected(kind="unknown", mime="application/octet-stream")

    def recurse(
        m_data: bytes, m_name: str, m_declared: str, m_ctx: Context, m_index: str
    ) -> tuple[PartReport, tuple[CleanFile, ...]]:
        # Members are numbered within their container; prefix the container's own index.
        return sanitize_part(
            m_data,
            m_name,
            m_declared,
            m_ctx,
            f"{index}.{m_index}",
            registry=registry,
            job_id=job_id,
        )

    ctx.recurse = recurse
    files: tuple[CleanFile, ...] = ()
    children: tuple[PartReport, ...] = ()
    detail = ""
    qr_texts: tuple[str, ...] = ()  # issue 16
    try:
        result = _run(data, filename, detected, ctx, registry)
        if detected.kind in _QR_KINDS and result.files:  # issue 16: QR codes we deliver
            # Before ``files`` is set: a failed check must leave nothing to deliver.
            qr_files, qr_texts, masked = qr_inspect(result.files, ctx)
            qr_reason = ("qr_masked" if masked else "qr_listed",) if qr_texts else ()
            result = replace(result, files=qr_files, reasons=(*result.reasons, *qr_reason))
        files, action, reasons = result.files, result.action, result.reasons
        children, detail = result.children, result.detail
        if not files:
            action = Action.REMOVED
            reasons = reasons or ("empty_result",)
    except Transient:
        raise  # e.g. every converter busy: retry the whole message later, remove nothing
    except PartRefused as exc:
        action, reasons, detail = Action.REMOVED, (exc.reason,), exc.detail
        log.info("job=%s part=%s removed reason=%s", job_id, index, exc.reason)
    except Exception:  # noqa: BLE001 - a sanitizer bug must remove the part, not pass it
        log.exception("job=%s part=%s sanitizer failed", job_id, index)
        action, reasons = Action.REMOVED, ("internal_error",)
    if "macros" in detected.flags and action is not Action.REMOVED:
        reasons = tuple(dict.fromkeys((*reasons, "macros_removed")))
    report = PartReport(
        index=index,
        filename=filename,
        declared_type=declared_type,
        detected_type=detected.mime if detected.kind == "unknown" else detected.kind,
        action=action,
        reasons=tuple(reasons),
        size=len(data),
        sha256=sha,
        outputs=tuple(f.filename for f in files),
        seconds=round(time.monotonic() - started, 3),
        children=children,
        detail=detail[:500],
        qr=qr_texts,  # issue 16
    )
    return report, files
