"""The decrypting sandbox child (gateway/sanitize/decrypt_child.py) through its parent
``decrypt()``: real children, real ZipCrypto/AES ZIPs, a real encrypted PDF and OOXML file.

Attacks: wrong passwords for each cipher, a near-miss password, an empty or overlong one,
too many members, more unpacked bytes than allowed (a bomb behind a password), an archive
that is not encrypted at all, garbage claiming to be a ZIP, and an unencrypted PDF.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pikepdf
import pypdfium2
import pytest
from msoffcrypto.format.ooxml import OOXMLFile

from gateway.errors import ArchiveLimit, ConversionFailed, UnlockUnsupported, WrongPassword
from gateway.sanitize.decrypt import decrypt
from gateway.settings import SanitizeSettings, load_settings
from tests.unlock.ppap import aes_zip, zipcrypto_zip

PW = "正しい-pass-42"
MEMBERS = {"見積書.txt": "本文\n".encode(), "dir/b.csv": b"a,b\n1,2\n"}
Maker = Callable[[dict[str, bytes], str], bytes]
MAKERS = pytest.mark.parametrize("make", [zipcrypto_zip, aes_zip], ids=["zipcrypto", "aes"])


def limits(**overrides: object) -> SanitizeSettings:
    return load_settings(None, sanitize=overrides).sanitize


@MAKERS
def test_right_password_gives_a_plain_zip_with_the_same_members(make: Maker) -> None:
    plain = decrypt(make(MEMBERS, PW), "zip", PW, limits(), seconds=30)
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert not any(i.flag_bits & 0x1 for i in zf.infolist())
        assert {n: zf.read(n) for n in zf.namelist()} == MEMBERS


@MAKERS
@pytest.mark.parametrize("guess", ["wrong", PW[:-1], PW + "3", PW.upper()])
def test_wrong_passwords(make: Maker, guess: str) -> None:
    with pytest.raises(WrongPassword):
        decrypt(make(MEMBERS, PW), "zip", guess, limits(), seconds=30)


@pytest.mark.parametrize("guess", ["", "x" * 257])
def test_empty_or_overlong_password_is_wrong_without_trying(guess: str) -> None:
    with pytest.raises(WrongPassword):
        decrypt(aes_zip(MEMBERS, PW), "zip", guess, limits(), seconds=30)


@MAKERS
def test_too_many_members(make: Maker) -> None:
    many = {f"f{i}.txt": b"x" for i in range(6)}
    with pytest.raises(ArchiveLimit):
        decrypt(make(many, PW), "zip", PW, limits(max_archive_members=5), seconds=30)


@MAKERS
def test_a_bomb_behind_the_password_stops_at_the_unpacked_limit(make: Maker) -> None:
    bomb = {"zeros.txt": b"0" * (3 * 1024 * 1024)}  # deflates to a few KiB
    with pytest.raises(ArchiveLimit):
        decrypt(make(bomb, PW), "zip", PW, limits(max_unpacked_bytes=1024 * 1024), seconds=30)


def test_an_unencrypted_zip_is_not_unlocked() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "plain")
    with pytest.raises(UnlockUnsupported):
        decrypt(buf.getvalue(), "zip", PW, limits(), seconds=30)


def test_garbage_is_refused() -> None:
    with pytest.raises(ConversionFailed):
        decrypt(b"PK\x03\x04" + b"\xff" * 200, "zip", PW, limits(), seconds=30)


def _encrypted_pdf(user: str) -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 300))
    buf = io.BytesIO()
    pdf.save(buf, encryption=pikepdf.Encryption(user=user, owner=user + "-owner", R=6))
    return buf.getvalue()


def test_pdf_right_and_wrong_password() -> None:
    data = _encrypted_pdf(PW)
    with pytest.raises(WrongPassword):
        decrypt(data, "pdf", "nope", limits(), seconds=30)
    plain = decrypt(data, "pdf", PW, limits(), seconds=30)
    assert len(pypdfium2.PdfDocument(plain)) == 1  # opens without any password now


def test_an_unencrypted_pdf_is_not_unlocked() -> None:
    buf = io.BytesIO()
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.save(buf)
    with pytest.raises(UnlockUnsupported):
        decrypt(buf.getvalue(), "pdf", PW, limits(), seconds=30)


def _docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="xml" ContentType="application/xml"/></Types>',
        )
        # msoffcrypto cannot read back its own encryption of a package under ~4 KiB.
        zf.writestr("word/document.xml", "<w:document>" + "x" * 5000 + "</w:document>")
    return buf.getvalue()


def test_office_right_and_wrong_password() -> None:
    docx = _docx()
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(docx)).encrypt(PW, out)
    with pytest.raises(WrongPassword):
        decrypt(out.getvalue(), "office", "nope", limits(), seconds=60)
    assert decrypt(out.getvalue(), "office", PW, limits(), seconds=60) == docx


def test_cp932_member_names_from_japanese_windows_survive() -> None:
    members = {"見積書（第2版）.txt": "本文\n".encode(), "資料/単価表.csv": b"a,b\n"}
    plain = decrypt(zipcrypto_zip(members, PW, cp932=True), "zip", PW, limits(), seconds=30)
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == members


def test_hostile_member_paths_behind_the_password_still_meet_the_archive_guards() -> None:
    from gateway.sanitize.base import Context, PageBudget
    from gateway.sanitize.registry import sanitize_part

    members = {"../../etc/cron.d/evil.txt": b"* * * * * root sh\n", "ok.txt": b"fine\n"}
    plain = decrypt(zipcrypto_zip(members, PW), "zip", PW, limits(), seconds=30)
    ctx = Context(limits=limits(), pages=PageBudget(100))
    report, files = sanitize_part(plain, "x.zip", "", ctx, "1")
    assert [f.filename for f in files] == ["ok.txt"]
    reasons = {r for c in report.children for r in c.reasons}
    assert "unsafe_path" in reasons


def test_a_wrong_zipcrypto_password_that_passes_the_check_byte_is_still_wrong() -> None:
    # ZipCrypto checks one byte: about 1 wrong password in 256 passes it, and then inflating
    # the garbage fails (zlib.error) before any CRC is compared. That is a wrong password
    # too: reported as "unreadable" it would not count towards the rate limit.
    data = zipcrypto_zip({"a.txt": "本文です。".encode() * 200}, PW)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[0]
        passing = []
        for i in range(20000):
            guess = f"guess-{i}"
            try:
                zf.open(info, pwd=guess.encode()).close()
            except RuntimeError:  # "Bad password": the check byte did not match
                continue
            passing.append(guess)
            if len(passing) == 3:
                break
    assert len(passing) == 3
    for guess in passing:
        with pytest.raises(WrongPassword):
            decrypt(data, "zip", guess, limits(), seconds=30)
