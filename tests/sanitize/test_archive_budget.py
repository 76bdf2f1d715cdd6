"""The message-wide unpacked-bytes budget: one ByteBudget shared by nested archives."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from email.message import EmailMessage

import pytest

from gateway.errors import ArchiveLimit
from gateway.model import PartReport
from gateway.pipeline import sanitize_message
from gateway.sanitize.archive.budget import ByteBudget
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.registry import sanitize_part
from gateway.settings import load_settings
from gateway.spool import JobMeta, new_id
from tests.sanitize.test_archive import make_ctx, run, zip_bytes

MIB = 1024 * 1024


def test_byte_budget_charges_until_exhausted_then_refuses() -> None:
    budget = ByteBudget(10)
    budget.charge(4)
    budget.charge(6)
    assert budget.remaining == 0
    with pytest.raises(ArchiveLimit) as exc:
        budget.charge(1)
    assert exc.value.reason == ArchiveLimit.reason
    with pytest.raises(ArchiveLimit):  # stays over: later charges fail too
        budget.charge(0)


def test_child_contexts_share_the_parent_budget() -> None:
    ctx = make_ctx()
    assert ctx.unpacked.total == ctx.limits.max_unpacked_bytes
    assert ctx.child().child().unpacked is ctx.unpacked
    assert make_ctx().unpacked is not ctx.unpacked  # another message, another budget


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _reasons(reports: tuple[PartReport, ...]) -> set[str]:
    out: set[str] = set()
    for r in reports:
        out.update(r.reasons)
        out |= _reasons(r.children)
    return out


def _nested_bomb() -> bytes:
    # Stored members: every archive's own unpacked/packed ratio is ~1 and each level stays
    # under the 4 MiB limit by itself (inner 2 MiB, middle 3 MiB); only the sum, 5 MiB,
    # is over. zip in zip in tar.
    text = b"0123456789abcdef" * (MIB // 16)
    inner = zip_bytes({"a.txt": text, "b.txt": text}, zipfile.ZIP_STORED)
    middle = zip_bytes({"inner.zip": inner, "c.txt": text}, zipfile.ZIP_STORED)
    return _tar({"middle.zip": middle})


def test_nested_archives_draw_on_one_message_budget() -> None:
    result = run(_nested_bomb(), "outer.tar", make_ctx(max_unpacked_bytes=4 * MIB))
    assert ArchiveLimit.reason in _reasons(result.children)


def test_each_level_alone_is_within_the_limit() -> None:
    # The same archive with room for the sum passes: the refusal above is the shared total.
    result = run(_nested_bomb(), "outer.tar", make_ctx(max_unpacked_bytes=6 * MIB))
    assert ArchiveLimit.reason not in _reasons(result.children)
    assert len(result.files) == 3


def _mail_in_zip() -> bytes:
    # A zip inside a mail inside a zip: the budget crosses the message sanitizer too.
    text = b"0123456789abcdef" * (MIB // 16)
    inner = zip_bytes({"a.txt": text, "b.txt": text}, zipfile.ZIP_STORED)
    mail = EmailMessage()
    mail["From"] = "a@example.com"
    mail["Subject"] = "fwd"
    mail.set_content("see attached")
    mail.add_attachment(inner, maintype="application", subtype="zip", filename="inner.zip")
    return zip_bytes({"mail.eml": mail.as_bytes(), "c.txt": text}, zipfile.ZIP_STORED)


@pytest.mark.parametrize(("limit", "refused"), [(4.5, True), (8, False)])
def test_archive_in_mail_in_archive_shares_the_budget(limit: float, refused: bool) -> None:
    # Outer zip ~3.8 MiB (mail ~2.8 + c.txt 1), inner zip 2 MiB: each alone under 4.5 MiB.
    settings = load_settings().sanitize
    limits = settings.model_copy(update={"max_unpacked_bytes": int(limit * MIB)})
    ctx = Context(limits=limits, pages=PageBudget(limits.max_pages_per_message))
    report, _ = sanitize_part(_mail_in_zip(), "outer.zip", "", ctx, "1")
    assert (ArchiveLimit.reason in _reasons((report,))) is refused


@pytest.mark.parametrize(("limit", "refused"), [(4, True), (8, False)])
def test_attachments_of_one_message_share_the_budget(limit: int, refused: bool) -> None:
    # Two 3 MiB zips, each under 4 MiB alone: the pipeline gives all attachments one budget.
    text = b"0123456789abcdef" * (3 * MIB // 16)
    mail = EmailMessage()
    mail["From"] = "a@example.com"
    mail["To"] = "u@town.example.lg.jp"
    mail["Subject"] = "two zips"
    mail.set_content("see attached")
    for n in (1, 2):
        data = zip_bytes({f"{n}.txt": text}, zipfile.ZIP_STORED)
        mail.add_attachment(data, maintype="application", subtype="zip", filename=f"{n}.zip")
    settings = load_settings(None, sanitize={"max_unpacked_bytes": str(limit * MIB)})
    meta = JobMeta(id=new_id(), kind="mail", mail_from="a@example.com",
                   rcpt_tos=("u@town.example.lg.jp",), received_at=time.time(),
                   helo="mx.example.com", peer="192.0.2.1")  # fmt: skip
    out = sanitize_message(mail.as_bytes(), meta, settings, None)
    assert (ArchiveLimit.reason in _reasons(out.report.parts)) is refused
