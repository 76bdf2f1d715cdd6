"""Issue 13 (7): loop detection that cannot be forged. A real loop (the gateway relaying to
itself) ends in quarantine as mail_loop with no notice storm; copied or invented Received
lines of ours never get a stranger's mail quarantined."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.loopmark import KEY_FILE, load_key, our_hops, token
from tests.plugins.clamd import free_tcp_port
from tests.plugins.gateway import asend, make_settings
from tests.plugins.smtp_sink import Sink
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(180)
HOST = "mugai.example.lg.jp"


def line(mugai_id: str, mac: str) -> str:
    return f"from x ([192.0.2.1]) by {HOST} (mugai) with ESMTP id {mugai_id} (loop {mac}); d"


def test_only_valid_distinct_tokens_count() -> None:
    key = b"k" * 32
    ids = ["0190aa00000000000000a1", "0190aa00000000000000a2", "0190aa00000000000000a3"]
    good = [line(i, token(key, HOST, i)) for i in ids]
    assert our_hops(good, key, HOST) == 3
    assert our_hops([good[0]] * 3, key, HOST) == 1  # one leaked line replayed
    assert our_hops([line(i, "0" * 24) for i in ids], key, HOST) == 0
    assert our_hops(good, b"x" * 32, HOST) == 0  # another instance's lines
    untokened = f"from x ([192.0.2.1]) by {HOST} (mugai) with ESMTP id 1; d"
    assert our_hops([untokened] * 5, key, HOST) == 0
    assert our_hops([g.replace(HOST, "evil.example") for g in good], key, HOST) == 0


def test_tokens_are_bound_to_the_message_id() -> None:
    """Valid lines harvested from one of our delivered mails (a bounce, a forward) never make
    another message look looped."""
    key = b"k" * 32
    ids = ["0190aa00000000000000b1", "0190aa00000000000000b2", "0190aa00000000000000b3"]
    harvested = [line(i, token(key, HOST, i, "<invoice-1@vendor.example>")) for i in ids]
    assert our_hops(harvested, key, HOST, "<invoice-1@vendor.example>") == 3
    # Folding and case on the way do not change the id.
    assert our_hops(harvested, key, HOST, " <INVOICE-1@vendor.example> ") == 3
    assert our_hops(harvested, key, HOST, "<tax-notice@city.example>") == 0
    assert our_hops(harvested, key, HOST, "") == 0


def test_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "", "127.0.0.1:1")
    first = load_key(settings)
    path = settings.storage.data_dir / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= 32
    assert load_key(settings) == first  # survives restarts
    configured = make_settings(tmp_path, "", "127.0.0.1:1", smtp={"loop_key": "s" * 40})
    assert load_key(configured) == b"s" * 40
    path.write_text("short\n")
    with pytest.raises(ValueError, match="too short"):
        load_key(settings)


async def test_forged_hops_are_delivered(gateway_factory: Any, smtp_sink: Sink) -> None:
    gw = await gateway_factory(smtp_sink)
    plain = f"Received: from x ([192.0.2.1]) by {HOST} (mugai) with ESMTP id 1; date\r\n"
    fake = f"Received: {line('0190aa00000000000000a1', 'f' * 24)}\r\n"
    raw = (plain * 3 + fake * 3 + "From: a@example.com\r\nSubject: forged\r\n\r\nhi\r\n").encode()
    mid = (await asend(gw, raw)).rsplit(" ", 1)[1]
    got = await smtp_sink.wait_for(1)
    # The relay's 250 comes before the record.
    await eventually_async(lambda: gw.store.status(mid) == "delivered", timeout=30)
    # Our own line on the delivered copy carries a valid token.
    header = got[0].data.split(b"\r\n\r\n", 1)[0].decode()
    assert f"(loop {token(gw.pipeline.loop_key, HOST, mid)})" in header


async def test_real_loop_ends_in_quarantine_without_a_notice_storm(
    tmp_path: Path, clamd_address: str
) -> None:
    port = free_tcp_port()
    # Misconfigured: the relay is this gateway itself.
    settings = make_settings(
        tmp_path, f"127.0.0.1:{port}", clamd_address, smtp={"listen": f"127.0.0.1:{port}"}
    )
    gw = Gateway(settings)
    await gw.start()
    try:
        raw = b"From: a@example.com\r\nSubject: round and round\r\n\r\nhi\r\n"
        await asend(gw, raw)
        with contextlib.suppress(AssertionError):  # the counts below say what happened
            await eventually_async(
                lambda: gw.store.counts_by_status().get("quarantined", 0) >= 2,
                timeout=60,
                interval=0.2,
            )
        await asyncio.sleep(3)  # anything that would keep looping shows up meanwhile
        counts = gw.store.counts_by_status()
        reasons = gw.store.reason_counts()
        # The mail passed 3 times and was quarantined; its withheld notice (null sender) went
        # round the same loop 3 times and was quarantined without a notice of its own.
        assert counts.get("quarantined") == 2, counts
        assert reasons.get(("quarantined", "mail_loop")) == 2, reasons
        assert counts.get("delivered") == 6, counts
        assert set(counts) == {"quarantined", "delivered"}, counts
        assert gw.spool.depth() == 0
    finally:
        await gw.stop()
