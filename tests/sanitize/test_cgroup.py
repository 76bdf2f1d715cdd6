"""Per-child cgroups (gateway/sanitize/cgroup.py): as root, RLIMIT_NPROC does not apply, so
the kernel's pids controller is what stops a fork bomb in a converter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.sanitize import sandbox
from gateway.sanitize.cgroup import CGROUPS, Cgroups
from gateway.sanitize.sandbox import Limits

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not CGROUPS.available,
    reason="needs root and a writable pids cgroup (non-root deploys rely on RLIMIT_NPROC)",
)

FORK_BOMB = """
import os, time
n = 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    n += 1
print(n, flush=True)
"""


def _groups(controller: str = "") -> set[Path]:
    return {
        p
        for h in CGROUPS.hierarchies()
        if not controller or controller in h.controllers
        for p in h.root.glob(f"j{os.getpid()}-*")
    }


def test_a_fork_bomb_as_root_stops_at_the_task_limit() -> None:
    before = _groups()
    result = sandbox.run(
        [sys.executable, "-I", "-c", FORK_BOMB],
        stdin=b"",
        limits=Limits(seconds=20, memory_mb=512, max_processes=16),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    forks = int(result.stdout)
    # sh, bwrap, its init and python hold 4 of the 16; RLIMIT_NPROC alone would let root
    # fork all 300.
    assert 0 < forks < 16
    assert _groups() == before  # removed with the child, the sleepers killed


def test_an_unlimited_child_still_gets_the_default_cap() -> None:
    result = sandbox.run(
        [sys.executable, "-I", "-c", FORK_BOMB.replace("300", "2000")],
        stdin=b"",
        limits=Limits(seconds=30, memory_mb=512),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) < 512


def test_a_long_lived_child_is_in_its_group_until_killed() -> None:
    proc = sandbox.spawn(["sleep", "60"], limits=Limits(seconds=60, memory_mb=256))
    try:
        deadline = time.monotonic() + 10
        while True:
            mine = [g for g in _groups("pids") if str(proc.pid) in (g / "cgroup.procs").read_text()]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert mine, "the spawned child is not in a group of its own"
        assert (mine[0] / "pids.max").read_text().strip() == "512"
    finally:
        sandbox.kill_group(proc)
    assert not any(g.exists() for g in mine)


def test_sweep_kills_what_a_dead_gateway_left(tmp_path: Path) -> None:
    # A group named after a gateway pid that no longer exists, with a process still in it.
    dead = subprocess.Popen(["true"])
    dead.wait()
    cg = Cgroups()
    root = next(h.root for h in cg.hierarchies() if "pids" in h.controllers)
    stale = root / f"j{dead.pid}-0"
    stale.mkdir()
    orphan = subprocess.Popen(["sleep", "60"])
    try:
        (stale / "cgroup.procs").write_text(str(orphan.pid))
        assert cg.sweep() >= 1
        assert orphan.wait(timeout=10) == -9
        assert not stale.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        if stale.exists():
            stale.rmdir()


def test_a_group_that_cannot_be_made_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.errors import IsolationUnavailable

    def refuse(**_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sandbox.CGROUPS, "create", refuse)
    with pytest.raises(IsolationUnavailable):
        sandbox.run(["true"], stdin=b"", limits=Limits(seconds=5, memory_mb=128))
