"""Issue 13 scenarios: a store that fails mid-run (SQLite on a filesystem that fills up,
PostgreSQL cut off behind a proxy we control), shared by tests/reliability/test_stall.py and
scripts/reliability_report.py. Real gateway, clamd, relay sink and databases; the only thing
injected is the fault itself (a full tmpfs, a TCP proxy that drops every connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway.metrics import OUTCOME_FAILURES
from tests.plugins.clamd import EICAR, free_tcp_port
from tests.reliability.scenarios import (
    RCPTS,
    Row,
    accepted_ids,
    delivered_numbers,
    mail,
    readyz,
    running_gateway,
    send_batch,
    set_scanner,
    start_sink,
    statuses,
    stop_sink,
    tally,
    until,
)

PG_ADMIN_URL = os.environ.get("MUGAI_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` closes the listener and resets every
    open connection (a database that went away), ``restore()`` listens on the same port.
    Runs its own event loop in a thread: the gateway's store calls block theirs."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_tcp_port()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def restore(self) -> None:
        await asyncio.to_thread(self._call, self._restore())

    async def cut(self) -> None:
        await asyncio.to_thread(self._call, self._cut())

    def close(self) -> None:
        self._call(self._cut())
        self._call(self._cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _restore(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


@contextlib.asynccontextmanager
async def pg_behind_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A fresh database on the shared server (never stopped: only our proxy is cut)."""
    name = f"mugai_stall_{secrets.token_hex(4)}"
    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    host_part = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    host, _, port = host_part.partition(":")
    user = PG_ADMIN_URL.split("://", 1)[1].split("@", 1)[0]
    proxy = TcpProxy((host, int(port or 5432)))
    await proxy.restore()
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql://{user}@127.0.0.1:{proxy.port}/{name}", proxy
    finally:
        await asyncio.to_thread(proxy.close)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


@contextlib.asynccontextmanager
async def small_tmpfs(where: Path) -> AsyncIterator[Path | None]:
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    return filler


async def store_outage(work: Path, clamd: str, *, backend: str, count: int = 10) -> Row | None:
    """Mails recorded as deferred (clamd down), then the store fails while clamd is back and
    the relay is still down: the report on the relay failure (retry path) and the virus
    quarantine (quarantine path) cannot be recorded. Then store and relay return.

    backend "sqlite": the database alone on a 16 MiB tmpfs that fills up (needs root; None
    otherwise). backend "postgresql": a database on the shared server reached through a
    proxy that drops every connection and refuses new ones.
    """
    started = time.monotonic()
    tag = f"store-{backend}"
    async with contextlib.AsyncExitStack() as stack:
        proxy: TcpProxy | None = None
        mnt: Path | None = None
        if backend == "sqlite":
            mnt = await stack.enter_async_context(small_tmpfs(work / "dbfs"))
            if mnt is None:
                return None
            url = f"sqlite:///{mnt / 'mugai.db'}"
            what = "SQLite database on a tmpfs filled to the last byte"
        else:
            url, proxy = await stack.enter_async_context(pg_behind_proxy())
            what = "PostgreSQL: every connection reset, new ones refused (proxy cut)"
        row = Row(f"store failing mid-run ({backend})", f"{count} clean + {count} EICAR mails",
                  what)  # fmt: skip
        relay_port = free_tcp_port()
        clamd_down = f"127.0.0.1:{free_tcp_port()}"
        async with running_gateway(
            work,
            f"127.0.0.1:{relay_port}",
            clamd_down,
            storage={"database_url": url},
            clamav={"timeout": "2s"},
            delivery={"retry_schedule": ["1s"], "store_retry": "1s", "workers": 2},
        ) as gw:
            _, port = gw.smtp_address
            items = [(i, mail(tag, i), RCPTS[0]) for i in range(count)] + [
                (i, mail(tag, i, extra="") + EICAR + b"\r\n", RCPTS[0])
                for i in range(count, 2 * count)
            ]
            acked = accepted_ids(await send_batch(port, items))

            def all_deferred() -> bool:
                return all(s == "deferred" for s in statuses(gw.store, acked.values()).values())

            await until(all_deferred, 120, gw)
            failures_before = sum(
                OUTCOME_FAILURES.labels(k)._value.get() for k in ("store", "other")
            )
            # The fault: the store fails; clamd is back, the relay still down.
            if mnt is not None:
                filler = fill(mnt)
            else:
                assert proxy is not None
                await proxy.cut()
            set_scanner(gw, clamd)

            def failures() -> float:
                now = sum(OUTCOME_FAILURES.labels(k)._value.get() for k in ("store", "other"))
                return now - failures_before

            await until(lambda: failures() >= 2 * len(acked), 120, gw)
            code, body = await readyz(gw)
            alive = gw.worker.health.alive
            spool_during = gw.spool.depth()
            # The store returns, then the relay.
            if mnt is not None:
                filler.unlink()
            else:
                assert proxy is not None
                await proxy.restore()
            sink = await start_sink(relay_port)
            try:
                want = set(range(count))

                def settled() -> bool:
                    got = {n for _, n in delivered_numbers(sink, tag)}
                    st = statuses(gw.store, acked.values())
                    return want <= got and all(
                        st[j] == "quarantined" for i, j in acked.items() if i >= count
                    )

                await until(settled, 180, gw)
                code_after, _ = await readyz(gw)
                tally(row, acked, sink, tag, gw.store)
                reasons = sorted(
                    {
                        tuple(r.reasons)
                        for i, j in acked.items()
                        if i >= count and (r := gw.store.get(j)) is not None
                    }  # fmt: skip
                )
                row.workers_alive = alive
                row.readyz_during, row.readyz_after = code, code_after
                checks = body["checks"]
                row.checks_during = {k: checks.get(k) for k in ("store_writes", "database")}
                row.spool_during_fault = spool_during
                row.reasons = reasons
                row.spool_left = gw.spool.depth()
                row.notes += [
                    f"outcomes not recorded, put back through the spool: {failures():.0f}",
                    f"worker slots alive during the fault: {alive}/{gw.worker.health.slots}",
                    f"/readyz during: {code} "
                    f"store_writes={row.checks_during['store_writes']} "
                    f"database={row.checks_during['database']}; after: {code_after}",
                    f"spool held during the fault: {row.spool_during_fault}",
                    f"quarantine reasons: {row.reasons}",
                    f"spool left: {row.spool_left}",
                ]
                row.notes.append(f"readyz problems: {sorted(body.get('problems', {}))}")
            finally:
                stop_sink(sink)
    row.seconds = round(time.monotonic() - started, 1)
    return row


# --- poison mail, fairness, size limit (rows for docs/reliability.md) --------------------------


async def crash_loop(work: Path, clamd: str, *, innocent: int = 6) -> Row:
    """A mail that SIGKILLs `mugai serve` whenever a worker handles it; restarted each time."""
    from tests.e2e.test_restart import write_config
    from tests.reliability.test_poison import PoisonGateway, send_all, wait_exit

    started = time.monotonic()
    tag = "poison"
    row = Row("poison mail (kills the process on every try)",
              f"1 poison + {innocent} other mails", "SIGKILL of `mugai serve` by the mail itself; "
              "restarted after each death")  # fmt: skip
    sink = await start_sink()
    data = work / "data"
    config = work / "gateway.toml"
    write_config(config, data, sink.address, clamd)
    subjects = [f"{tag}-{i}" for i in range(innocent)]
    gw = PoisonGateway(config, work / "log0.txt")
    exits: list[int | None] = []
    try:
        half = innocent // 2
        ids = await asyncio.to_thread(send_all, gw.port, subjects[:half] + ["POISON-PILL"])
        poison_id = ids[-1]
        for n in range(1, 6):
            code = await asyncio.to_thread(wait_exit, gw.proc, data, poison_id)
            exits.append(code)
            if code is None:
                break
            gw.log_fh.close()
            gw = PoisonGateway(config, work / f"log{n}.txt")
            if n == 1:
                ids += await asyncio.to_thread(send_all, gw.port, subjects[half:])
        from gateway.store.repository import Store, database_url

        store = Store(database_url("", data))
        acked = dict(enumerate(ids))
        want = set(range(len(ids))) - {half}

        def innocent_done() -> bool:
            return all(store.status(acked[i]) == "delivered" for i in want)

        await until(innocent_done, 60)
        # tally() matches Message-IDs <tag-N@…>: the test mails use <subject@…>; count here.
        got = [m.data for m in sink.messages]
        delivered = {i for i in want if any(f"Subject: {tag}-{i if i < half else i - 1}".encode()
                                             in d for d in got)}  # fmt: skip
        poison = store.get(poison_id)
        row.accepted = len(ids)
        row.delivered = len(delivered)
        row.quarantined = 1 if poison is not None and poison.status == "quarantined" else 0
        row.lost = len(ids) - row.delivered - row.quarantined
        row.duplicated = max(0, sum(1 for d in got if f"Subject: {tag}-".encode() in d) - innocent)
        row.notes += [
            f"process exits: {exits} (-9 = killed by the poison mail, None = survived)",
            f"poison outcome: {poison.status if poison else None} "
            f"{poison.reasons if poison else []} ({poison.detail if poison else ''})",
            f"poison original kept: {store.blob(poison_id, 'original') is not None}",
            f"poison content delivered: {any(b'POISON-PILL' in d for d in got)}",
        ]
        store.close()
    finally:
        gw.terminate()
        stop_sink(sink)
    row.seconds = round(time.monotonic() - started, 1)
    return row


async def fairness(work: Path, clamd: str, *, count: int = 20, cap: int = 5) -> Row:
    """One client holds all the connections it may (NOOP every second); another sends mail."""
    import smtplib
    import socket

    started = time.monotonic()
    tag = "fair"
    row = Row("one client holds connections", f"{count} mails from a second client",
              f"client A holds {cap} connections (its cap) with NOOPs and asks for {cap} more; "
              f"max_connections={2 * cap}")  # fmt: skip
    sink = await start_sink()
    try:
        async with running_gateway(
            work, sink.address, clamd,
            smtp={"max_connections": 2 * cap, "max_connections_per_client": cap},
        ) as gw:  # fmt: skip
            _, port = gw.smtp_address

            def hold() -> tuple[list[socket.socket], list[bytes]]:
                held = [socket.create_connection(("127.0.0.1", port), timeout=10)
                        for _ in range(cap)]  # fmt: skip
                for s in held:
                    s.recv(1024)
                refused = []
                for _ in range(cap):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                        refused.append(extra.recv(1024))
                return held, refused

            held, refused = await asyncio.to_thread(hold)

            def other(i: int) -> tuple[int, str]:
                with smtplib.SMTP(timeout=30, source_address=("127.0.0.2", 0)) as c:
                    c.connect("127.0.0.1", port)
                    c.ehlo("b.example.com")
                    c.mail("b@example.com")
                    c.rcpt(RCPTS[0])
                    code, reply = c.data(mail(tag, i))
                    return code, reply.decode()

            def noop() -> None:
                for s in held:
                    s.sendall(b"NOOP\r\n")
                    s.recv(1024)

            results = {}
            for i in range(count):
                await asyncio.to_thread(noop)  # client A keeps its sessions busy
                results[i] = await asyncio.to_thread(other, i)
            acked = accepted_ids(results)
            want = set(acked)
            await until(lambda: want <= {n for _, n in delivered_numbers(sink, tag)}, 60, gw)
            tally(row, acked, sink, tag, gw.store)
            for s in held:
                s.close()
            codes = sorted({r[:9].decode(errors="replace") for r in refused})
            row.extra_replies = codes
            row.notes += [
                f"client A's extra connections answered: {codes}",
                f"client B accepted: {len(acked)}/{count}",
            ]
    finally:
        stop_sink(sink)
    row.seconds = round(time.monotonic() - started, 1)
    return row


async def too_large_to_scan(work: Path, small_clamd: str, *, count: int = 5) -> Row:
    """clamd's StreamMaxLength (256K) below what mugai was told: mail just over it."""
    started = time.monotonic()
    tag = "big"
    row = Row("mail over clamd's stream limit", f"{count} mails of 300 kB",
              "clamd StreamMaxLength 256K, lower than declared to mugai")  # fmt: skip
    sink = await start_sink()
    try:
        async with running_gateway(work, sink.address, small_clamd) as gw:
            _, port = gw.smtp_address
            filler = "y" * 998 + "\r\n"
            items = [(i, mail(tag, i, extra="") + (filler * 300).encode(), RCPTS[0])
                     for i in range(count)]  # fmt: skip
            acked = accepted_ids(await send_batch(port, items))

            def settled() -> bool:
                return all(s == "quarantined" for s in statuses(gw.store, acked.values()).values())

            await until(settled, 60, gw)
            tally(row, acked, sink, tag, gw.store)
            rows = [r for j in acked.values() if (r := gw.store.get(j)) is not None]
            row.reasons = sorted({tuple(r.reasons) for r in rows})
            row.attempts = sorted({r.attempts for r in rows})
            row.notes += [f"reasons: {row.reasons}", f"attempts: {row.attempts}"]
    finally:
        stop_sink(sink)
    row.seconds = round(time.monotonic() - started, 1)
    return row
