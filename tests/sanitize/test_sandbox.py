"""The sandbox with real child processes: time, memory, output, network, process groups."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import ConversionFailed, IsolationUnavailable
from gateway.sanitize import jail, sandbox
from gateway.sanitize.sandbox import Limits
from tests.waiting import eventually, settle

pytestmark = pytest.mark.timeout(120)

LIMITS = Limits(seconds=30, memory_mb=1024)


def _py(code: str) -> list[str]:
    return [sys.executable, "-I", "-c", code]


def _state(pid: int) -> str | None:
    """Process state letter from /proc, None when the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


def _gone(pid: int, wait: float = 10.0) -> bool:
    """Dead: gone, or a zombie not ours (reparented to init, which reaps it in its own time)."""
    try:
        eventually(lambda: _state(pid) in (None, "Z", "X"), timeout=wait, interval=0.05)
    except AssertionError:
        return False
    return True


def _our_zombies() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] == b"Z" and int(fields[1]) == me:
            found.append(int(entry))
    return found


def test_runs_and_returns_output() -> None:
    result = sandbox.run(["cat"], stdin=b"hello", limits=LIMITS)
    assert result.returncode == 0
    assert result.stdout == b"hello"
    assert result.killed is None


def test_large_stdin_and_stdout_do_not_deadlock() -> None:
    payload = os.urandom(8 * 1024 * 1024)  # far beyond any pipe buffer, both ways
    result = sandbox.run(["cat"], stdin=payload, limits=LIMITS)
    assert result.returncode == 0
    assert result.stdout == payload


def test_sink_receives_stream_and_errors_kill_the_child() -> None:
    got = bytearray()
    result = sandbox.run(["cat"], stdin=b"x" * 100_000, limits=LIMITS, sink=got.extend)
    assert bytes(got) == b"x" * 100_000 and result.stdout == b""

    class Stop(Exception):
        pass

    def sink(chunk: bytes) -> None:
        raise Stop

    with pytest.raises(Stop):
        sandbox.run(
            _py("import sys,time\nprint('x',flush=True)\ntime.sleep(60)"),
            stdin=b"",
            limits=LIMITS,
            sink=sink,
        )
    assert _our_zombies() == []


def _alive_with(token: str) -> list[int]:
    """Host pids (any namespace) whose command line contains ``token``, zombies excluded."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline and _state(int(entry)) not in (None, "Z", "X"):
            found.append(int(entry))
    return found


def _wait_none_with(token: str, wait: float = 10.0) -> list[int]:
    return settle(lambda: _alive_with(token), timeout=wait, interval=0.05)


def test_timeout_kills_child_and_grandchildren() -> None:
    token = f"mugai-probe-{os.urandom(4).hex()}"
    code = (
        "import subprocess, sys, time\n"
        "tok = sys.argv[1]\n"
        "a = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', tok])\n"
        # setsid: leaves the process group and session; the PID namespace still holds it
        "b = subprocess.Popen(['setsid', sys.executable, '-c', 'import time; time.sleep(1000)',"
        " tok])\n"
        "print(a.pid, b.pid, flush=True)\n"
        "time.sleep(1000)\n"
    )
    result = sandbox.run([*_py(code), token], stdin=b"", limits=Limits(seconds=3, memory_mb=1024))
    assert result.killed == "timeout"
    assert result.returncode < 0
    assert len(result.stdout.split()) == 2  # both were started
    assert _wait_none_with(token) == [], "a grandchild survived"
    assert _our_zombies() == []


def test_leftover_grandchild_killed_after_normal_exit() -> None:
    token = f"mugai-probe-{os.urandom(4).hex()}"
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)',"
        " sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    result = sandbox.run([*_py(code), token], stdin=b"", limits=LIMITS)
    assert result.returncode == 0 and result.killed is None
    assert result.stdout.strip()
    assert _wait_none_with(token) == []


def test_memory_cap() -> None:
    result = sandbox.run(
        _py("x = bytearray(4 * 1024 ** 3)\nprint(len(x))"),
        stdin=b"",
        limits=Limits(seconds=30, memory_mb=512),
    )
    assert result.returncode != 0
    assert result.stdout == b""
    assert result.killed == "memory"


def test_rlimits_are_applied() -> None:
    limits = Limits(seconds=30, memory_mb=700, cpu_seconds=17, max_file_mb=3, max_processes=50)
    result = sandbox.run(["cat", "/proc/self/limits"], stdin=b"", limits=limits)
    text = result.stdout.decode()
    lines = {line[:26].strip(): line[26:].split() for line in text.splitlines()[1:]}
    assert lines["Max address space"][0] == str(700 * 1024 * 1024)
    assert lines["Max cpu time"][:2] == ["17", "18"]
    assert lines["Max file size"][0] == str(3 * 1024 * 1024)
    assert lines["Max processes"][0] == "50"
    assert lines["Max core file size"][0] == "0"


def test_cpu_limit() -> None:
    result = sandbox.run(
        _py("while True: pass"), stdin=b"", limits=Limits(seconds=30, memory_mb=512, cpu_seconds=1)
    )
    assert result.killed == "cpu"


def test_output_cap() -> None:
    result = sandbox.run(
        ["yes"], stdin=b"", limits=Limits(seconds=30, memory_mb=512, max_output_bytes=100_000)
    )
    assert result.killed == "output_too_large"
    assert len(result.stdout) <= 100_000
    assert _our_zombies() == []


def test_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUGAI_TEST_SECRET", "do-not-leak")
    result = sandbox.run(["env"], stdin=b"", limits=LIMITS, env={"EXTRA": "1"})
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert "MUGAI_TEST_SECRET" not in env
    assert env["LANG"] == "C.UTF-8" and env["OMP_THREAD_LIMIT"] == "1" and env["EXTRA"] == "1"
    assert env["HOME"] != os.environ.get("HOME")
    # HOME is the jail's private /tmp, a tmpfs that disappears with the jail.
    assert env["HOME"] == "/tmp"
    off = sandbox.run(["env"], stdin=b"", limits=LIMITS, network="off")
    home = dict(line.split("=", 1) for line in off.stdout.decode().splitlines())["HOME"]
    assert home != os.environ.get("HOME")
    assert not os.path.exists(home)  # without the jail, the throw-away HOME is removed


def test_own_pid_namespace() -> None:
    result = sandbox.run(
        _py(
            "import os; print(os.getpid(), sorted(int(p) for p in os.listdir('/proc')"
            " if p.isdigit()))"
        ),
        stdin=b"",
        limits=LIMITS,
    )
    pid, pids = result.stdout.decode().split(" ", 1)
    # bubblewrap's init is pid 1, the command pid 2: nothing of the host is visible.
    assert pid == "2"
    assert pids.strip() == "[1, 2]"


@pytest.fixture
def loopback_server() -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    srv.close()


CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3).close()\n"
    "except OSError as e:\n"
    "    print('blocked', e); sys.exit(1)\n"
    "print('connected')\n"
)


def test_network_isolation(loopback_server: int) -> None:
    assert jail.jail_status()[0], jail.jail_status()[1]  # CI must have the jail
    argv = [*_py(CONNECT), str(loopback_server)]
    control = sandbox.run(argv, stdin=b"", limits=LIMITS, network="off")
    assert control.stdout.startswith(b"connected")  # the server is really there
    for mode in ("required", "auto"):
        isolated = sandbox.run(argv, stdin=b"", limits=LIMITS, network=mode)  # type: ignore[arg-type]
        assert isolated.returncode == 1
        assert isolated.stdout.startswith(b"blocked")


def test_required_isolation_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection: bubblewrap missing. Nothing runs, in "auto" either (fail closed).
    monkeypatch.setattr(jail, "BWRAP", "/nonexistent/bwrap")
    jail.reset_probe()
    try:
        for mode in ("required", "auto"):
            with pytest.raises(IsolationUnavailable) as info:
                sandbox.run(["true"], stdin=b"", limits=LIMITS, network=mode)  # type: ignore[arg-type]
            assert info.value.reason == "isolation_unavailable"
            assert isinstance(info.value, ConversionFailed)  # the part is withheld
        ok, cause = jail.isolation_status("required")
        assert not ok and "bwrap" in cause
        assert jail.isolation_status("off")[0]
        assert sandbox.run(["true"], stdin=b"", limits=LIMITS, network="off").returncode == 0
    finally:
        monkeypatch.undo()
        jail.reset_probe()
    assert jail.jail_status()[0]


def test_spawn_and_kill_group() -> None:
    proc = sandbox.spawn(["sh", "-c", "sleep 1000 & sleep 1000"], limits=LIMITS)
    time.sleep(0.2)
    assert proc.poll() is None
    assert os.getpgid(proc.pid) == proc.pid
    sandbox.kill_group(proc)
    assert proc.returncode is not None and proc.returncode < 0
    sandbox.kill_group(proc)  # idempotent
    assert _state(proc.pid) is None
    assert _our_zombies() == []


def test_python_child_is_isolated_interpreter() -> None:
    argv = sandbox.python_child("gateway.sanitize.render_child")
    assert argv[:2] == [sys.executable, "-I"]
    result = sandbox.run([*argv, "nonsense"], stdin=b"", limits=LIMITS)
    assert result.returncode == 2  # usage error from the real module


def test_thread_safe_parallel_runs() -> None:
    results: list[bytes] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        out = sandbox.run(["cat"], stdin=str(i).encode() * 50_000, limits=LIMITS).stdout
        with lock:
            results.append(out)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(str(i).encode() * 50_000 for i in range(8))
    assert _our_zombies() == []
