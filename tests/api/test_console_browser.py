"""The console's "Done when" story in a REAL headless Chromium (Debian chromium + chromedriver).

The app runs on a real uvicorn (port 0) on the test's event loop, the relay is a real SMTP sink;
the browser (blocking Selenium) drives it from a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway.api.server import start_admin
from gateway.model import ScanResult
from gateway.relay import SmtpRelay
from gateway.settings import load_settings
from gateway.store.repository import Store
from tests.api.conftest import mini_gateway
from tests.api.test_console import MID, ORIGINAL, SANITIZED_TEXT, seed_quote
from tests.plugins.smtp_sink import Sink
from tests.store.seed import add_message
from tests.waiting import eventually

CHROMIUM = os.environ.get("MUGAI_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MUGAI_CHROMEDRIVER", "/usr/bin/chromedriver")
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1366,1000",
    "--lang=ja",
)
WAIT = 30.0  # generous upper bound for page loads on a busy CI machine, not a performance check


@contextmanager
def chromium(tmp_path: Path, name: str) -> Iterator[WebDriver]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(
            f"Chromium not found ({CHROMIUM}, {CHROMEDRIVER}): install the Debian packages "
            "`chromium` and `chromium-driver` (CI does), or set MUGAI_CHROMIUM/MUGAI_CHROMEDRIVER",
            pytrace=False,
        )
    downloads = tmp_path / f"downloads-{name}"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ARGS:
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tmp_path / f'profile-{name}'}")
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, check: Callable[[WebDriver], Any]) -> Any:
    # The page may be replaced between finding an element and reading it (navigation).
    return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        check
    )


def text_of(driver: WebDriver) -> str:
    # A form post replaces the document: the body found a moment ago may be gone when its
    # text is read. Chromium then says either "stale element" or, from the inspector, "Node
    # with given id does not belong to the document" (a plain WebDriverException); both mean
    # "read the new page", so read again within the wait budget.
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return str(driver.find_element(By.TAG_NAME, "body").text)
        except WebDriverException as exc:
            stale = isinstance(exc, StaleElementReferenceException) or (
                "does not belong to the document" in str(exc.msg)
            )
            if not stale or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def sign_in(driver: WebDriver, base: str, token: str) -> None:
    driver.get(base + "/")
    wait_for(driver, lambda d: d.current_url.endswith("/login"))
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    wait_for(driver, lambda d: d.current_url.endswith("/messages"))


def no_console_errors(driver: WebDriver) -> None:
    """No CSP violation, no failed stylesheet: the page works without inline anything."""
    entries = driver.get_log("browser")  # type: ignore[no-untyped-call]
    severe = [e for e in entries if e.get("level") == "SEVERE"]
    assert severe == [], severe


def poll(check: Callable[[], Any]) -> Any:
    # A falsy result, None included, is "not yet" here (callers return ``... or None``).
    return eventually(lambda: check() or False, timeout=WAIT)


def story(
    base: str,
    tokens: dict[str, str],
    mid: str,
    store: Store,
    sink: Sink,
    tmp_path: Path,
    infected: str,
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    # 1. The operator signs in, finds the message by Message-ID, opens it.
    with chromium(tmp_path, "operator") as op:
        sign_in(op, base, tokens["operator"])
        cookie = op.get_cookie("mugai_session")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert tokens["operator"] not in cookie["value"]
        assert op.execute_script("return document.cookie") == ""  # HttpOnly: script can't see it
        op.find_element(By.ID, "message_id").send_keys(MID)
        op.find_element(By.ID, "search").click()
        wait_for(op, lambda d: "message_id=" in d.current_url)
        rows = op.find_elements(By.CSS_SELECTOR, "#messages tbody tr")
        assert len(rows) == 1 and "見積書" in rows[0].text
        op.save_screenshot(str(shots / "list.png"))
        no_console_errors(op)
        rows[0].find_element(By.CSS_SELECTOR, "td.subject a").click()
        wait_for(op, lambda d: d.current_url.endswith(f"/messages/{mid}"))
        parts = op.find_element(By.ID, "parts")
        assert parts.is_displayed()
        table = parts.text
        assert "見積書.docm" in table and "macros_removed" in table and "setup.exe" in table
        preview = op.find_element(By.ID, "preview").text
        assert "見積書を送付いたします" in preview
        assert "<script>this is plain text</script>" in preview  # as text, escaped
        source = op.page_source
        assert "original-xss" not in source and "tracker.evil.example" not in source
        assert op.execute_script("return document.scripts.length") == 0
        op.save_screenshot(str(shots / "detail.png"))
        op.set_window_size(1366, 2400)  # a full-height view of the detail page as well
        op.save_screenshot(str(shots / "detail-full.png"))
        op.set_window_size(1366, 1000)
        no_console_errors(op)

        # 2. Download the original: the file is the original, and the read is audited.
        op.find_element(By.ID, "download").click()
        downloads = tmp_path / "downloads-operator"
        saved = poll(
            lambda: [p for p in downloads.glob("*.eml") if not p.name.endswith(".crdownload")]
        )
        poll(lambda: saved[0].stat().st_size == len(ORIGINAL))
        assert saved[0].read_bytes() == ORIGINAL
        reads = store.audit_entries(action="original.read", target=mid)
        assert [e.actor for e in reads] == ["token:operator"]

        # 3. Request release: an exception (例外措置), said in a confirmation dialog; the
        # category, the reason and the acknowledgement are mandatory (the browser refuses).
        dialog = op.find_element(By.ID, "request-confirm")
        assert not dialog.is_displayed()
        op.find_element(By.ID, "request").click()
        wait_for(op, lambda d: dialog.is_displayed())
        assert "例外措置" in dialog.text and "無害化していない原本" in dialog.text
        op.save_screenshot(str(shots / "request-confirm.png"))
        op.find_element(By.ID, "request-confirm-submit").click()
        assert store.release_requests() == []
        op.find_element(By.ID, "reason").send_keys("取引先からの正式な見積書のため")
        op.find_element(By.CSS_SELECTOR, "#category option[value=business_required]").click()
        op.find_element(By.ID, "request").click()
        op.find_element(By.ID, "request-confirm-submit").click()
        assert store.release_requests() == []  # the acknowledgement is not ticked yet
        op.find_element(By.ID, "exception_ack").click()
        op.find_element(By.ID, "request").click()
        op.find_element(By.ID, "request-confirm-submit").click()
        wait_for(op, lambda d: "解放を申請しました" in text_of(d))
        (req,) = store.release_requests()
        assert req.requested_by == "operator" and req.status == "pending"
        assert req.exception and req.category == "business_required"
        assert "例外措置" in op.find_element(By.ID, "requests").text
        # A second request for the same message: no form while one is open.
        assert op.find_elements(By.ID, "request-form") == []

        # A foreign page posting our form, even with a leaked CSRF token, gets nowhere: the
        # SameSite=Strict cookie is not sent, so there is no session to act in.
        leaked = op.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
        evil = (
            f'<form method="post" action="{base}/messages/{mid}/release-requests">'
            f'<input name="csrf" value="{leaked}"><input name="reason" value="evil">'
            '<button id="go">win</button></form>'
        )
        op.get("data:text/html;charset=utf-8," + quote(evil))
        op.find_element(By.ID, "go").click()
        wait_for(op, lambda d: d.current_url.startswith(base))
        assert [r.reason for r in store.release_requests()] == ["取引先からの正式な見積書のため"]
        op.get(f"{base}/messages/{mid}")  # still signed in: the attack did not end the session
        wait_for(op, lambda d: "解放申請" in text_of(d) and d.current_url.endswith(mid))

        # 4. The requester alone cannot approve: no button, and a hand-made POST is refused.
        assert op.find_elements(By.CSS_SELECTOR, "button.approve") == []
        op.execute_script(
            "const f = document.createElement('form'); f.method = 'post';"
            "f.action = arguments[0]; const i = document.createElement('input');"
            "i.name = 'csrf'; i.value = document.querySelector('input[name=csrf]').value;"
            "f.appendChild(i); document.body.appendChild(f); f.submit();",
            f"/release-requests/{req.id}/approve",
        )
        wait_for(op, lambda d: "権限がありません" in text_of(d))
        assert store.release_request(req.id).status == "pending"  # type: ignore[union-attr]
        assert sink.messages == []
        op.save_screenshot(str(shots / "forbidden.png"))

        # 4b. An infected original: refused by policy, said in Japanese, no form; labels shown.
        op.get_log("browser")  # type: ignore[no-untyped-call]  # drop the expected 403 above
        op.get(f"{base}/messages/{infected}")
        refused = wait_for(op, lambda d: d.find_element(By.ID, "infected-refused"))
        assert "解放できません" in refused.text and "Eicar" in refused.text
        assert op.find_elements(By.ID, "request-form") == []
        assert "ウイルスを検知" in op.find_element(By.ID, "facts").text
        no_console_errors(op)

    # 5. A second person, an approver, approves in another browser session.
    with chromium(tmp_path, "approver") as ap:
        sign_in(ap, base, tokens["approver"])
        ap.find_element(By.LINK_TEXT, "解放申請 Releases").click()
        wait_for(ap, lambda d: d.current_url.endswith("/releases"))
        assert req.id in text_of(ap)
        ap.find_element(By.LINK_TEXT, mid).click()
        wait_for(ap, lambda d: d.current_url.endswith(f"/messages/{mid}"))
        ap.find_element(By.CSS_SELECTOR, f"#req-{req.id} form.decide input[name=reason]").send_keys(
            "内容を確認しました"
        )
        ap.find_element(By.CSS_SELECTOR, f"#req-{req.id} button.approve").click()
        confirm = ap.find_element(By.ID, f"approve-confirm-{req.id}")
        wait_for(ap, lambda d: confirm.is_displayed())
        assert "これは例外措置です" in confirm.text
        ap.find_element(By.CSS_SELECTOR, f"#req-{req.id} button.approve-confirm").click()
        assert sink.messages == []  # the exception is not acknowledged: the browser refuses
        ap.find_element(By.CSS_SELECTOR, f"#req-{req.id} input[name=exception_ack]").click()
        ap.find_element(By.CSS_SELECTOR, f"#req-{req.id} button.approve").click()
        ap.find_element(By.CSS_SELECTOR, f"#req-{req.id} button.approve-confirm").click()
        wait_for(ap, lambda d: "承認しました" in text_of(d))
        assert "解放済み" in ap.find_element(By.ID, "facts").text
        no_console_errors(ap)
    (got,) = poll(lambda: list(sink.messages))
    assert got.rcpt_tos == ["keiyaku@town.example.lg.jp"]
    assert got.data == b"X-Mugai-Released-By: approver\r\n" + ORIGINAL

    # 6. The auditor reads the log and can do nothing else.
    with chromium(tmp_path, "auditor") as au:
        sign_in(au, base, tokens["auditor"])
        au.find_element(By.LINK_TEXT, "監査ログ Audit log").click()
        wait_for(au, lambda d: d.current_url.endswith("/audit"))
        log = au.find_element(By.ID, "audit").text
        for action in ("original.read", "release.request", "release.approve", "release.delivered"):
            assert action in log
        au.save_screenshot(str(shots / "audit.png"))
        au.get(f"{base}/messages/{mid}")
        assert au.find_elements(By.CSS_SELECTOR, "main form") == []
        assert au.find_elements(By.CSS_SELECTOR, "main button") == []
        assert SANITIZED_TEXT.splitlines()[1] in au.find_element(By.ID, "preview").text
        no_console_errors(au)


async def test_console_story_in_chromium(
    tmp_path: Path, smtp_sink: Sink, clamd_address: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mugai.db'}")
    store.create_schema()
    settings = load_settings(
        None, admin={"listen": "127.0.0.1:0"}, storage={"data_dir": str(tmp_path / "data")}
    )
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=10)
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd_address)
    tokens = {r: store.create_token(r, r, "test")[0] for r in ("operator", "approver", "auditor")}
    mid = seed_quote(store)
    infected = add_message(store, status="quarantined", reason="virus_found")
    store.mark_quarantined(infected, "virus_found", "Eicar", 1, ScanResult(False, "Eicar-Sig"))
    server = await start_admin(settings, gw)
    try:
        base = f"http://127.0.0.1:{server.port}"
        await asyncio.to_thread(story, base, tokens, mid, store, smtp_sink, tmp_path, infected)
        assert store.verify_audit().ok
    finally:
        await server.stop()
        store.close()
    print(f"screenshots in {tmp_path / 'screenshots'}")
