"""The only module that starts processes: untrusted parsing runs in children.

Every child gets
- its own session / process group (``start_new_session``), so a timeout kills the whole tree;
- rlimits (address space, CPU, file size, processes) applied by the ``prlimit`` wrapper
  rather than ``preexec_fn``: ``preexec_fn`` is documented as unsafe with threads and we are
  called from worker threads;
- the jail of ``jail.py`` (bubblewrap namespaces incl. PID and network, read-only minimal
  file system, seccomp); with ``network_isolation = "off"`` (explicit, logged) rlimits only;
- a minimal environment with a throw-away ``HOME``;
- bounded pipes: stdout is capped (the child is killed when it writes more), stderr keeps only
  its first 64 KiB.

``run`` buffers stdout, or streams it to a ``sink`` callback so that callers such as the PDF
renderer can process frames as they arrive and never hold the whole output.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import multiprocessing
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.errors import IsolationUnavailable
from gateway.sanitize import jail
from gateway.sanitize.cgroup import CGROUPS, Group

log = logging.getLogger(__name__)

NetworkMode = Literal["auto", "required", "off"]

_STDERR_CAP = 64 * 1024
_CHUNK = 256 * 1024
# RLIMIT_CPU default: the wall clock plus a little; the wall clock is the real limit.
_CPU_SLACK = 5


@dataclass(frozen=True)
class Limits:
    seconds: float  # wall clock; the process group is killed after it
    memory_mb: int  # RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU (default: seconds + 5)
    max_file_mb: int = 512  # RLIMIT_FSIZE
    # RLIMIT_NPROC counts per uid and is not enforced for root; set anyway for non-root deploys.
    max_processes: int | None = None
    max_output_bytes: int = 512 * 1024 * 1024  # stdout cap; exceeding ⇒ killed
    tmp_mb: int = jail.DEFAULT_TMP_MB  # the jail's private /tmp (tmpfs) when no workdir


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    killed: str | None  # None, "timeout", "output_too_large", "cpu", "memory"


# --- isolation -----------------------------------------------------------------------------

# "required" (the default) and "auto" (kept for old configurations; it no longer degrades):
# every child runs in the jail of jail.py, and when the jail cannot be built nothing runs
# (IsolationUnavailable: the part is withheld). "off": the operator's explicit choice to run
# converters with rlimits only — no jail, no network isolation; logged loudly once.
_off_warned = threading.Event()


def _jailed(mode: NetworkMode) -> bool:
    if mode == "off":
        if not _off_warned.is_set():
            _off_warned.set()
            log.error(
                'network_isolation = "off": converters run WITHOUT the jail (no namespace,'
                " no seccomp, full file system and network): a converter exploit owns the gateway"
            )
        return False
    ok, cause = jail.jail_status()
    if not ok:
        raise IsolationUnavailable(f"converter jail unavailable: {cause}")
    return True


# --- building the command line -------------------------------------------------------------


def _rlimit_prefix(limits: Limits) -> list[str]:
    cpu = limits.cpu_seconds
    if cpu is None:
        cpu = int(limits.seconds) + _CPU_SLACK
    args = [
        "prlimit",
        f"--as={limits.memory_mb * 1024 * 1024}",
        # soft < hard: SIGXCPU first (reported as "cpu"), SIGKILL a second later if ignored.
        f"--cpu={max(1, cpu)}:{max(1, cpu) + 1}",
        f"--fsize={limits.max_file_mb * 1024 * 1024}",
        "--core=0",
    ]
    if limits.max_processes is not None:
        args.append(f"--nproc={limits.max_processes}")
    return [*args, "--"]


def _environment(env: Mapping[str, str] | None, home: str) -> dict[str, str]:
    base = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "OMP_THREAD_LIMIT": "1",
    }
    if _instance:
        base[_INSTANCE_VAR] = _instance
    if env:
        base.update(env)
    return base


def python_child(module: str) -> list[str]:
    """argv running ``python -I -m module`` with this interpreter (isolated mode)."""
    return [sys.executable, "-I", "-m", module]


# --- leftovers of a previous run -------------------------------------------------------------

# Every child carries MUGAI_INSTANCE=<tag of this instance's data_dir> in its environment, so
# that start-up can find what a previous run of the same instance left behind. In the jail
# nothing is left (PID namespace + --die-with-parent); this is for isolation "off", for a
# jail a future bug lets out, and for work directories.
_INSTANCE_VAR = "MUGAI_INSTANCE"
_instance = ""


def set_instance(data_dir: str | os.PathLike[str]) -> str:
    """Tag children with this instance (derived from its data_dir); returns the tag."""
    global _instance
    real = os.path.realpath(os.fspath(data_dir))
    _instance = hashlib.sha256(real.encode()).hexdigest()[:16]
    return _instance


def instance_tag() -> str:
    return _instance or "none"


def _tagged(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return marker in fh.read(1024 * 1024).split(b"\0")
    except OSError:
        return False


def reap_leftovers() -> int:
    """At start-up: SIGKILL processes and remove work directories of a previous run of this
    instance (same tag, not descendants of this process); returns how many were killed."""
    if not _instance:
        return 0
    marker = f"{_INSTANCE_VAR}={_instance}".encode()
    mine = {os.getpid(), *descendants(os.getpid())}
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        pid = int(entry)
        if _tagged(pid, marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    for leftover in Path(tempfile.gettempdir()).glob(f"mugai-*-{_instance}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    # Groups of a dead gateway (root only): whatever is still in them dies with them.
    CGROUPS.sweep()
    if killed:
        log.warning("killed %d converter processes left by a previous run", killed)
    return killed


def work_dir(kind: str) -> str:
    """A new private temporary directory for converter work, tagged with this instance."""
    return tempfile.mkdtemp(prefix=f"mugai-{kind}-{instance_tag()}-")


# --- killing -------------------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """Pids below ``root`` (via /proc), so a grandchild that left the group dies too."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: ppid follows the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill_tree(pid: int) -> None:
    stragglers = descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for other in stragglers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(other, signal.SIGKILL)


_homes_lock = threading.Lock()
_spawn_homes: dict[int, str] = {}
_spawn_groups: dict[int, Group] = {}


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group, reap it; idempotent."""
    if proc.returncode is None:
        _kill_tree(proc.pid)
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    with _homes_lock:
        home = _spawn_homes.pop(proc.pid, None)
        group = _spawn_groups.pop(proc.pid, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    if group is not None:
        group.remove()


# --- starting ------------------------------------------------------------------------------


@dataclass
class _Prepared:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    fds: list[int]
    home: str | None  # host HOME to remove afterwards (isolation off only)
    jailed: bool
    group: Group | None = None  # the child's cgroup (root only), removed afterwards


def _prepare(
    argv: list[str],
    limits: Limits,
    network: NetworkMode,
    env: Mapping[str, str] | None,
    workdir: str | None,
) -> _Prepared:
    if not argv:
        raise ValueError("empty argv")
    jailed = _jailed(network)
    try:
        # Outermost step: the group is joined before the jail or anything untrusted starts.
        group = CGROUPS.create(
            max_tasks=limits.max_processes, memory_bytes=limits.memory_mb * 1024 * 1024
        )
    except OSError as exc:  # cgroups are in use here, and this child would escape them
        raise IsolationUnavailable(f"converter cgroup unavailable: {exc}") from exc
    enter = group.prefix() if group is not None else []
    if jailed:
        full, fds = jail.command(
            argv, _rlimit_prefix(limits), workdir=workdir, tmp_mb=limits.tmp_mb
        )
        env_ = _environment(env, jail.INSIDE_TMP)
        return _Prepared([*enter, *full], env_, None, fds, None, True, group)
    home = work_dir("home")
    return _Prepared(
        [*enter, *_rlimit_prefix(limits), *argv],
        _environment(env, home), workdir or home, [], home, False, group,
    )  # fmt: skip


def _discard(prep: _Prepared) -> None:
    jail.close_fds(prep.fds)
    if prep.home is not None:
        shutil.rmtree(prep.home, ignore_errors=True)
    if prep.group is not None:
        prep.group.remove()


# Long-lived children are started from one thread that lives as long as the process: the
# jail's --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread* that forked it ends,
# and a soffice listener must not die with the worker thread that happened to start it.
_spawner_lock = threading.Lock()
_spawner: ThreadPoolExecutor | None = None


def _spawn_thread() -> ThreadPoolExecutor:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mugai-spawner")
        return _spawner


def spawn(
    argv: list[str],
    *,
    limits: Limits,
    network: NetworkMode = "required",
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
) -> subprocess.Popen[bytes]:
    """A long-lived child (e.g. a warm soffice listener): same jail, own process group.

    stdin is /dev/null, stdout and stderr are discarded (a long-lived child would otherwise
    block on a full pipe). ``workdir`` is bound read-write at /tmp in the jail (the child's
    HOME and working directory). The wall-clock limit is the caller's job; end it with
    kill_group, which also removes the temporary HOME created here.
    """
    prep = _prepare(argv, limits, network, env, workdir)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            prep.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=prep.env,
            cwd=prep.cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=prep.fds,
        )

    try:
        proc = _spawn_thread().submit(start).result()
    except BaseException:
        _discard(prep)
        raise
    jail.close_fds(prep.fds)
    with _homes_lock:
        if prep.home is not None:
            _spawn_homes[proc.pid] = prep.home
        if prep.group is not None:
            _spawn_groups[proc.pid] = prep.group
    return proc


class _OutputTooLarge(Exception):
    pass


def run(
    argv: list[str],
    *,
    stdin: bytes,
    limits: Limits,
    network: NetworkMode = "required",
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> RunResult:
    """Run a child to completion in the jail with bounded time, memory and output.

    With ``sink``, stdout chunks are handed to it as they arrive and ``RunResult.stdout`` is
    empty; an exception raised by the sink kills the child group and propagates.
    ``workdir``: see ``spawn``; None ⇒ a private tmpfs.
    Never raises for the child's own failures: look at ``returncode`` and ``killed``;
    raises IsolationUnavailable when the jail cannot be built (nothing was started).
    """
    prep = _prepare(argv, limits, network, env, workdir)
    started = time.monotonic()
    deadline = started + limits.seconds
    try:
        proc = subprocess.Popen(
            prep.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=prep.env,
            cwd=prep.cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=prep.fds,
        )
    except BaseException:
        _discard(prep)
        raise
    jail.close_fds(prep.fds)
    with contextlib.ExitStack() as cleanup:
        if prep.home is not None:
            cleanup.callback(shutil.rmtree, prep.home, ignore_errors=True)
        if prep.group is not None:
            cleanup.callback(prep.group.remove)
        try:
            out, err, killed = _pump(proc, stdin, limits, deadline, sink)
        finally:
            # In every case (sink errors, KeyboardInterrupt, normal exit): kill what is left of
            # the group (a grandchild may outlive its parent) and reap: no zombies, no orphans.
            if proc.returncode is None:
                _kill_tree(proc.pid)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            kill_group(proc)
    returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    if prep.jailed and 128 < returncode < 128 + 65:
        # bubblewrap reports a child killed by signal N as exit 128 + N.
        returncode = 128 - returncode
    if killed is None and returncode == -signal.SIGXCPU:
        killed = "cpu"
    if killed is None and returncode != 0 and _looks_like_oom(err):
        killed = "memory"
    return RunResult(
        returncode=returncode,
        stdout=out,
        stderr=err,
        seconds=time.monotonic() - started,
        killed=killed,
    )


def _looks_like_oom(stderr: bytes) -> bool:
    # Diagnostic only (the child's stderr is untrusted): never used to accept anything.
    tail = stderr[-4096:]
    return b"MemoryError" in tail or b"std::bad_alloc" in tail or b"Cannot allocate" in tail


def _pump(
    proc: subprocess.Popen[bytes],
    stdin: bytes,
    limits: Limits,
    deadline: float,
    sink: Callable[[bytes], None] | None,
) -> tuple[bytes, bytes, str | None]:
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out = bytearray()
    err = bytearray()
    total = 0
    view = memoryview(stdin)
    offset = 0
    sel = selectors.DefaultSelector()
    try:
        if stdin:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(out), bytes(err), "timeout"
            for key, _ in sel.select(timeout=min(remaining, 1.0)):
                stream = key.fileobj
                if stream is proc.stdin:
                    try:
                        offset += os.write(proc.stdin.fileno(), view[offset : offset + _CHUNK])
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # child closed its stdin early: fine
                        if exc.errno not in (errno.EPIPE, errno.EBADF):
                            raise
                        offset = len(stdin)
                    if offset >= len(stdin):
                        sel.unregister(proc.stdin)
                        with contextlib.suppress(OSError):
                            proc.stdin.close()
                    continue
                fd = key.fd
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    sel.unregister(stream)
                    continue
                if stream is proc.stdout:
                    total += len(chunk)
                    if total > limits.max_output_bytes:
                        return bytes(out), bytes(err), "output_too_large"
                    if sink is not None:
                        sink(chunk)
                    else:
                        out += chunk
                elif len(err) < _STDERR_CAP:
                    err += chunk[: _STDERR_CAP - len(err)]
        # Pipes closed; the child may still linger (or a grandchild holds nothing open).
        remaining = deadline - time.monotonic()
        try:
            proc.wait(timeout=max(remaining, 0.01))
        except subprocess.TimeoutExpired:
            return bytes(out), bytes(err), "timeout"
        return bytes(out), bytes(err), None
    finally:
        sel.close()


def peak_rss_mb() -> tuple[float, float]:
    """(self, children) peak resident set size in MiB; for reports and benchmarks."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


# --- trusted worker processes ----------------------------------------------------------------

_trusted_lock = threading.Lock()
_trusted: ProcessPoolExecutor | None = None


def trusted_pool() -> ProcessPoolExecutor:
    """Worker processes for CPU-heavy TRUSTED work (re-encoding pixels that the parent has
    already validated). Not a sandbox: nothing untrusted is parsed there. They exist so that
    encoding uses every core and does not hold the gateway's GIL, which would stall the SMTP
    listener under load. "forkserver": forking this threaded process directly is unsafe."""
    global _trusted
    with _trusted_lock:
        if _trusted is None:
            _trusted = ProcessPoolExecutor(
                max_workers=os.cpu_count() or 1,
                mp_context=multiprocessing.get_context("forkserver"),
            )
        return _trusted


def reset_trusted_pool() -> None:
    """Replace a broken pool (a worker died); the next trusted_pool() starts a new one."""
    global _trusted
    with _trusted_lock:
        if _trusted is not None:
            _trusted.shutdown(wait=False, cancel_futures=True)
        _trusted = None
