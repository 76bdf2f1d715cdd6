"""The jail every untrusted parse and render runs in: bubblewrap + seccomp + rlimits.

What a jailed child gets (``command``):
- new user, PID, IPC, UTS, cgroup and network namespaces (``--unshare-all --unshare-user``;
  root gets a user namespace too, so the child holds no capability of the host), and no way
  to make more (``--disable-userns`` + seccomp);
- a PID namespace whose init is bubblewrap's: when the jail's init dies every process in it
  dies, ``setsid`` and double-fork included; ``--die-with-parent`` ties the init to our
  process, so a gateway killed with SIGKILL takes its jails with it;
- a read-only file system of ``/usr`` (+ the merged-/usr symlinks), a few named ``/etc``
  files, the Python interpreter and virtualenv, and the ``gateway`` package — nothing else
  of the host: no data_dir, spool, database, outbox, config, keys or the rest of the checkout;
- ``/tmp`` (also ``HOME`` and the working directory): a private, size-bounded tmpfs, or —
  for LibreOffice, which needs a file and a socket shared with its UNO driver — one host
  directory created for this job, bound read-write;
- a fresh ``/proc`` showing only the jail's processes, a minimal ``/dev``;
- the seccomp filter of ``seccomp.py``;
- rlimits (address space, CPU, file size, processes, no core) applied inside by ``prlimit``.

This module only builds argv and probes; ``sandbox.py`` starts the processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from gateway.errors import IsolationUnavailable
from gateway.sanitize import seccomp

log = logging.getLogger(__name__)

BWRAP = "bwrap"
INSIDE_TMP = "/tmp"  # the job directory / private tmpfs, as the child sees it
DEFAULT_TMP_MB = 256
_PROBE_SECONDS = 15.0

# /etc entries converters read (dynamic loader cache, fonts, LibreOffice's own rc files,
# MIME and magic databases, time zone); everything else of /etc stays invisible.
ETC_FILES: tuple[str, ...] = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/fonts",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/libreoffice",
    "/etc/mime.types",
    "/etc/magic",
    "/etc/magic.mime",
)
_MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _python_dirs() -> list[str]:
    """Directories the jailed Python needs outside /usr: interpreter, venv, our package."""
    import gateway

    dirs: list[str] = []
    for raw in (sys.base_prefix, sys.prefix, str(Path(gateway.__file__).resolve().parent)):
        path = os.path.realpath(raw)
        if path == "/usr" or path.startswith("/usr/") or path in dirs:
            continue
        dirs.append(path)
    return dirs


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def command(
    argv: list[str],
    rlimits: list[str],
    *,
    workdir: str | None = None,
    tmp_mb: int = DEFAULT_TMP_MB,
    status_fd: int | None = None,
) -> tuple[list[str], list[int]]:
    """(bwrap argv running ``argv`` under ``rlimits`` in the jail, fds to pass and close).

    ``workdir``: a host directory bound read-write at ``/tmp``; None ⇒ a private tmpfs of
    ``tmp_mb`` MiB. The caller owns the returned fds (pass them, then close them).
    """
    if not argv:
        raise ValueError("empty argv")
    bwrap = shutil.which(BWRAP)
    if bwrap is None:
        raise IsolationUnavailable("bubblewrap (bwrap) is not installed")
    fds: list[int] = []
    try:
        uid, gid = os.getuid(), os.getgid()
        passwd = f"mugai:x:{uid}:{gid}:mugai jail:{INSIDE_TMP}:/usr/sbin/nologin\n"
        group = f"mugai:x:{gid}:\n"
        if uid != 0:
            passwd = "root:x:0:0:root:/:/usr/sbin/nologin\n" + passwd
        fd_passwd = _memfd("passwd", passwd.encode())
        fds.append(fd_passwd)
        fd_group = _memfd("group", group.encode())
        fds.append(fd_group)
        fd_seccomp = seccomp.filter_fd()
        fds.append(fd_seccomp)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "mugai-jail",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for top in _MERGED_USR:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    args += ["--ro-bind-data", str(fd_passwd), "/etc/passwd"]
    args += ["--ro-bind-data", str(fd_group), "/etc/group"]
    for path in _python_dirs():
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if workdir is not None:
        args += ["--bind", workdir, INSIDE_TMP]
    else:
        args += ["--size", str(tmp_mb * 1024 * 1024), "--tmpfs", INSIDE_TMP]
    # The jail's root is a tmpfs holding only mount points: read-only, so nothing can be
    # written anywhere but the bounded /tmp.
    args += ["--remount-ro", "/", "--chdir", INSIDE_TMP, "--seccomp", str(fd_seccomp)]
    if status_fd is not None:
        args += ["--json-status-fd", str(status_fd)]
    return [*args, "--", *rlimits, *argv], fds


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# --- availability ------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


def _probe() -> tuple[bool, str]:
    try:
        argv, fds = command(["/bin/true"], [])
    except IsolationUnavailable as exc:
        return False, str(exc)
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=fds,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=_PROBE_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bwrap could not run: {exc}"
    finally:
        close_fds(fds)
    if done.returncode != 0:
        first = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        cause = first[0][:200] if first else f"exit {done.returncode}"
        return False, f"bwrap failed: {cause}{_HINT}"
    return True, "bubblewrap jail with seccomp"


_HINT = (
    " (needs unprivileged user namespaces: Ubuntu 24.04 — an AppArmor profile for bwrap"
    " or kernel.apparmor_restrict_unprivileged_userns=0; containers — the seccomp profile"
    " in deploy/; see docs/operations.md 'Converter jail')"
)


def jail_status() -> tuple[bool, str]:
    """(jail usable on this host, cause); probed once by building a real jail, then cached."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe()
            if _probe_result[0]:
                log.info("converter jail: %s", _probe_result[1])
            else:
                log.error(
                    "converter jail unavailable, attachments will be withheld: %s",
                    _probe_result[1],
                )
        return _probe_result


def reset_probe() -> None:
    """Forget the cached probe (tests; an operator fixing the host while we run)."""
    global _probe_result
    with _probe_lock:
        _probe_result = None


def isolation_status(mode: str) -> tuple[bool, str]:
    """Readiness of converter isolation for the configured ``network_isolation`` mode."""
    if mode == "off":
        return True, "isolation off by operator choice: converters run WITHOUT the jail"
    return jail_status()
