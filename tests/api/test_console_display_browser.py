"""Display safety in a REAL headless Chromium: an RLO in a removed attachment's name and in the
sender's address is shown spelled out (⟨U+202E⟩) and in logical order, checked on the laid-out
page (glyph positions), with screenshots kept as evidence."""

from __future__ import annotations

import asyncio
from pathlib import Path

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from gateway.api.server import start_admin
from gateway.model import Action, MessageReport, PartReport, ScanResult
from gateway.relay import SmtpRelay
from gateway.settings import load_settings
from gateway.store.repository import Store
from tests.api.conftest import mini_gateway
from tests.api.test_console_browser import chromium, sign_in, wait_for
from tests.plugins.smtp_sink import Sink
from tests.store.seed import add_message

RLO = "\u202e"
EVIL_NAME = f"請求書{RLO}fdp.exe"  # reads as 請求書exe.pdf when rendered raw
EVIL_FROM = f"{RLO}<x@example.com>"

# Left edge of the first glyph of `needle` inside the element, as laid out by the browser.
_LEFT_OF = """
const [el, needle] = arguments;
const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const at = node.data.indexOf(needle);
  if (at >= 0) {
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + needle.length);
    return range.getBoundingClientRect().left;
  }
}
return null;
"""


def seed(store: Store) -> str:
    mid = add_message(store, status="seeded-only", mail_from=f"{RLO}moc.elpmaxe@x")
    parts = [
        PartReport("1", "", "text/plain", "text/plain", Action.BODY, (), 100),
        PartReport("2", EVIL_NAME, "application/pdf", "exe", Action.REMOVED, ("executable",), 9000),
    ]
    store.record_report(
        mid,
        MessageReport(
            parts=parts,
            tokens=["DEL_ATTACH"],
            subject=f"請求書の送付 {RLO}fdp.exe",
            message_id="<rlo@example.com>",
            header_from=EVIL_FROM,
            scan=ScanResult(clean=True, signature=""),
            timings={},
        ),
    )
    store.mark_quarantined(mid, "executable", "detail", 1)
    return mid


def check(driver: WebDriver, base: str, token: str, mid: str, shots: Path) -> None:
    sign_in(driver, base, token)
    driver.get(f"{base}/messages/{mid}")
    wait_for(driver, lambda d: d.find_elements(By.ID, "parts"))
    cell = driver.find_element(By.CSS_SELECTOR, "#parts tr.a-removed td.fname")
    driver.save_screenshot(str(shots / "rlo-detail.png"))
    cell.screenshot(str(shots / "rlo-filename.png"))
    text = cell.text
    assert RLO not in driver.page_source
    assert "請求書⟨U+202E⟩fdp.exe" in text and "実際の拡張子 .exe" in text
    # On screen, in logical order: "fdp" left of ".exe" (raw, the RLO puts "exe" first).
    fdp = driver.execute_script(_LEFT_OF, cell, "fdp")
    exe = driver.execute_script(_LEFT_OF, cell, "exe")
    assert fdp is not None and exe is not None and fdp < exe, (fdp, exe)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "⟨U+202E⟩<x@example.com>" in body
    # The list page too (subject and envelope sender).
    driver.get(f"{base}/messages")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages tbody tr"))
    row = driver.find_element(By.CSS_SELECTOR, "#messages tbody tr")
    driver.save_screenshot(str(shots / "rlo-list.png"))
    assert "⟨U+202E⟩fdp.exe" in row.text and "⟨U+202E⟩moc.elpmaxe@x" in row.text
    assert RLO not in driver.page_source


async def test_rlo_is_made_visible_in_chromium(tmp_path: Path, smtp_sink: Sink) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mugai.db'}")
    store.create_schema()
    settings = load_settings(
        None, admin={"listen": "127.0.0.1:0"}, storage={"data_dir": str(tmp_path / "data")}
    )
    gw = mini_gateway(tmp_path, store, SmtpRelay(smtp_sink.address, hostname="t", timeout=10))
    token, _ = store.create_token("kansa", "viewer", "test")
    mid = seed(store)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    server = await start_admin(settings, gw)
    try:
        base = f"http://127.0.0.1:{server.port}"

        def run() -> None:
            with chromium(tmp_path, "viewer") as driver:
                check(driver, base, token, mid, shots)

        await asyncio.to_thread(run)
    finally:
        await server.stop()
        store.close()
    assert (shots / "rlo-filename.png").stat().st_size > 0
    print(f"screenshots in {shots}")
