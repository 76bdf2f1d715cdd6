"""The PPAP form in a REAL headless Chromium: an operator types a wrong password, sees the
tries left, types the right one, and the sanitized contents arrive threaded at the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from gateway.api.server import start_admin
from tests.api.test_console_browser import chromium, sign_in, text_of, wait_for
from tests.api.test_unlock import MEMBERS, PASSWORD, Ppap, deliver_ppap
from tests.checks import check_delivered
from tests.plugins.smtp_sink import Sink
from tests.unlock.ppap import zipcrypto_zip

pytestmark = pytest.mark.timeout(300)


def story(base: str, token: str, mid: str, tmp_path: Path) -> str:
    with chromium(tmp_path, "operator") as driver:
        sign_in(driver, base, token)
        driver.get(f"{base}/messages/{mid}")
        wait_for(driver, lambda d: "パスワード付きファイルの解除" in text_of(d))
        field = driver.find_element(By.ID, "password-1")
        assert field.get_attribute("type") == "password"
        field.send_keys("まちがい")
        driver.find_element(By.ID, "unlock-1").click()
        wait_for(driver, lambda d: "パスワードが違います" in text_of(d))
        assert "残り 2 回" in text_of(driver)
        driver.find_element(By.ID, "password-1").send_keys(PASSWORD)
        driver.find_element(By.ID, "unlock-1").click()
        wait_for(driver, lambda d: "配送しました" in text_of(d))
        return str(driver.page_source)


async def test_unlock_form_in_chromium(
    gateway_factory: Callable[..., Any], smtp_sink: Sink, tmp_path: Path
) -> None:
    gw = await gateway_factory(
        smtp_sink, admin={"listen": "127.0.0.1:0"}, unlock={"max_wrong_passwords": 3}
    )
    token = gw.store.create_token("tanaka", "operator", "test")[0]
    p = Ppap(gw, smtp_sink, None, {"operator": token})  # type: ignore[arg-type]
    mid, _part = await deliver_ppap(p, zipcrypto_zip(MEMBERS, PASSWORD))
    server = await start_admin(gw.settings, gw)
    try:
        html = await asyncio.to_thread(story, f"http://127.0.0.1:{server.port}", token, mid,
                                       tmp_path)  # fmt: skip
    finally:
        await server.stop()
    assert PASSWORD not in html
    assert len(smtp_sink.messages) == 2
    assert check_delivered(smtp_sink.messages[1].data)["In-Reply-To"] == "<ppap-1@ex.jp>"
