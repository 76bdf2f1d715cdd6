"""HTTP file gateway against a running gateway (real admin server on port 0, real clamd)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.server import start_admin
from tests.checks import check_clean_file
from tests.ingress.test_watch import js_pdf
from tests.plugins.clamd import EICAR
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def api(gateway_factory: Any, tmp_path: Path) -> Any:
    gw = await gateway_factory(None, files={"max_bytes": 200_000})
    admin = await start_admin(gw.settings, gw)
    operator, _ = gw.store.create_token("tanaka", "operator", "test")
    viewer, _ = gw.store.create_token("sato", "viewer", "test")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin.port}", timeout=60) as c:
        yield gw, c, {"Authorization": f"Bearer {operator}"}, {"Authorization": f"Bearer {viewer}"}
    await admin.stop()


async def wait_done(client: httpx.AsyncClient, fid: str, headers: dict[str, str]) -> Any:
    async def processed() -> Any:
        r = await client.get(f"/api/v1/files/{fid}", headers=headers)
        if r.status_code != 200:  # not a "not yet": fail at once, as before
            raise RuntimeError(f"GET /api/v1/files/{fid}: {r.status_code} {r.text}")
        info = r.json()
        assert info["status"] in ("done", "withheld"), info["status"]
        return info

    return await eventually_async(processed, timeout=90, interval=0.2, what="file processed")


async def test_pdf_with_javascript_comes_back_image_only(api: Any) -> None:
    gw, client, op, viewer = api
    original = js_pdf()
    r = await client.post(
        "/api/v1/files", headers=op, files={"file": ("../../見積\u202e書.pdf", original)}
    )
    assert r.status_code == 202, r.text
    fid = r.json()["id"]
    assert r.json()["status"] == "queued"
    # A viewer may not read uploaded files: the contract says operator.
    assert (await client.get(f"/api/v1/files/{fid}", headers=viewer)).status_code == 403
    assert (await client.get(f"/api/v1/files/{fid}/sanitized", headers=viewer)).status_code == 403
    info = await wait_done(client, fid, op)
    assert info["status"] == "done" and info["outputs"] == ["見積書.pdf"]
    r = await client.get(f"/api/v1/files/{fid}/sanitized", headers=op)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8.pdf" in r.headers["content-disposition"]
    check_clean_file("application/pdf", r.content)
    # The original is kept like mail originals.
    assert gw.store.blob(fid, "original") == original


async def test_archive_comes_back_as_zip_of_rebuilt_files(api: Any) -> None:
    _, client, op, _ = api
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "①メモ".encode("cp932"))
        zf.writestr("b.txt", b"plain")
        zf.writestr("c.exe", b"MZ\x90\x00" + b"\x00" * 100)
    r = await client.post("/api/v1/files", headers=op, files={"file": ("docs.zip", buf.getvalue())})
    fid = r.json()["id"]
    info = await wait_done(client, fid, op)
    assert info["status"] == "done"
    r = await client.get(f"/api/v1/files/{fid}/sanitized", headers=op)
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "b.txt"]
        assert zf.read("a.txt").decode("utf-8") == "①メモ"


async def test_virus_is_withheld_and_not_downloadable(api: Any) -> None:
    _, client, op, _ = api
    r = await client.post("/api/v1/files", headers=op, files={"file": ("eicar.txt", EICAR)})
    fid = r.json()["id"]
    info = await wait_done(client, fid, op)
    assert info["status"] == "withheld" and info["reasons"] == ["virus_found"]
    r = await client.get(f"/api/v1/files/{fid}/sanitized", headers=op)
    assert r.status_code == 409


async def test_bad_uploads(api: Any) -> None:
    _, client, op, viewer = api
    r = await client.post("/api/v1/files", headers=op, files={"file": ("empty.txt", b"")})
    assert r.status_code == 400
    r = await client.post("/api/v1/files", headers=op, files={"file": ("big.txt", b"x" * 300_000)})
    assert r.status_code == 413
    r = await client.post("/api/v1/files", headers=op, files={"other": ("a.txt", b"x")})
    assert r.status_code == 400
    r = await client.post(
        "/api/v1/files", headers={**op, "Content-Type": "multipart/form-data; boundary=zz"},
        content=b"--zz\r\nbroken",
    )  # fmt: skip
    assert r.status_code == 400
    r = await client.post("/api/v1/files", headers=viewer, files={"file": ("a.txt", b"x")})
    assert r.status_code == 403
    r = await client.post("/api/v1/files", files={"file": ("a.txt", b"x")})
    assert r.status_code == 401
    r = await client.get("/api/v1/files/0000000000000000000000", headers=op)
    assert r.status_code == 404
    r = await client.get("/api/v1/files/..%2F..%2Fetc", headers=op)
    assert r.status_code in (404, 422)


async def test_long_japanese_and_nul_names_are_cleaned(api: Any) -> None:
    _, client, op, _ = api
    name = "あ" * 300 + "\x00.txt"
    r = await client.post("/api/v1/files", headers=op, files={"file": (name, b"hello")})
    assert r.status_code == 202
    info = await wait_done(client, r.json()["id"], op)
    [out] = info["outputs"]
    assert "\x00" not in out and out.endswith(".txt") and len(out) <= 160
