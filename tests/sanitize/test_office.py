"""Office → PDF through real LibreOffice: the warm pool, its failure handling, the sanitizer.

Inputs are generated here: small flat-ODF sources with Japanese text
(``tests/fixtures/office/japanese.fod?``) converted once per session by LibreOffice into
docx/doc/rtf/odt, xlsx/xls/ods and pptx/ppt/odp; a macro document is built by hand.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pikepdf
import pytest

from gateway.errors import (
    ConversionFailed,
    ConversionTimeout,
    ConverterBusy,
    Encrypted,
    PartRefused,
)
from gateway.model import Action, Detected
from gateway.sanitize import office, sandbox
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.office import OfficePool, sanitize_office
from gateway.settings import SanitizeSettings
from tests.waiting import eventually, settle

pytestmark = pytest.mark.skipif(
    not (Path("/usr/bin/soffice").exists() and Path(office.SYSTEM_PYTHON).exists()),
    reason="LibreOffice or the system python with python3-uno is not installed",
)

_TARGETS = {
    "japanese.fodt": ("docx", "doc", "rtf", "odt"),
    "japanese.fods": ("xlsx", "xls", "ods"),
    "japanese.fodp": ("pptx", "ppt", "odp"),
}
_KINDS = [kind for kinds in _TARGETS.values() for kind in kinds]


# --- fixtures --------------------------------------------------------------------------------


def _convert_with_soffice(src: Path, target: str, out_dir: Path) -> bytes:
    profile = office._seed_profile(out_dir / f"profile-{target}")
    result = sandbox.run(
        [
            office.SOFFICE,
            "--headless",
            "--norestore",
            f"-env:UserInstallation={profile}",
            "--convert-to",
            target,
            "--outdir",
            str(out_dir),
            str(src),
        ],
        stdin=b"",
        limits=sandbox.Limits(seconds=120, memory_mb=2048),
        # Fixture generation from the repository's own trusted sources (outside any jail).
        network="off",
    )
    out = out_dir / f"{src.stem}.{target}"
    assert out.exists(), result.stderr[-2000:]
    return out.read_bytes()


@pytest.fixture(scope="session")
def documents(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """kind → a small document with Japanese text, written by LibreOffice."""
    out_dir = tmp_path_factory.mktemp("office-docs")
    jobs = [
        (fixtures / "office" / source, target)
        for source, targets in _TARGETS.items()
        for target in targets
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda job: _convert_with_soffice(job[0], job[1], out_dir), jobs)
        return {target: data for (_, target), data in zip(jobs, results, strict=True)}


@pytest.fixture(scope="module")
def pool() -> Iterator[OfficePool]:
    p = OfficePool(2)
    p.start()
    try:
        yield p
    finally:
        p.close()


def _ctx(converter: OfficePool | None) -> Context:
    limits = SanitizeSettings()
    return Context(limits=limits, pages=PageBudget(limits.max_pages_per_message), office=converter)


def _macro_odt(marker: Path) -> bytes:
    """An ODT whose Basic macro, bound to "document loaded", would create ``marker``."""
    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0"
 xmlns:ooo="http://openoffice.org/2004/office"
 xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.3">
<office:scripts><office:event-listeners>
<script:event-listener script:language="ooo:script" script:event-name="dom:load"
 xlink:href="vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document"
 xlink:type="simple"/>
</office:event-listeners></office:scripts>
<office:body><office:text><text:p>マクロ付き文書 (document with a macro)</text:p>
</office:text></office:body>
</office:document-content>"""
    module = f"""<?xml version="1.0" encoding="UTF-8"?>
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1"
 script:language="StarBasic">Sub Main
  Dim n As Integer
  n = FreeFile
  Open &quot;{marker}&quot; For Output As #n
  Print #n, &quot;macro ran&quot;
  Close #n
End Sub
</script:module>"""
    libraries = """<?xml version="1.0" encoding="UTF-8"?>
<library:libraries xmlns:library="http://openoffice.org/2000/library"
 xmlns:xlink="http://www.w3.org/1999/xlink">
 <library:library library:name="Standard" library:link="false"/>
</library:libraries>"""
    library = """<?xml version="1.0" encoding="UTF-8"?>
<library:library xmlns:library="http://openoffice.org/2000/library" library:name="Standard"
 library:readonly="false" library:passwordprotected="false">
 <library:element library:name="Module1"/>
</library:library>"""
    entries = {
        "content.xml": content,
        "Basic/script-lc.xml": libraries,
        "Basic/Standard/script-lb.xml": library,
        "Basic/Standard/Module1.xml": module,
    }
    manifest = "".join(
        f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type="text/xml"/>'
        for name in entries
    )
    entries["META-INF/manifest.xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" manifest:version="1.3" '
        'manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        f"{manifest}</manifest:manifest>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")  # stored, first
        for name, text in entries.items():
            z.writestr(name, text.encode(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# --- /proc helpers ---------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tree(root: int) -> list[int]:
    """root and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[1], []).append(int(entry))
    found, stack = [root], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


def _wait_gone(pids: list[int], seconds: float = 30.0) -> list[int]:
    """Poll until none of ``pids`` exists, not even as a zombie; returns those left."""
    return settle(lambda: [pid for pid in pids if _stat(pid) is not None], timeout=seconds)


def _font_names(pdf: bytes) -> set[str]:
    names = set()
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        for page in doc.pages:
            fonts = page.obj.get("/Resources", {}).get("/Font", {})
            for font in fonts.values():
                names.add(str(font.get("/BaseFont", "")))
    return names


# --- the converter ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", _KINDS)
def test_each_format_converts_with_japanese_glyphs(
    pool: OfficePool, documents: dict[str, bytes], kind: str
) -> None:
    pdf = pool.to_pdf(documents[kind], kind, timeout=120)
    assert pdf.startswith(b"%PDF-")
    # Tofu comes from a missing CJK font: LibreOffice must have embedded Noto CJK.
    assert any("CJK" in name for name in _font_names(pdf)), _font_names(pdf)


def test_garbage_is_refused_and_the_worker_stays_usable(
    pool: OfficePool, documents: dict[str, bytes]
) -> None:
    with pytest.raises(PartRefused) as info:
        pool.to_pdf(b"PK\x03\x04 this is not a real office document" * 50, "docx", timeout=120)
    assert info.value.reason == "conversion_failed"
    assert pool.to_pdf(documents["docx"], "docx", timeout=120).startswith(b"%PDF-")


def test_two_threads_convert_at_once(pool: OfficePool, documents: dict[str, bytes]) -> None:
    barrier = threading.Barrier(2)

    def convert(kind: str) -> bytes:
        barrier.wait()
        return pool.to_pdf(documents[kind], kind, timeout=120)

    with ThreadPoolExecutor(max_workers=2) as threads:
        outputs = list(threads.map(convert, ["docx", "xlsx", "pptx", "odt"]))
    assert all(out.startswith(b"%PDF-") for out in outputs)
    assert len(pool.worker_pids()) == 2


def test_timeout_kills_the_worker_group_and_the_next_document_converts(
    documents: dict[str, bytes],
) -> None:
    with OfficePool(1) as p:
        assert p.to_pdf(documents["docx"], "docx", timeout=120).startswith(b"%PDF-")
        (leader,) = p.worker_pids()
        before = _tree(leader)
        assert len(before) >= 2  # oosplash → soffice.bin
        # Fault injection: a budget too small for any conversion.
        with pytest.raises(ConversionTimeout) as info:
            p.to_pdf(documents["xlsx"], "xlsx", timeout=0.05)
        assert info.value.reason == "conversion_timeout"
        assert _wait_gone(before) == []
        assert p.to_pdf(documents["xlsx"], "xlsx", timeout=120).startswith(b"%PDF-")
        assert leader not in p.worker_pids()


def test_pool_survives_soffice_killed_between_documents(documents: dict[str, bytes]) -> None:
    with OfficePool(1) as p:
        p.to_pdf(documents["odt"], "odt", timeout=120)
        (leader,) = p.worker_pids()
        # The leader is the jail's bubblewrap; LibreOffice's own process is soffice.bin.
        soffice_bin = [pid for pid in _tree(leader) if _comm(pid) == "soffice.bin"]
        assert soffice_bin
        for pid in soffice_bin:
            os.kill(pid, signal.SIGKILL)  # a crash of LibreOffice
        # oosplash notices and exits; the pool must then start a new listener.
        with contextlib.suppress(AssertionError):  # the pool's next call must cope either way
            eventually(
                lambda: (st := _stat(leader)) is None or st[0] == "Z", timeout=30, interval=0.05
            )
        assert p.to_pdf(documents["docx"], "docx", timeout=120).startswith(b"%PDF-")
        assert p.worker_pids() and leader not in p.worker_pids()


def test_close_leaves_no_soffice_and_no_sockets(documents: dict[str, bytes]) -> None:
    p = OfficePool(1)
    p.to_pdf(documents["rtf"], "rtf", timeout=120)
    (leader,) = p.worker_pids()
    tree = _tree(leader)
    worker = p._workers[0]
    assert worker._dir is not None
    # In the jail, /tmp (where soffice puts its sockets) is the worker's own directory.
    sockets = office._pipe_sockets(worker.pipe, worker._profile_url, p.pipe_dir(worker._dir))
    assert any(s.exists() for s in sockets)
    p.close()
    assert _wait_gone(tree) == []
    assert not any(s.exists() for s in sockets)
    assert p.worker_pids() == []
    with pytest.raises(ConverterBusy):
        p.to_pdf(documents["rtf"], "rtf", timeout=120)
    p.close()  # idempotent


def test_recycles_the_worker_after_n_documents(documents: dict[str, bytes]) -> None:
    with OfficePool(1, recycle_after=2) as p:
        p.to_pdf(documents["docx"], "docx", timeout=120)
        (first,) = p.worker_pids()
        p.to_pdf(documents["docx"], "docx", timeout=120)
        (second,) = p.worker_pids()
        assert second != first
        assert _wait_gone(_tree(first)) == []
        assert p.to_pdf(documents["docx"], "docx", timeout=120).startswith(b"%PDF-")


def test_cold_mode_converts_without_a_listener(documents: dict[str, bytes]) -> None:
    with OfficePool(0) as p:
        assert p.to_pdf(documents["docx"], "docx", timeout=120).startswith(b"%PDF-")
        assert p.worker_pids() == []
        # The one-shot soffice is gone once to_pdf returns (others' may run meanwhile).
        assert _processes_mentioning(str(p.work_dir())) == []


# --- the sanitizer ---------------------------------------------------------------------------


def test_sanitize_docx_gives_an_image_only_pdf(
    pool: OfficePool, documents: dict[str, bytes]
) -> None:
    detected = Detected(kind="docx", mime="application/vnd.openxmlformats-officedocument")
    result = sanitize_office(documents["docx"], "見積書.docx", detected, _ctx(pool))
    assert result.action is Action.CONVERTED
    (clean,) = result.files
    assert clean.filename == "見積書.pdf"
    assert clean.content_type == "application/pdf"
    assert clean.data.startswith(b"%PDF-")
    assert _font_names(clean.data) == set()  # pixels only: no text, no fonts
    assert "macros_removed" not in result.reasons


def test_macros_do_not_run_and_are_reported(pool: OfficePool, tmp_path: Path) -> None:
    marker = tmp_path / "macro-ran"
    detected = Detected(
        kind="odt", mime="application/vnd.oasis.opendocument.text", flags=frozenset({"macros"})
    )
    result = sanitize_office(_macro_odt(marker), "請求書.odt", detected, _ctx(pool))
    assert result.files[0].filename == "請求書.pdf"
    assert "macros_removed" in result.reasons
    assert not marker.exists()


def test_encrypted_is_refused_before_any_conversion() -> None:
    detected = Detected(kind="docx", mime="application/encrypted", flags=frozenset({"encrypted"}))
    # No converter at all: reaching the conversion would raise ConversionFailed instead.
    with pytest.raises(Encrypted):
        sanitize_office(b"\xd0\xcf\x11\xe0", "secret.docx", detected, _ctx(None))


def test_no_converter_is_a_conversion_failure() -> None:
    detected = Detected(kind="docx", mime="application/zip")
    with pytest.raises(ConversionFailed, match="no office converter"):
        sanitize_office(b"PK\x03\x04", "a.docx", detected, _ctx(None))


# --- corpus tier -----------------------------------------------------------------------------


def _corpus_office_files(corpus: Path) -> list[Path]:
    return sorted(
        p
        for group in ("adversarial/office", "documents/office")
        for p in (corpus / group).rglob("*")
        if p.is_file()
    )


@pytest.mark.corpus
def test_corpus_office_files_end_clean_or_refused(pool: OfficePool, corpus: Path) -> None:
    from gateway.mime.detect import detect

    seen = 0
    outcomes: dict[str, str] = {}
    for path in _corpus_office_files(corpus):
        data = path.read_bytes()
        detected = detect(data, path.name, "application/octet-stream")
        if detected.kind not in office.SUFFIXES:
            continue  # routed to another sanitizer (csv, xml, zip, ...)
        seen += 1
        try:
            result = sanitize_office(data, path.name, detected, _ctx(pool))
        except PartRefused as exc:
            assert exc.reason, path
            outcomes[path.name] = exc.reason
            continue
        (clean,) = result.files
        assert clean.content_type == "application/pdf" and clean.data.startswith(b"%PDF-")
        assert _font_names(clean.data) == set(), path
        outcomes[path.name] = "pdf"
    assert seen >= 20, outcomes
    print(outcomes)
