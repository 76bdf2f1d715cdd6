"""ClamdScanner against a real clamd (tests/plugins/clamd.py) and fault-injecting fakes."""

from __future__ import annotations

import asyncio
import gzip
import io
import socket
import struct
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.errors import Permanent, ScannerUnavailable, TooLargeToScan
from gateway.scan.clamd import ClamdScanner
from tests.plugins.clamd import EICAR, EICAR_SIGNATURE, Clamd

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*" + b"GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(params=["unix", "tcp"])
def address(request: pytest.FixtureRequest) -> str:
    name = "clamd_address" if request.param == "unix" else "clamd_tcp_address"
    value: str = request.getfixturevalue(name)
    return value


@pytest.fixture(scope="module")
def small_clamd(clamd_factory: Callable[..., Clamd]) -> Clamd:
    """A dedicated clamd that refuses streams over 256 KiB and scans files up to 128 KiB."""
    return clamd_factory(StreamMaxLength="256K", MaxFileSize="128K")


def mime_with_attachment(payload: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "staff@town.example.lg.jp"
    msg["Subject"] = "請求書"
    msg.set_content("添付をご確認ください。\n")
    msg.add_attachment(
        payload, maintype="application", subtype="octet-stream", filename="invoice.com"
    )
    return msg.as_bytes()


def zipped(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, payload + b"\r\n" * 50)
    return buf.getvalue()


# --- real clamd ----------------------------------------------------------------------
async def test_clean_data_is_ok(address: str) -> None:
    result = await ClamdScanner(address).scan("こんにちは、世界\n".encode() * 100)
    assert result.clean
    assert result.signature == ""
    assert result.seconds >= 0


async def test_eicar_found_with_signature_name(address: str) -> None:
    result = await ClamdScanner(address).scan(EICAR)
    assert not result.clean
    assert result.signature == EICAR_SIGNATURE


async def test_gtube_is_not_a_virus(clamd_address: str) -> None:
    # Spam test strings must not quarantine a message as infected.
    assert (await ClamdScanner(clamd_address).scan(GTUBE)).clean


async def test_empty_data_is_ok(address: str) -> None:
    assert (await ClamdScanner(address).scan(b"")).clean


async def test_eicar_in_base64_mime_attachment_found(clamd_address: str) -> None:
    raw = mime_with_attachment(EICAR)
    assert EICAR not in raw  # only found if clamd decodes the MIME part
    result = await ClamdScanner(clamd_address).scan(raw)
    assert (result.clean, result.signature) == (False, EICAR_SIGNATURE)


async def test_clean_mime_message_ok(clamd_address: str) -> None:
    assert (await ClamdScanner(clamd_address).scan(mime_with_attachment(b"MZ" * 100))).clean


async def test_eicar_in_zip_found(clamd_address: str) -> None:
    data = zipped("docs/readme.txt", EICAR)
    assert EICAR not in data
    result = await ClamdScanner(clamd_address).scan(data)
    assert (result.clean, result.signature) == (False, EICAR_SIGNATURE)


async def test_eicar_in_gzip_and_zip_in_mime_found(clamd_address: str) -> None:
    scanner = ClamdScanner(clamd_address)
    packed = gzip.compress(EICAR + b"\n" * 100)
    assert EICAR not in packed
    assert not (await scanner.scan(packed)).clean
    nested = mime_with_attachment(zipped("a.txt", EICAR))
    assert (await scanner.scan(nested)).signature == EICAR_SIGNATURE


async def test_corpus_eicar_zip_gz_found(clamd_address: str, corpus: Path) -> None:
    folder = corpus / "adversarial" / "archives" / "corkami-zgip"
    scanner = ClamdScanner(clamd_address)
    infected = await scanner.scan((folder / "eicar.zip.gz").read_bytes())
    assert (infected.clean, infected.signature) == (False, EICAR_SIGNATURE)
    assert (await scanner.scan((folder / "hello.zip.gz").read_bytes())).clean


async def test_eicar_across_chunk_boundary_found(address: str) -> None:
    # Many chunks, the signature split between two of them: clamd must see one stream.
    data = b"a" * 995 + EICAR + b"b" * 5000
    result = await ClamdScanner(address, chunk_bytes=1000).scan(data)
    assert result.signature == EICAR_SIGNATURE


async def test_data_bigger_than_chunk_ok(address: str) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB, 32 chunks of 64 KiB
    assert (await ClamdScanner(address).scan(data)).clean


async def test_ping_and_version(address: str) -> None:
    scanner = ClamdScanner(address)
    assert await scanner.ping() is True
    assert (await scanner.version()).startswith("ClamAV ")


async def test_concurrent_scans_all_correct(address: str) -> None:
    scanner = ClamdScanner(address, chunk_bytes=4096)
    payloads = [
        (b"x" * 20_000 + EICAR) if i % 3 == 0 else f"message {i}\n".encode() * 2000
        for i in range(20)
    ]
    results = await asyncio.gather(*(scanner.scan(p) for p in payloads))
    for i, result in enumerate(results):
        assert result.clean is (i % 3 != 0), i
        assert result.signature == ("" if i % 3 else EICAR_SIGNATURE)


# --- fail closed -----------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_stream_over_clamd_limit_is_unavailable(small_clamd: Clamd, transport: str) -> None:
    address = small_clamd.unix_address if transport == "unix" else small_clamd.tcp_address
    assert address is not None
    scanner = ClamdScanner(address)
    assert (await scanner.scan(b"z" * 100_000)).clean  # under the limit: scanned
    # Over it: never "clean". On a loaded machine clamd's reset can beat its "size limit"
    # answer even here; that is ScannerUnavailable, which the worker retries, so the test
    # retries too and requires the permanent answer within a few tries.
    caught: TooLargeToScan | None = None
    for _ in range(5):
        try:
            result = await scanner.scan(b"z" * 300_000)
        except TooLargeToScan as exc:
            caught = exc
            break
        except ScannerUnavailable:
            continue
        raise AssertionError(f"an over-limit stream was answered {result}")
    assert caught is not None, "never answered too_large_to_scan"
    assert isinstance(caught, Permanent)
    assert caught.reason == "too_large_to_scan"
    # Far over it clamd's reset can beat its answer: then it is retried, still never clean.
    with pytest.raises((TooLargeToScan, ScannerUnavailable)):
        await scanner.scan(b"z" * 5_000_000)
    # clamd itself survives and keeps answering.
    assert await scanner.ping()


async def test_content_over_scan_limits_is_never_clean(small_clamd: Clamd) -> None:
    # The shipped config sets AlertExceedsMax: without it clamd answers OK unscanned.
    result = await ClamdScanner(small_clamd.unix_address).scan(b"y" * 200_000)
    assert not result.clean
    assert result.signature.startswith("Heuristics.Limits.Exceeded")


async def test_closed_port_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scanner = ClamdScanner(f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(ScannerUnavailable):
        await scanner.scan(b"data")
    assert await scanner.ping() is False
    with pytest.raises(ScannerUnavailable):
        await scanner.version()


async def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    scanner = ClamdScanner(f"unix:{tmp_path / 'nothing.sock'}", timeout=5)
    with pytest.raises(ScannerUnavailable):
        await scanner.scan(b"data")
    assert await scanner.ping() is False


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_clamd(handler: Handler) -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (OSError, EOFError):
            pass  # the client gave up first: expected in the fault tests
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_instream(reader: asyncio.StreamReader) -> tuple[bytes, list[int]]:
    """Read one zINSTREAM request as clamd would; returns (command, chunk lengths)."""
    command = await reader.readuntil(b"\0")
    sizes: list[int] = []
    while True:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        if size == 0:
            return command, sizes
        await reader.readexactly(size)
        sizes.append(size)


async def test_wire_format() -> None:
    seen: list[tuple[bytes, list[int]]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_instream(reader))
        writer.write(b"stream: OK\0")
        await writer.drain()
        writer.close()

    async with fake_clamd(handler) as address:
        assert (await ClamdScanner(address, chunk_bytes=1000).scan(b"q" * 2500)).clean
        assert (await ClamdScanner(address).scan(b"")).clean
    assert seen == [(b"zINSTREAM\0", [1000, 1000, 500]), (b"zINSTREAM\0", [])]


async def test_silent_server_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads everything, never answers

    async with fake_clamd(handler) as address:
        scanner = ClamdScanner(address, timeout=0.5)
        with pytest.raises(ScannerUnavailable, match="did not answer"):
            await scanner.scan(b"data")
        assert await scanner.ping() is False


async def test_server_that_never_reads_times_out() -> None:
    # The client blocks in drain() once the socket buffers fill; the timeout still holds.
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    async with fake_clamd(handler) as address:
        try:
            with pytest.raises(ScannerUnavailable, match="did not answer"):
                await ClamdScanner(address, timeout=0.5).scan(b"w" * 20_000_000)
        finally:
            release.set()


@pytest.mark.parametrize(
    "reply",
    [
        b"hello\0",
        b"\xff\xfe\x00",
        b"stream: OK extra\0",
        b"stream: FOUND\0",
        b"stream:  FOUND\0",
        b"PONG\0",
        b"stream: OK",  # cut before the NUL: never trusted
        b"",  # hangs up without a word
        b"x" * 10_000,  # no NUL within any sane length
        b"stream: Sig\x1b[31m FOUND\0",
        b"stream: Can't allocate memory ERROR\0",
    ],
)
async def test_garbled_or_error_reply_is_unavailable(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_instream(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async with fake_clamd(handler) as address:
        with pytest.raises(ScannerUnavailable):
            await ClamdScanner(address, timeout=5).scan(b"data")


async def test_size_limit_reply_is_too_large_to_scan() -> None:
    # Issue 13: retrying cannot help; a Permanent quarantine, never clean, never Transient.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_instream(reader)
        writer.write(b"INSTREAM size limit exceeded. ERROR\0")
        await writer.drain()
        writer.close()

    async with fake_clamd(handler) as address:
        with pytest.raises(TooLargeToScan):
            await ClamdScanner(address, timeout=5).scan(b"data")


async def test_garbage_to_ping_and_version() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\0")
        writer.write(b"NOPE\0")
        await writer.drain()
        writer.close()

    async with fake_clamd(handler) as address:
        scanner = ClamdScanner(address, timeout=5)
        assert await scanner.ping() is False
        with pytest.raises(ScannerUnavailable):
            await scanner.version()


async def test_found_reply_from_fake() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_instream(reader)
        writer.write(b"stream: Win.Test.EICAR_HDB-1 FOUND\0")
        await writer.drain()
        writer.close()

    async with fake_clamd(handler) as address:
        result = await ClamdScanner(address).scan(b"data")
    assert (result.clean, result.signature) == (False, "Win.Test.EICAR_HDB-1")


@pytest.mark.parametrize("bad", ["unix:", "h:abc", "127.0.0.1:0", ":3310", "h:99999"])
def test_bad_address_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        ClamdScanner(bad)


def test_bad_limits_rejected() -> None:
    with pytest.raises(ValueError):
        ClamdScanner("127.0.0.1:3310", timeout=0)
    with pytest.raises(ValueError):
        ClamdScanner("127.0.0.1:3310", chunk_bytes=0)
