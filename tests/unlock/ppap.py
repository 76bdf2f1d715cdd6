"""Build password-protected test files in the test, as senders' tools make them.

- AES: pyzipper (WinZip AE-2, what 7-Zip / WinZip / Explorer-add-ons make).
- ZipCrypto (the traditional PKWARE cipher, what most PPAP mail carries): pyzipper only
  reads it, so it is written here, ~30 lines of APPNOTE 6.1; the stdlib ``zipfile`` reads
  the result back with the password (checked in ``zipcrypto_zip``), so it is the real thing.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import pyzipper


def aes_zip(members: dict[str, bytes], password: str) -> bytes:
    buf = io.BytesIO()
    with pyzipper.AESZipFile(
        buf, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(password.encode())
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _crc_byte(crc: int, b: int) -> int:
    return (zlib.crc32(bytes([b]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF) & 0xFFFFFFFF


class _ZipCrypto:
    def __init__(self, password: bytes) -> None:
        self.k = [0x12345678, 0x23456789, 0x34567890]
        for b in password:
            self._update(b)

    def _update(self, b: int) -> None:
        k0, k1, k2 = self.k
        k0 = _crc_byte(k0, b)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = _crc_byte(k2, (k1 >> 24) & 0xFF)
        self.k = [k0, k1, k2]

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            t = (self.k[2] | 2) & 0xFFFF
            out.append(b ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            self._update(b)
        return bytes(out)


def zipcrypto_zip(members: dict[str, bytes], password: str, *, cp932: bool = False) -> bytes:
    """A deflated ZIP with every member ZipCrypto-encrypted (flag bit 0); ``cp932``: names
    as Japanese Windows' Explorer and Lhaplus write them (CP932, no UTF-8 flag)."""
    out = io.BytesIO()
    central = []
    for name, data in members.items():
        raw_name = name.encode("cp932" if cp932 else "utf-8")
        crc = zlib.crc32(data) & 0xFFFFFFFF
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        packed = comp.compress(data) + comp.flush()
        cipher = _ZipCrypto(password.encode("utf-8"))
        header = os.urandom(11) + bytes([crc >> 24])  # last byte: the password check
        body = cipher.encrypt(header + packed)
        flags = 0x1 | (0 if cp932 else 0x800)  # encrypted (+ UTF-8 name)
        offset = out.tell()
        out.write(
            struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 8, 0, 0x21, crc, len(body),
                        len(data), len(raw_name), 0)
            + raw_name + body
        )  # fmt: skip
        central.append(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, 8, 0, 0x21, crc,
                        len(body), len(data), len(raw_name), 0, 0, 0, 0, 0, offset)
            + raw_name
        )  # fmt: skip
    cd_start = out.tell()
    for entry in central:
        out.write(entry)
    cd_size = out.tell() - cd_start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), cd_size,
                          cd_start, 0))  # fmt: skip
    result = out.getvalue()
    with zipfile.ZipFile(io.BytesIO(result)) as zf:  # the stdlib agrees it is ZipCrypto
        for info, data in zip(zf.infolist(), members.values(), strict=True):
            assert info.flag_bits & 0x1
            assert zf.read(info, pwd=password.encode("utf-8")) == data
    return result
