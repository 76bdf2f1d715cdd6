"""pytest plugin: a whole gateway on port 0 with a real clamd and a real relay sink."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.sanitize.base import Sanitizer
from gateway.sanitize.registry import REGISTRY
from gateway.settings import Settings, load_settings
from tests.plugins.smtp_sink import Sink


def make_settings(tmp: Path, relay: str, clamd: str, **sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "smtp": {"listen": "127.0.0.1:0", "accepted_domains": ["town.example.lg.jp"]},
        "delivery": {"relay": relay, "retry_schedule": ["1s"], "workers": 2},
        "clamav": {"address": clamd, "timeout": "20s"},
        "storage": {"data_dir": str(tmp / "data")},
        "admin": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return load_settings(None, **base)


def send(
    port: int,
    data: bytes,
    rcpt: str | list[str] = "user@town.example.lg.jp",
    mail_from: str = "sender@example.com",
) -> str:
    """Send with the stdlib client; returns the final reply text (e.g. 'queued as …')."""
    rcpts = [rcpt] if isinstance(rcpt, str) else rcpt
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.com")
        client.mail(mail_from)
        for r in rcpts:
            code, msg = client.rcpt(r)
            if code >= 400:
                raise smtplib.SMTPRecipientsRefused({r: (code, msg)})
        code, msg = client.data(data)
        if code != 250:
            raise smtplib.SMTPDataError(code, msg)
        return msg.decode()


@pytest.fixture
async def gateway_factory(tmp_path: Path, clamd_address: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[Gateway] = []

    async def factory(
        sink: Sink | None,
        *,
        registry: Mapping[str, Sanitizer] = REGISTRY,
        **sections: dict[str, Any],
    ) -> Gateway:
        relay = sink.address if sink is not None else ""
        settings = make_settings(tmp_path, relay, clamd_address, **sections)
        gw = Gateway(settings, registry=registry)
        await gw.start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.stop()


async def asend(gw: Gateway, data: bytes, **kw: Any) -> str:
    _, port = gw.smtp_address
    return await asyncio.to_thread(send, port, data, **kw)
