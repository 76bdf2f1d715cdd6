"""The admin listener under abuse, against a REAL uvicorn on port 0 (raw sockets as the attacker).

Streaming body limit (chunked, no Content-Length), concurrent uploads per token, Host allowlist,
slowloris read deadlines with quiet logs, and security headers on a 500 page.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.server import AdminServer, start_admin
from gateway.relay import SmtpRelay
from gateway.scan.clamd import ClamdScanner
from gateway.settings import load_settings
from gateway.spool import Spool
from gateway.store.repository import Store
from tests.api.conftest import MiniGateway
from tests.plugins.smtp_sink import Sink
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(300)
MiB = 1 << 20
BOUNDARY = "xXmugaiXx"


def _gateway(tmp_path: Path, sink: Sink, **sections: Any) -> MiniGateway:
    sections.setdefault("admin", {})["listen"] = "127.0.0.1:0"
    settings = load_settings(None, storage={"data_dir": str(tmp_path / "data")}, **sections)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_schema()
    return MiniGateway(
        settings=settings,
        store=store,
        relay=SmtpRelay(sink.address, hostname="mugai.test", timeout=10),
        spool=Spool(settings.spool_dir),
        scanner=ClamdScanner("127.0.0.1:1", timeout=2),
    )


class Running:
    def __init__(self, gw: MiniGateway, server: AdminServer) -> None:
        self.gw = gw
        self.server = server
        self.port = server.port
        self.base = f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


async def _run(gw: MiniGateway) -> AsyncIterator[Running]:
    server = await start_admin(gw.settings, gw)
    try:
        yield Running(gw, server)
    finally:
        await server.stop()
        gw.store.close()


def _upload_head(token: str, *, chunked: bool = True, length: int = 0) -> bytes:
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return (
        "POST /api/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n"
    ).encode()


def _part_head() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class TempWatcher:
    """Largest total size of the (already unlinked) temp files this process holds in ``where``:
    starlette spools multipart files with tempfile, which on Linux leaves no name to list."""

    def __init__(self, where: Path) -> None:
        self.where = str(where)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TempWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").startswith(self.where):
                        total += os.fstat(int(fd)).st_size
                except OSError:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.005)


def _read_status(sock: socket.socket) -> int:
    data = b""
    try:
        while b"\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                break
            data += more
    except OSError:
        pass
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def _exchange(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        return _read_status(sock)


def _flood_chunked(port: int, token: str, total: int) -> tuple[int, int]:
    """Send a chunked multipart upload of ``total`` bytes; returns (bytes sent, status seen)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    status = 0
    block = b"A" * MiB
    try:
        sock.sendall(_upload_head(token) + _chunk(_part_head()))
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:  # the server answered before the body was complete
                status = _read_status(sock)
                break
            sock.sendall(_chunk(block))
            sent += len(block)
        else:
            sock.sendall(_chunk(f"\r\n--{BOUNDARY}--\r\n".encode()) + b"0\r\n\r\n")
        if not status:
            status = _read_status(sock)
    except OSError:  # reset or broken pipe: the server stopped reading
        status = status or _read_status(sock)
    finally:
        sock.close()
    return sent, status


@pytest.fixture
async def limited(
    tmp_path: Path, smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    spool_tmp = tmp_path / "tmp"
    spool_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_tmp))
    gw = _gateway(
        tmp_path,
        smtp_sink,
        files={"max_bytes": 10 * MiB},
        admin={"uploads_per_token": 2, "body_timeout": "60s"},
    )
    async for running in _run(gw):
        yield running


async def test_chunked_300_mib_upload_is_cut_at_the_limit(limited: Running, tmp_path: Path) -> None:
    token, _ = limited.gw.store.create_token("tanaka", "operator", "test")
    with TempWatcher(tmp_path / "tmp") as temp:
        sent, status = await asyncio.to_thread(_flood_chunked, limited.port, token, 300 * MiB)
    assert status in (413, 0), status  # 0: reset before the answer could be read
    # Cut early: socket buffers absorb some MiB, never the 300 MiB that used to be spooled.
    assert sent < 64 * MiB, sent
    assert temp.peak > 0  # the watcher did see the spool (the measurement is real)
    assert temp.peak <= 10 * MiB + 64 * 1024 + MiB, temp.peak
    assert limited.gw.spool.depth() == 0
    # The listener still serves.
    async with httpx.AsyncClient(base_url=limited.base) as c:
        assert (await c.get("/healthz")).status_code == 200


async def test_json_and_form_bodies_are_cut_too(limited: Running) -> None:
    token, _ = limited.gw.store.create_token("admin1", "admin", "test")

    async def chunks() -> Any:
        for _ in range(3):
            yield b"x" * MiB  # 3 MiB against the 1 MiB [admin] max_body_bytes

    async with httpx.AsyncClient(base_url=limited.base) as c:
        r = await c.post(
            "/api/v1/tokens",
            content=chunks(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert r.status_code == 413
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await c.post(
            "/api/v1/tokens", content=b"{}" * MiB, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 413  # declared Content-Length: refused before reading
        r = await c.post(
            "/login",
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_concurrent_uploads_are_capped_per_token(limited: Running) -> None:
    token, _ = limited.gw.store.create_token("tanaka", "operator", "test")
    other, _ = limited.gw.store.create_token("suzuki", "operator", "test")
    held = []
    for _ in range(2):  # two uploads in progress, their bodies not finished
        sock = limited.connect()
        sock.sendall(_upload_head(token) + _chunk(_part_head()) + _chunk(b"A" * 1000))
        held.append(sock)
    await asyncio.sleep(0.5)
    try:
        async with httpx.AsyncClient(base_url=limited.base, timeout=30) as c:
            files = {"file": ("a.txt", b"hello")}
            r = await c.post(
                "/api/v1/files", files=files, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 429, r.text
            r = await c.post(
                "/api/v1/files", files=files, headers={"Authorization": f"Bearer {other}"}
            )
            assert r.status_code == 202, r.text
            for sock in held:
                sock.close()
            held.clear()

            async def upload() -> httpx.Response:
                r = await c.post(
                    "/api/v1/files", files=files, headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code != 429, r.text
                return r

            # The server notices the disconnects and frees the slots.
            r = await eventually_async(upload, timeout=10)
            assert r.status_code == 202, r.text
    finally:
        for sock in held:
            sock.close()


# -- Host allowlist ------------------------------------------------------------------------
async def test_foreign_host_gets_400_on_every_route(tmp_path: Path, smtp_sink: Sink) -> None:
    async for run in _run(_gateway(tmp_path, smtp_sink)):
        token, _ = run.gw.store.create_token("viewer", "viewer", "test")
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=run.base) as c:
            for path in ("/metrics", "/openapi.json", "/healthz", "/login", "/api/v1/messages"):
                for host in ("evil.example", f"evil.example:{run.port}", "127.0.0.1.evil.example"):
                    r = await c.get(path, headers={"Host": host, **auth})
                    assert r.status_code == 400, (path, host, r.status_code)
                    assert "metrics" not in r.text and "openapi" not in r.text
                for host in (f"127.0.0.1:{run.port}", f"localhost:{run.port}", "LOCALHOST"):
                    r = await c.get(path, headers={"Host": host, **auth})
                    assert r.status_code in (200, 303), (path, host, r.status_code)
        # Two Host headers, or none (HTTP/1.0): refused as well.
        for raw in (
            b"GET /metrics HTTP/1.0\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
        ):
            assert await asyncio.to_thread(_exchange, run.port, raw) == 400


async def test_allowed_hosts_setting_replaces_the_default(tmp_path: Path, smtp_sink: Sink) -> None:
    gw = _gateway(tmp_path, smtp_sink, admin={"allowed_hosts": ["Mugai-Admin.Town.LG.jp."]})
    async for run in _run(gw):
        async with httpx.AsyncClient(base_url=run.base) as c:
            ok = await c.get("/healthz", headers={"Host": f"mugai-admin.town.lg.jp:{run.port}"})
            assert ok.status_code == 200
            assert (await c.get("/healthz")).status_code == 400  # 127.0.0.1 no longer listed


# -- slow clients --------------------------------------------------------------------------
def _closed_by_server(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def test_50_slow_clients_are_dropped_while_a_normal_request_succeeds(
    tmp_path: Path, smtp_sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw = _gateway(tmp_path, smtp_sink, admin={"header_timeout": "1s", "body_timeout": "2s"})
    async for run in _run(gw):
        slow = []
        for i in range(50):
            sock = run.connect()
            if i % 2:  # headers never finished
                sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
            else:  # headers complete, half the body
                sock.sendall(
                    b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 1000\r\n\r\n" + b"token=" + b"x" * 494
                )
            slow.append(sock)
        async with httpx.AsyncClient(base_url=run.base, timeout=30) as c:
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/login")).status_code == 200
        # Generous wait (not a performance check): each is dropped by its deadline.
        closed = await asyncio.gather(*(asyncio.to_thread(_closed_by_server, s, 60) for s in slow))
        for sock in slow:
            sock.close()
        assert all(closed), closed.count(False)
    # Quiet: no tracebacks, no errors; one INFO line per dropped client and per broken body.
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text
    dropped = [r for r in caplog.records if "too slow" in r.getMessage()]
    assert len(dropped) == 50
    assert all(r.levelno == logging.INFO and "job=" in r.getMessage() for r in dropped)


async def test_error_pages_carry_the_security_headers(tmp_path: Path, smtp_sink: Sink) -> None:
    async for run in _run(_gateway(tmp_path, smtp_sink)):
        app = run.server.server.config.app.app  # the FastAPI app inside the connection cap

        class Broken:
            def get(self, _sid: object) -> None:
                raise RuntimeError("injected failure")

        app.state.console_sessions = Broken()
        async with httpx.AsyncClient(base_url=run.base) as c:
            r = await c.get("/login")
            assert r.status_code == 500
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            r = await c.get("/no/such/page")
            assert r.status_code == 404 and "content-security-policy" in r.headers


async def test_connection_cap_answers_503_then_recovers(tmp_path: Path, smtp_sink: Sink) -> None:
    gw = _gateway(tmp_path, smtp_sink, admin={"max_connections": 5, "header_timeout": "60s"})
    async for run in _run(gw):
        idle = [run.connect() for _ in range(6)]
        try:
            await asyncio.sleep(0.3)  # let the server accept them
            async with httpx.AsyncClient(base_url=run.base, timeout=30) as c:
                for path in ("/healthz", "/messages", "/api/v1/messages"):
                    r = await c.get(path)
                    assert r.status_code == 503, path
                    # Our refusal, not uvicorn's bare text: the same headers as every page.
                    assert r.json() == {"detail": "too_many_connections"}
                    assert r.headers["x-content-type-options"] == "nosniff"
                    assert r.headers["retry-after"] == "1"
                    if path == "/messages":  # the console; JSON paths get the short set
                        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        finally:
            for sock in idle:
                sock.close()
        async with httpx.AsyncClient(base_url=run.base, timeout=30) as c:

            async def healthy() -> None:
                r = await c.get("/healthz")
                assert r.status_code == 200, r.status_code

            await eventually_async(healthy, timeout=10)
