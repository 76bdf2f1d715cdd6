"""Sandbox child: open one password-protected file with the operator's password (PPAP).

Run only through ``gateway.sanitize.sandbox.run`` (``python -I -m
gateway.sanitize.decrypt_child KIND MAX_MEMBERS MAX_BYTES``). The password comes on stdin,
never in argv or the environment (both are visible to other local users in /proc):

    stdin  = u32 big-endian password length, the password (UTF-8), then the file's bytes
    stdout = the same content without encryption (a plain ZIP, a PDF, an OOXML/OLE file)

Nothing is sanitized here: the parent runs the normal sanitizers on what comes out, with
all their limits. This child only has to stay bounded (member count, unpacked bytes; the
sandbox adds memory, time and output caps) and never echo the password (no tracebacks
on stderr: the exit code says what happened).
"""

from __future__ import annotations

import io
import stat
import struct
import sys
import zipfile
import zlib
from typing import IO

EXIT_OK = 0
EXIT_WRONG_PASSWORD = 10
EXIT_UNSUPPORTED = 11  # not encrypted, or an encryption this library cannot open
EXIT_LIMIT = 12
EXIT_UNREADABLE = 13
EXIT_USAGE = 64

KINDS = ("zip", "pdf", "office")
_MAX_PASSWORD = 1024
_CHUNK = 1 << 16


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _member_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x800:
        return info.filename
    from gateway.sanitize.archive.names import decode_legacy_name

    # zipfile decoded the raw bytes as cp437 (a bijection): undo it, then decode as the
    # archive sanitizer does (ASCII, UTF-8, CP932), so Japanese names survive.
    return decode_legacy_name(info.orig_filename.encode("cp437")).replace("\\", "/")


def unlock_zip(data: bytes, password: bytes, max_members: int, max_bytes: int) -> bytes:
    import pyzipper  # ZipCrypto and WinZip AES

    try:
        zf = pyzipper.AESZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _Refused(EXIT_UNREADABLE) from exc
    infos = zf.infolist()
    if len(infos) > max_members:
        raise _Refused(EXIT_LIMIT)
    if not any(i.flag_bits & 0x1 for i in infos):
        raise _Refused(EXIT_UNSUPPORTED)  # nothing to unlock: the password is not needed
    zf.setpassword(password)
    out = io.BytesIO()
    total = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as plain:
        for info in infos:
            name = _member_name(info)
            target = zipfile.ZipInfo(name, date_time=info.date_time)
            # Kept so the archive sanitizer still sees links, devices and directories.
            target.create_system = info.create_system
            target.external_attr = info.external_attr
            if info.is_dir() or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFLNK:
                plain.writestr(target, b"")
                continue
            body = bytearray()
            try:
                with zf.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise _Refused(EXIT_LIMIT)
                        body += chunk
            except RuntimeError as exc:  # "Bad password for file"
                raise _Refused(EXIT_WRONG_PASSWORD) from exc
            except zipfile.BadZipFile as exc:
                # ZipCrypto checks one byte of the key: 1 wrong password in 256 passes it
                # and only the CRC at the end tells. Either way the content is not the
                # sender's, so it counts as a wrong password.
                # AES: a 2-byte verifier, then the HMAC at the end tells the same way.
                if ("CRC" in str(exc) or "HMAC" in str(exc)) and info.flag_bits & 0x1:
                    raise _Refused(EXIT_WRONG_PASSWORD) from exc
                raise _Refused(EXIT_UNREADABLE) from exc
            except zlib.error as exc:
                # A wrong key that passed the check byte inflates garbage and usually fails
                # here, before any CRC: still a wrong password (it must count).
                if info.flag_bits & 0x1:
                    raise _Refused(EXIT_WRONG_PASSWORD) from exc
                raise _Refused(EXIT_UNREADABLE) from exc
            except (NotImplementedError, ValueError, OSError, EOFError) as exc:
                raise _Refused(EXIT_UNREADABLE) from exc
            plain.writestr(target, bytes(body))
    return out.getvalue()


def unlock_pdf(data: bytes, password: bytes) -> bytes:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code != pdfium_c.FPDF_ERR_PASSWORD:
            raise _Refused(EXIT_UNREADABLE) from exc
    else:
        raise _Refused(EXIT_UNSUPPORTED)  # opens without a password
    try:
        pdf = pdfium.PdfDocument(data, password=password.decode("utf-8"))
    except pdfium.PdfiumError as exc:
        code = (
            EXIT_WRONG_PASSWORD if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD else EXIT_UNREADABLE
        )
        raise _Refused(code) from exc
    out = io.BytesIO()
    # Saved without the security handler: the PDF sanitizer then opens it normally.
    pdf.save(out, flags=pdfium_c.FPDF_REMOVE_SECURITY)
    return out.getvalue()


def unlock_office(data: bytes, password: bytes) -> bytes:
    import msoffcrypto
    from msoffcrypto import exceptions as mso_errors

    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(data))
        if not office.is_encrypted():
            raise _Refused(EXIT_UNSUPPORTED)
        office.load_key(password=password.decode("utf-8"), verify_password=True)
        out = io.BytesIO()
        office.decrypt(out)
    except _Refused:
        raise
    except mso_errors.InvalidKeyError as exc:
        raise _Refused(EXIT_WRONG_PASSWORD) from exc
    except (mso_errors.DecryptionError, mso_errors.ParseError) as exc:
        raise _Refused(EXIT_UNSUPPORTED) from exc
    except Exception as exc:  # noqa: BLE001 - a hostile file: any failure is "unreadable"
        raise _Refused(EXIT_UNREADABLE) from exc
    return out.getvalue()


def split_input(raw: bytes) -> tuple[bytes, bytes]:
    if len(raw) < 4:
        raise _Refused(EXIT_USAGE)
    (length,) = struct.unpack_from(">I", raw)
    if length > _MAX_PASSWORD or len(raw) < 4 + length:
        raise _Refused(EXIT_USAGE)
    return raw[4 : 4 + length], raw[4 + length :]


def main(argv: list[str], stdin: IO[bytes], stdout: IO[bytes]) -> int:
    if len(argv) != 3 or argv[0] not in KINDS:
        return EXIT_USAGE
    try:
        max_members, max_bytes = int(argv[1]), int(argv[2])
        password, data = split_input(stdin.read())
        if argv[0] == "zip":
            plain = unlock_zip(data, password, max_members, max_bytes)
        elif argv[0] == "pdf":
            plain = unlock_pdf(data, password)
        else:
            plain = unlock_office(data, password)
    except _Refused as exc:
        return exc.code
    except ValueError:
        return EXIT_USAGE
    except MemoryError:
        return EXIT_LIMIT
    except Exception:  # noqa: BLE001 - no traceback: it could quote the password
        return EXIT_UNREADABLE
    if len(plain) > max_bytes:
        return EXIT_LIMIT
    stdout.write(plain)
    stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdin.buffer, sys.stdout.buffer))
