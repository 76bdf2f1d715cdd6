from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.errors import SpoolError
from gateway.spool import JobMeta, Spool, new_id


def meta(**kw: object) -> JobMeta:
    return JobMeta(
        id=new_id(),
        kind="mail",
        mail_from="a@example.com",
        rcpt_tos=("u@town.example.lg.jp",),
        **kw,
    )  # type: ignore[arg-type]


def test_put_claim_done_roundtrip(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    m = spool.put(meta(), b"Subject: x\r\n\r\nbody\r\n")
    assert m.received_at > 0
    assert spool.depth() == 1
    job = spool.claim()
    assert job is not None and job.id == m.id
    assert job.read() == b"Subject: x\r\n\r\nbody\r\n"
    assert job.meta.rcpt_tos == ("u@town.example.lg.jp",)
    assert spool.claim() is None  # claimed jobs are not handed out twice
    spool.done(job)
    assert spool.depth() == 0


def test_claim_order_is_arrival_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ids = []
    for _ in range(5):
        ids.append(spool.put(meta(), b"x").id)
        time.sleep(0.002)
    got = []
    while (job := spool.claim()) is not None:
        got.append(job.id)
        spool.done(job)
    assert got == ids


def test_defer_waits_until_due_and_counts_attempts(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(meta(), b"data")
    job = spool.claim()
    assert job is not None
    now = time.time()
    spool.defer(job, now + 100)
    assert spool.claim(now) is None
    assert spool.next_due() == pytest.approx(int(now + 100))
    again = spool.claim(now + 101)
    assert again is not None and again.meta.attempts == 1
    assert again.read() == b"data"


def test_recover_returns_claimed_jobs_and_drops_unacknowledged_tmp(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(meta(), b"one")
    job = spool.claim()
    assert job is not None
    (spool.tmp / "half-written.tmp").write_bytes(b"partial")
    # A new process starts over the same directory (as after kill -9).
    fresh = Spool(tmp_path)
    assert fresh.recover() == 1
    assert list(fresh.tmp.iterdir()) == []
    again = fresh.claim()
    assert again is not None and again.id == job.id and again.read() == b"one"


def test_corrupt_header_is_set_aside_not_blocking(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (spool.queue / "000000000000deadbeef00.job").write_bytes(b"not json\nrest")
    good = spool.put(meta(), b"ok")
    with pytest.raises(SpoolError):
        spool.claim()
    assert (tmp_path / "corrupt" / "000000000000deadbeef00.job").exists()
    job = spool.claim()
    assert job is not None and job.id == good.id


def test_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(len(i) == 22 for i in ids)


def test_expedite_makes_deferred_jobs_due_in_arrival_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ids = []
    for _ in range(3):
        ids.append(spool.put(meta(), b"x").id)
        time.sleep(0.002)
    now = time.time()
    # Deferred at scattered times: the newest would be retried first.
    for job_id, wait in zip(ids, (300, 200, 100), strict=True):
        job = spool.claim(now)
        assert job is not None and job.id == job_id
        spool.defer(job, now + wait)
    assert spool.claim(now) is None
    assert spool.expedite() == 3
    order = []
    while (job := spool.claim(now)) is not None:
        order.append(job.id)
        spool.done(job)
    assert order == ids


# --- the ready index (issue 14): claims without a directory scan each ------------------


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import gateway.spool as spool_module

    seen: list[str] = []
    real = spool_module.os.scandir

    def counting(path: object) -> object:
        seen.append(str(path))
        return real(path)  # type: ignore[call-overload]

    monkeypatch.setattr(spool_module.os, "scandir", counting)
    return seen


def test_claims_come_from_the_index_not_a_scan_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, rescan_every=3600)
    spool.claim()  # the boot scan (empty)
    ids = [spool.put(meta(), b"x").id for _ in range(200)]
    scans = _count_scans(monkeypatch)
    claimed = [job.id for job in iter(spool.claim, None)]
    assert claimed == sorted(ids)  # oldest id first (ids are ms-ordered), each exactly once
    # One scan when the index ran dry at the end (queue/ and deferred/), none per claim.
    assert len(scans) == 2, scans


def test_a_job_another_process_put_is_claimed(tmp_path: Path) -> None:
    mine, other = Spool(tmp_path, rescan_every=3600), Spool(tmp_path, rescan_every=3600)
    a = mine.put(meta(), b"a")
    b = other.put(meta(), b"b")  # not in mine's index
    first, second = mine.claim(), mine.claim()
    assert first is not None and second is not None
    assert (first.id, second.id) == (a.id, b.id)
    assert other.claim() is None  # its index entry was taken by the other process: skipped


def test_an_older_job_from_elsewhere_is_found_on_the_timer(tmp_path: Path) -> None:
    mine, other = Spool(tmp_path, rescan_every=0.0), Spool(tmp_path)
    older = other.put(meta(), b"old")
    newer = mine.put(meta(), b"new")
    job = mine.claim()
    assert job is not None and job.id == older.id  # rescan due: the oldest wins again
    nxt = mine.claim()
    assert nxt is not None and nxt.id == newer.id


def test_a_deferred_job_comes_back_when_due(tmp_path: Path) -> None:
    spool = Spool(tmp_path, rescan_every=3600)
    spool.put(meta(), b"x")
    job = spool.claim()
    assert job is not None
    now = time.time()
    spool.defer(job, now + 100)
    assert spool.claim(now=now) is None
    again = spool.claim(now=now + 101)
    assert again is not None and again.id == job.id and again.meta.attempts == 1
