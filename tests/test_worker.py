"""Direct tests of gateway.worker: real spool, SQLite store, clamd and relay sink; the only
fakes inject failures (a store that raises, a spool whose claim blows up)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from gateway.metrics import CRASH_LOOPS, OUTCOME_FAILURES, WORKER_RESTARTS
from gateway.model import CleanFile
from gateway.pipeline import Pipeline
from gateway.relay import SmtpRelay
from gateway.scan.clamd import ClamdScanner
from gateway.settings import Settings
from gateway.spool import RECOVERIES, Job, JobMeta, Spool, new_id
from gateway.store.repository import Store, database_url
from gateway.worker import Health, Worker, bundle_files, readiness
from tests.plugins.clamd import EICAR
from tests.plugins.gateway import make_settings
from tests.plugins.smtp_sink import Sink
from tests.waiting import eventually_async

RCPT = "user@town.example.lg.jp"


def mail(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return (
        f"From: a@example.com\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\n"
    ).encode() + body


class FlakyStore:
    """The real store, with chosen methods raising the error SQLAlchemy raises for a locked
    or read-only SQLite database while ``failing`` is set (failure injection only)."""

    def __init__(self, store: Store, methods: set[str]) -> None:
        self._store = store
        self.methods = methods
        self.failing = True
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name not in self.methods:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.failing:
                self.raised += 1
                orig = sqlite3.OperationalError("attempt to write a readonly database")
                raise OperationalError("UPDATE messages SET raw=?", {"raw": b"secret"}, orig)
            return target(*args, **kwargs)

        return call


@dataclass
class Rig:
    settings: Settings
    spool: Spool
    store: Store
    worker: Worker
    sink: Sink

    def put(self, data: bytes, **extra: Any) -> JobMeta:
        meta = JobMeta(
            id=new_id(), kind="mail", mail_from="s@example.com", rcpt_tos=(RCPT,), extra=extra
        )
        return self.spool.put(meta, data)

    def claim(self) -> Job:
        job = self.spool.claim(now=time.time() + 10_000)
        assert job is not None
        return job


@pytest.fixture
async def rig_factory(
    tmp_path: Path, clamd_address: str, smtp_sink: Sink
) -> AsyncIterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(relay: str | None = None, **delivery: Any) -> Rig:
        settings = make_settings(
            tmp_path,
            relay if relay is not None else smtp_sink.address,
            clamd_address,
            delivery={"store_retry": "1s", **delivery},
        )
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
        spool = Spool(settings.spool_dir)
        store = Store(database_url("", settings.storage.data_dir))
        store.create_schema()
        pipeline = Pipeline(settings, ClamdScanner(clamd_address, timeout=20))
        relay_client = SmtpRelay(settings.delivery.relay, hostname="mugai.test", timeout=5)
        worker = Worker(settings, spool, store, pipeline, relay_client, asyncio.Event())
        rig = Rig(settings, spool, store, worker, smtp_sink)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.worker.pipeline.close()
        await rig.worker.relay.close()
        rig.store.close()


async def test_clean_mail_is_delivered_and_recorded(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    meta = rig.put(mail("plain"))
    await rig.worker.handle(rig.claim())
    await rig.sink.wait_for(1)
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered"
    assert rig.spool.depth() == 0 and rig.worker.health.store_error == ""


async def test_quarantine_not_recorded_goes_back_to_the_spool(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory()
    flaky = FlakyStore(rig.store, {"mark_quarantined"})
    rig.worker.store = flaky  # type: ignore[assignment]
    meta = rig.put(mail("virus", EICAR + b"\r\n"))
    before = OUTCOME_FAILURES.labels("store")._value.get()
    await rig.worker.handle(rig.claim())  # must not raise
    assert flaky.raised == 1
    assert OUTCOME_FAILURES.labels("store")._value.get() == before + 1
    # Back in deferred/, unchanged, due after store_retry; not quarantined as internal_error.
    assert [p.name.endswith(f"_{meta.id}.job") for p in rig.spool.deferred.iterdir()] == [True]
    assert list(rig.spool.active.iterdir()) == []
    problems = readiness(rig.worker.health, 1, 900)
    assert "readonly database" in problems["store_writes"]
    assert "secret" not in problems["store_writes"]  # SQL parameters never reach readyz/logs
    row = rig.store.get(meta.id)
    assert row is not None and row.status != "quarantined"
    flaky.failing = False  # the store is back
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "quarantined" and row.reasons == ["virus_found"]
    assert rig.worker.health.store_error == "" and rig.spool.depth() == 0
    assert rig.sink.messages == [] or all(
        EICAR not in m.data for m in rig.sink.messages
    )  # never delivered


async def test_retry_not_recorded_goes_back_and_is_delivered_later(
    rig_factory: Callable[..., Rig], smtp_sink: Sink
) -> None:
    rig = rig_factory(relay="127.0.0.1:1")  # relay down ⇒ the retry path
    flaky = FlakyStore(rig.store, {"mark_deferred"})
    rig.worker.store = flaky  # type: ignore[assignment]
    meta = rig.put(mail("later"))
    await rig.worker.handle(rig.claim())
    assert flaky.raised == 1 and rig.spool.depth() == 1
    assert "store_writes" in readiness(rig.worker.health, 1, 900)
    # Store and relay back: delivered exactly once.
    flaky.failing = False
    rig.worker.relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=5)
    await rig.worker.handle(rig.claim())
    await smtp_sink.wait_for(1)
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered"
    assert len(smtp_sink.messages) == 1 and rig.spool.depth() == 0


async def test_store_down_at_intake_is_no_internal_error(rig_factory: Callable[..., Rig]) -> None:
    """record_received failing must not become the catch-all's quarantine."""
    rig = rig_factory()
    flaky = FlakyStore(rig.store, {"record_received", "mark_quarantined"})
    rig.worker.store = flaky  # type: ignore[assignment]
    meta = rig.put(mail("intake"))
    await rig.worker.handle(rig.claim())
    assert flaky.raised == 1  # no quarantine was even tried
    assert rig.store.get(meta.id) is None and rig.spool.depth() == 1
    flaky.failing = False
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered"


async def test_internal_error_with_store_down_keeps_the_job(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory()
    flaky = FlakyStore(rig.store, {"mark_quarantined"})
    rig.worker.store = flaky  # type: ignore[assignment]

    async def broken(*_: Any) -> Any:
        raise ZeroDivisionError  # a bug in the pipeline

    rig.worker.pipeline.process = broken  # type: ignore[method-assign]
    meta = rig.put(mail("bug"))
    await rig.worker.handle(rig.claim())
    assert rig.spool.depth() == 1
    flaky.failing = False
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "quarantined" and row.reasons == ["internal_error"]


async def test_spool_failing_too_leaves_the_job_for_recovery(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory()
    rig.worker.store = FlakyStore(rig.store, {"record_received"})  # type: ignore[assignment]
    rig.put(mail("stuck"))
    job = rig.claim()

    def no_rename(*_: Any) -> None:
        raise OSError(30, "Read-only file system")

    rig.spool.postpone = no_rename  # type: ignore[method-assign]
    await rig.worker.handle(job)  # must not raise either
    assert job.path.exists()  # still in active/: the next start's recover() requeues it
    assert "Read-only" in readiness(rig.worker.health, 0, 900)["spool_writes"]


async def test_crash_loop_job_never_reaches_the_pipeline(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    called: list[str] = []

    async def must_not_run(meta: JobMeta, raw: bytes) -> Any:
        called.append(meta.id)
        raise AssertionError("pipeline called for a crash-loop job")

    rig.worker.pipeline.process = must_not_run  # type: ignore[method-assign]
    before = CRASH_LOOPS._value.get()
    meta = rig.put(mail("poison"), **{RECOVERIES: 3})
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "quarantined" and row.reasons == ["crash_loop"]
    assert called == [] and CRASH_LOOPS._value.get() == before + 1
    assert rig.store.blob(meta.id, "original") == mail("poison")  # the original is kept


async def test_two_recoveries_still_get_processed(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(max_recoveries=3)
    meta = rig.put(mail("survivor"), **{RECOVERIES: 2})
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered"


async def test_dead_slot_is_restarted_with_backoff(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.worker.restart_backoff = 0.05
    real_claim = rig.spool.claim
    deaths = [0]

    def claim(now: float | None = None) -> Job | None:
        if deaths[0] < 3:
            deaths[0] += 1
            raise RuntimeError("bug outside the job guard")
        return real_claim(now)

    rig.spool.claim = claim  # type: ignore[method-assign]
    meta = rig.put(mail("after-restarts"))
    before = WORKER_RESTARTS._value.get()
    task = asyncio.create_task(rig.worker.run(1))
    try:
        await rig.sink.wait_for(1, timeout=60)
        assert WORKER_RESTARTS._value.get() == before + 3
        assert rig.worker.health.restarts == 3 and rig.worker.health.alive == 1

        def delivered() -> None:
            row = rig.store.get(meta.id)
            assert row is not None and row.status == "delivered", row

        await eventually_async(delivered, timeout=5, interval=0.05)
    finally:
        rig.worker.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_shutdown_releases_the_job_uncounted(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    started = asyncio.Event()

    async def slow(meta: JobMeta, raw: bytes) -> Any:
        started.set()
        await asyncio.sleep(3600)

    rig.worker.pipeline.process = slow  # type: ignore[method-assign]
    meta = rig.put(mail("slow"))
    task = asyncio.create_task(rig.worker.handle(rig.claim()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.spool.locate(meta.id) == "queued"
    assert rig.spool.recover() == 0  # nothing was left in active/ to count as a crash
    job = rig.claim()
    assert RECOVERIES not in job.meta.extra


def test_readiness_names_each_problem() -> None:
    health = Health(slots=4, alive=4)
    assert readiness(health, 10, 900) == {}
    health.alive = 3
    assert readiness(health, 0, 900) == {"workers": "1 of 4 worker slots dead"}
    health.alive = 4
    health.last_progress = time.monotonic() - 1000
    assert "progress" in readiness(health, 5, 900)
    assert readiness(health, 0, 900) == {}  # nothing waiting is not a stall


def test_bundle_files_passes_one_file_as_is_and_zips_several_with_unique_names() -> None:
    pdf = CleanFile("見積.pdf", "application/pdf", b"%PDF-1.7\n")
    assert bundle_files((pdf,)) == pdf.data
    same = CleanFile("見積.pdf", "application/pdf", b"%PDF-1.7\nsecond")
    bare = CleanFile("README", "text/plain", b"a")
    files = (pdf, same, CleanFile("見積.pdf", "application/pdf", b"3"), bare, bare)
    with zipfile.ZipFile(io.BytesIO(bundle_files(files))) as zf:
        assert zf.namelist() == ["見積.pdf", "見積-2.pdf", "見積-3.pdf", "README", "README-2"]
        assert zf.read("見積-2.pdf") == same.data and zf.read("README-2") == b"a"
        # Japanese names are marked UTF-8 (else unzip tools guess CP437 or CP932).
        assert all(i.flag_bits & 0x800 for i in zf.infolist() if not i.filename.isascii())


@pytest.mark.parametrize("null", ["", "<>"])
async def test_bounce_with_null_sender_is_delivered(
    rig_factory: Callable[..., Rig], null: str
) -> None:
    """A DSN from the Internet (MAIL FROM:<>) is delivered, not an internal_error (the relay
    client refused "<>" as a mailbox; each such quarantine then sent a notice)."""
    rig = rig_factory()
    meta = JobMeta(id=new_id(), kind="mail", mail_from=null, rcpt_tos=(RCPT,))
    rig.spool.put(meta, mail("bounce"))
    await rig.worker.handle(rig.claim())
    got = await rig.sink.wait_for(1)
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered", row.reasons if row else None
    assert got[0].mail_from in ("", "<>")


async def test_readyz_reports_dead_workers(gateway_factory: Any) -> None:
    from tests.reliability.scenarios import readyz

    gw = await gateway_factory(None, delivery={"workers": 2})
    code, body = await readyz(gw)
    assert code == 200 and body["checks"]["workers"] is True, body
    gw.worker.restart_backoff = 3600.0  # a slot that dies stays dead for the test

    def broken(now: float | None = None) -> Job | None:
        raise RuntimeError("bug outside the job guard")

    gw.spool.claim = broken  # type: ignore[method-assign]
    gw.wakeup.set()
    with contextlib.suppress(AssertionError):  # readyz below says how many are alive
        await eventually_async(lambda: gw.worker.health.alive == 0, timeout=5, interval=0.05)
    code, body = await readyz(gw)
    assert code == 503 and body["checks"]["workers"] is False, body
    assert body["problems"]["workers"] == "2 of 2 worker slots dead"


async def test_readyz_reports_stalled_workers(gateway_factory: Any) -> None:
    from tests.plugins.gateway import asend
    from tests.reliability.scenarios import readyz

    gw = await gateway_factory(None, delivery={"workers": 1, "stall_after": "1s"})
    release = asyncio.Event()

    async def stuck(meta: JobMeta, raw: bytes) -> Any:
        await release.wait()  # e.g. a converter call that never returns
        raise AssertionError("released")

    gw.pipeline.process = stuck  # type: ignore[assignment]
    await asend(gw, mail("first"))
    await asend(gw, mail("second"))  # waits behind the stuck one

    async def stalled() -> tuple[int, Any]:
        code, body = await readyz(gw)
        assert not body["checks"]["progress"], body
        return code, body

    code, body = await eventually_async(stalled, timeout=10)
    assert code == 503 and "1 jobs waiting" in body["problems"]["progress"], body
    assert body["checks"]["workers"] is True  # alive, but not moving
    release.set()


async def test_recovered_job_runs_alone(rig_factory: Callable[..., Rig]) -> None:
    """A crash suspect never runs beside another job: a further crash is charged to it only."""
    rig = rig_factory()
    running: set[str] = set()
    overlaps: list[tuple[str, ...]] = []
    real = rig.worker.pipeline.process

    async def watched(meta: JobMeta, raw: bytes) -> Any:
        running.add(meta.id)
        if len(running) > 1 and any(i in suspects for i in running):
            overlaps.append(tuple(sorted(running)))
        try:
            await asyncio.sleep(0.2)
            return await real(meta, raw)
        finally:
            running.discard(meta.id)

    rig.worker.pipeline.process = watched  # type: ignore[method-assign]
    normal = [rig.put(mail(f"n{i}")).id for i in range(3)]
    suspects = {rig.put(mail("suspect"), **{RECOVERIES: 1}).id}
    normal += [rig.put(mail(f"m{i}")).id for i in range(3)]
    task = asyncio.create_task(rig.worker.run(3))
    try:
        await rig.sink.wait_for(7, timeout=60)
    finally:
        rig.worker.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert overlaps == []
    for jid in [*normal, *suspects]:
        row = rig.store.get(jid)
        assert row is not None and row.status in ("delivered", "processing")


def test_spool_metrics_per_state(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from gateway.api.metrics import _spool_states

    spool = Spool(tmp_path / "spool")
    old = JobMeta(id=f"{int((time.time() - 120) * 1000):012x}0000000001", kind="mail")
    spool.put(old, b"x")
    spool.put(JobMeta(id=new_id(), kind="mail"), b"y")
    job = spool.claim()
    assert job is not None and job.id == old.id
    spool.defer(job, time.time() + 600)
    spool.put(JobMeta(id=new_id(), kind="mail"), b"z")
    assert spool.claim() is not None  # one active
    families = {m.name: m for m in _spool_states(SimpleNamespace(spool=spool))}  # type: ignore[arg-type]
    jobs = {s.labels["state"]: s.value for s in families["mugai_spool_jobs"].samples}
    ages = {
        s.labels["state"]: s.value for s in families["mugai_spool_oldest_job_age_seconds"].samples
    }
    assert jobs == {"queue": 1, "active": 1, "deferred": 1}
    assert 100 < ages["deferred"] < 1000 and ages["queue"] < 60


async def test_spool_failure_after_delivery_keeps_the_delivered_record(
    rig_factory: Callable[..., Rig],
) -> None:
    """spool.done failing (read-only disk) after mark_delivered must not become an
    internal_error quarantine that overwrites the delivered record."""
    rig = rig_factory()
    meta = rig.put(mail("done-fails"))
    real_done = rig.spool.done
    rig.spool.done = lambda job: (_ for _ in ()).throw(OSError(30, "Read-only file system"))  # type: ignore[method-assign]
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered"
    assert "Read-only" in readiness(rig.worker.health, 0, 900)["spool_writes"]
    rig.spool.done = real_done  # type: ignore[method-assign]
    await rig.worker.handle(rig.claim())  # recognised as delivered: not sent again
    assert rig.spool.depth() == 0 and len(rig.sink.messages) == 1


async def test_full_spool_on_the_retry_path_is_no_quarantine(
    rig_factory: Callable[..., Rig],
) -> None:
    from gateway.errors import SpoolError

    rig = rig_factory(relay="127.0.0.1:1")
    meta = rig.put(mail("no-space"))

    def full(job: Job, due: float) -> JobMeta:
        raise SpoolError("spool write failed: No space left on device")

    rig.spool.defer = full  # type: ignore[method-assign]
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "deferred", row.status
    assert rig.spool.locate(meta.id) == "queued"  # postponed by a rename alone


async def test_nothing_else_is_claimed_while_a_suspect_runs(
    rig_factory: Callable[..., Rig],
) -> None:
    """A crash while a suspect runs charges every job in active/ (Spool.recover): another
    suspect waiting its turn, or a job claimed just as the suspect began, must not be there,
    or an innocent mail claimed beside a poison one ends as crash_loop with it."""
    rig = rig_factory()
    real = rig.worker.pipeline.process
    seen: list[tuple[str, set[str]]] = []

    async def watched(meta: JobMeta, raw: bytes) -> Any:
        if meta.extra.get(RECOVERIES):
            await asyncio.sleep(0.3)  # the other slots try to claim meanwhile
            claimed = {p.name.removesuffix(".job") for p in rig.spool.active.iterdir()}
            seen.append((meta.id, claimed))
        return await real(meta, raw)

    rig.worker.pipeline.process = watched  # type: ignore[method-assign]
    suspects = [rig.put(mail(f"suspect{i}"), **{RECOVERIES: 1}).id for i in range(2)]
    normal = [rig.put(mail(f"n{i}")).id for i in range(3)]
    task = asyncio.create_task(rig.worker.run(3))

    def all_delivered() -> bool:
        return all(rig.store.status(j) == "delivered" for j in [*suspects, *normal])

    try:
        with contextlib.suppress(AssertionError):  # the assertions below say what is missing
            await eventually_async(all_delivered, timeout=60)
    finally:
        rig.worker.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sorted(jid for jid, _ in seen) == sorted(suspects)
    for jid, claimed in seen:
        assert claimed == {jid}, (jid, claimed)
    for jid in [*suspects, *normal]:
        row = rig.store.get(jid)
        assert row is not None and row.status == "delivered"


async def test_delivered_but_not_recorded_is_not_relayed_again(
    rig_factory: Callable[..., Rig], smtp_sink: Sink
) -> None:
    """The relay took the mail, then recording it failed (a read-only or full database, where
    record_received of the existing row still reads fine): the retry must record it, not send
    it again (each store_retry sent one more copy for as long as the store failed)."""
    rig = rig_factory()
    flaky = FlakyStore(rig.store, {"mark_delivered"})
    rig.worker.store = flaky  # type: ignore[assignment]
    meta = rig.put(mail("once"))
    await rig.worker.handle(rig.claim())
    await smtp_sink.wait_for(1)
    assert flaky.raised == 1 and rig.spool.depth() == 1
    await rig.worker.handle(rig.claim())  # still failing
    assert flaky.raised == 2 and rig.spool.depth() == 1
    flaky.failing = False
    await rig.worker.handle(rig.claim())
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered", row.status if row else None
    assert rig.store.blob(meta.id, "sanitized")
    assert len(smtp_sink.messages) == 1 and rig.spool.depth() == 0


async def test_partly_delivered_and_retry_not_recorded_goes_only_to_the_rest(
    rig_factory: Callable[..., Rig], smtp_sink: Sink
) -> None:
    """One recipient took it, one said 4xx, and recording the retry failed: the job put back
    holds only the deferred recipient (the first got a second copy on the next try)."""
    rig = rig_factory()
    flaky = FlakyStore(rig.store, {"mark_deferred"})
    rig.worker.store = flaky  # type: ignore[assignment]
    other = "other@town.example.lg.jp"
    smtp_sink.rcpt_replies[other] = "450 4.2.1 busy"
    meta = JobMeta(id=new_id(), kind="mail", mail_from="s@example.com", rcpt_tos=(RCPT, other))
    rig.spool.put(meta, mail("partly"))
    await rig.worker.handle(rig.claim())
    assert flaky.raised == 1 and rig.spool.depth() == 1
    flaky.failing = False
    smtp_sink.rcpt_replies.clear()
    await rig.worker.handle(rig.claim())
    got = [r for m in smtp_sink.messages for r in m.rcpt_tos]
    assert sorted(got) == sorted([RCPT, other]), got
    row = rig.store.get(meta.id)
    assert row is not None and row.status == "delivered"
