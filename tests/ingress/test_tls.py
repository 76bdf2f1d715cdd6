"""STARTTLS on the intake when a certificate is configured."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import subprocess
from pathlib import Path

from gateway.ingress.smtp import start_smtp
from gateway.settings import load_settings
from gateway.spool import Spool


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=mugai.example.lg.jp", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_starttls_offered_and_mail_accepted_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = load_settings(
        None,
        smtp={"listen": "127.0.0.1:0", "accepted_domains": ["town.example.lg.jp"]},
        storage={"data_dir": str(tmp_path / "data")},
        tls={"cert_file": str(cert), "key_file": str(key)},
    )
    spool = Spool(settings.spool_dir)
    server = await start_smtp(settings, spool, asyncio.Event())
    port = server.sockets[0].getsockname()[1]

    def run() -> tuple[bool, str, int]:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example.com")
            offered = c.has_extn("starttls")
            c.starttls(context=ctx)
            c.ehlo("client.example.com")
            sock = c.sock
            assert isinstance(sock, ssl.SSLSocket)
            version = sock.version() or ""
            c.mail("a@example.com")
            c.rcpt("u@town.example.lg.jp")
            code, _ = c.data(b"Subject: tls\r\n\r\nover tls\r\n")
            return offered, version, code

    try:
        offered, version, code = await asyncio.to_thread(run)
    finally:
        server.close()
    assert offered and version.startswith("TLS") and code == 250
    job = spool.claim()
    assert job is not None and b"over tls" in job.read()


async def test_no_starttls_without_certificate(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        smtp={"listen": "127.0.0.1:0"},
        storage={"data_dir": str(tmp_path / "data")},
    )
    server = await start_smtp(settings, Spool(settings.spool_dir), asyncio.Event())
    port = server.sockets[0].getsockname()[1]

    def run() -> bool:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example.com")
            return c.has_extn("starttls")

    try:
        assert await asyncio.to_thread(run) is False
    finally:
        server.close()


async def test_renewed_certificate_is_used_without_restart(tmp_path: Path) -> None:
    first, key = self_signed(tmp_path)
    settings = load_settings(
        None,
        smtp={"listen": "127.0.0.1:0"},
        storage={"data_dir": str(tmp_path / "data")},
        tls={"cert_file": str(first), "key_file": str(key)},
    )
    server = await start_smtp(settings, Spool(settings.spool_dir), asyncio.Event())
    port = server.sockets[0].getsockname()[1]

    def peer_cert() -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example.com")
            c.starttls(context=ctx)
            sock = c.sock
            assert isinstance(sock, ssl.SSLSocket)
            der = sock.getpeercert(binary_form=True)
            assert der is not None
            return der

    try:
        before = await asyncio.to_thread(peer_cert)
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        new_cert, new_key = self_signed(renewed)
        # Renewal tools replace the files in place.
        first.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        after = await asyncio.to_thread(peer_cert)
    finally:
        server.close()
    assert before != after
    assert after == ssl.PEM_cert_to_DER_cert(new_cert.read_text())
