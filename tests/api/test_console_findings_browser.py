"""Issue 16's findings in a REAL headless Chromium: the verdict and the QR list laid out with
bidi characters spelled out and in logical order, no CSP violation, and the monthly report
downloaded through the console's form and opened with the csv module."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from gateway.api.server import start_admin
from gateway.relay import SmtpRelay
from gateway.settings import load_settings
from gateway.store.repository import Store
from tests.api.conftest import mini_gateway
from tests.api.test_console_browser import chromium, no_console_errors, poll, sign_in, wait_for
from tests.api.test_console_display_browser import _LEFT_OF
from tests.api.test_console_findings import RLO, seed
from tests.plugins.smtp_sink import Sink


def check(driver: WebDriver, base: str, token: str, mid: str, tmp_path: Path) -> None:
    sign_in(driver, base, token)
    driver.get(f"{base}/messages/{mid}")
    wait_for(driver, lambda d: d.find_elements(By.ID, "auth"))
    driver.save_screenshot(str(tmp_path / "findings-detail.png"))
    auth = driver.find_element(By.ID, "auth").text
    assert "なりすましの疑い" in auth and "当ゲートウェイで評価" in auth
    assert "town.example.lg.jp⟨U+202E⟩moc" in auth and "<i>s1</i>" in auth
    qr = driver.find_element(By.ID, "qr")
    assert "<script>alert(1)</script>⟨U+202E⟩gpj.exe" in qr.text
    assert "hxxp://nested[.]example/" in qr.text
    assert (
        qr.find_elements(By.TAG_NAME, "a") == [] and qr.find_elements(By.TAG_NAME, "script") == []
    )
    # Laid out in logical order: "gpj" left of ".exe" (the raw RLO would put "exe" first).
    cell = qr.find_elements(By.CSS_SELECTOR, "td.qrtext")[-1]
    gpj = driver.execute_script(_LEFT_OF, cell, "gpj")
    exe = driver.execute_script(_LEFT_OF, cell, "exe")
    assert gpj is not None and exe is not None and gpj < exe, (gpj, exe)
    assert RLO not in driver.page_source
    no_console_errors(driver)

    driver.find_element(By.LINK_TEXT, "月次レポート Monthly report").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "report-form"))
    month = driver.find_element(By.ID, "month").get_attribute("value")
    assert month and len(month) == 7
    driver.find_element(By.ID, "download-report").click()
    downloads = tmp_path / "downloads-auditor"
    done = poll(lambda: [p for p in downloads.glob("*.csv")] or None)
    [path] = done
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "区分/section" and rows[1][0] == "period"
    no_console_errors(driver)


async def test_findings_in_chromium(tmp_path: Path, smtp_sink: Sink) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mugai.db'}")
    store.create_schema()
    settings = load_settings(
        None, admin={"listen": "127.0.0.1:0"}, storage={"data_dir": str(tmp_path / "data")}
    )
    gw = mini_gateway(tmp_path, store, SmtpRelay(smtp_sink.address, hostname="t", timeout=10))
    token, _ = store.create_token("kansa", "auditor", "test")
    mid = seed(store)
    server = await start_admin(settings, gw)
    try:
        base = f"http://127.0.0.1:{server.port}"

        def run() -> None:
            with chromium(tmp_path, "auditor") as driver:
                check(driver, base, token, mid, tmp_path)

        await asyncio.to_thread(run)
        audited = store.audit_entries(action="report.monthly")
        assert [e.actor for e in audited] == ["token:kansa"]
    finally:
        await server.stop()
        store.close()
