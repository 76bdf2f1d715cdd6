"""A cgroup per jailed child: the kernel bounds tasks and memory of the whole tree.

RLIMIT_NPROC is not enforced for root, so a gateway running as root had only the wall clock
and the PID namespace against a fork bomb. When the gateway is root and a cgroup hierarchy
is writable, ``sandbox`` puts every child into its own group before anything untrusted runs
(a ``/bin/sh`` step writes its own PID into ``cgroup.procs``, then execs the jail), with
``pids.max`` and the memory limit set. Without root, RLIMIT_NPROC does the job and no group
is made.

Groups live under ``mugai/`` of each hierarchy (cgroup v1: ``pids`` and ``memory``; v2: the
unified tree with those controllers enabled), named ``j<gateway pid>-<n>``. ``sweep`` kills
what is left in groups of a gateway that is no longer alive and removes them: orphans of a
crashed gateway do not survive its restart.

Written by hand: no maintained Python library manages cgroup v1 and v2 directories for
transient children without systemd, and this needs only mkdir, three writes and rmdir.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shlex
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BASE = Path("/sys/fs/cgroup")
NAME = "mugai"
DEFAULT_TASKS = 512  # children with no max_processes of their own (threads count as tasks)


@dataclass(frozen=True)
class Hierarchy:
    root: Path  # .../mugai
    version: int  # 1 or 2
    controllers: frozenset[str]  # of {"pids", "memory"}


@dataclass(frozen=True)
class Group:
    paths: tuple[Path, ...]

    def prefix(self) -> list[str]:
        """argv that joins the group, then execs the rest (any failure: exit 125, nothing
        untrusted has run)."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))}" for p in self.paths)
        return ["/bin/sh", "-c", f'{joins} && exec "$@" || exit 125', "mugai-cgroup"]

    def tasks(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in (path / "cgroup.procs").read_text().split())
        return found

    def remove(self) -> None:
        """SIGKILL everything still in the group, then remove it (idempotent)."""
        _remove(self.paths)


def _remove(paths: tuple[Path, ...]) -> None:
    for _ in range(50):  # a killed task leaves the group once the kernel has reaped it
        left = False
        for path in paths:
            if not path.exists():
                continue
            with contextlib.suppress(OSError, ValueError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left = True
        if not left:
            return
        time.sleep(0.02)
    log.warning("cgroup not removed (tasks still in it): %s", ", ".join(map(str, paths)))


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _own(controller: str) -> str:
    """This process's group in a hierarchy ("" names v2's), from /proc/self/cgroup: the
    jail's groups go below it, so they stay inside whatever limits the gateway runs under."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path.lstrip("/")
    return ""


def _detect(base: Path) -> list[Hierarchy]:
    if os.geteuid() != 0:
        return []
    found: list[Hierarchy] = []
    unified = base / "cgroup.controllers"
    if unified.exists():
        have = set(unified.read_text().split()) & {"pids", "memory"}
        if "pids" not in have:
            return []
        own = base / _own("")
        root = own / NAME
        try:
            # Fails (EBUSY) where the gateway's own group holds processes and was not
            # delegated: v2 forbids processes and child groups side by side.
            enable = " ".join(f"+{c}" for c in sorted(have))
            _write(own / "cgroup.subtree_control", enable)
            root.mkdir(exist_ok=True)
            _write(root / "cgroup.subtree_control", enable)
        except OSError as exc:
            log.warning("cgroup v2 not usable for the jail: %s", exc)
            return []
        return [Hierarchy(root, 2, frozenset(have))]
    for controller in ("pids", "memory"):
        hierarchy = base / controller
        if not (hierarchy / "cgroup.procs").exists():
            continue
        root = hierarchy / _own(controller) / NAME
        try:
            root.mkdir(exist_ok=True)
        except OSError as exc:
            log.warning("cgroup %s not usable for the jail: %s", controller, exc)
            continue
        found.append(Hierarchy(root, 1, frozenset({controller})))
    if not any("pids" in h.controllers for h in found):
        return []
    return found


class Cgroups:
    def __init__(self, base: Path = BASE) -> None:
        self.base = base
        self._lock = threading.Lock()
        self._hierarchies: list[Hierarchy] | None = None
        self._ids = itertools.count()

    def hierarchies(self) -> list[Hierarchy]:
        with self._lock:
            if self._hierarchies is None:
                try:
                    self._hierarchies = _detect(self.base)
                except OSError as exc:
                    log.warning("cgroups not usable for the jail: %s", exc)
                    self._hierarchies = []
                if os.geteuid() == 0 and not self._hierarchies:
                    log.warning(
                        "running as root without a writable pids cgroup: a fork bomb in a "
                        "converter is bounded only by its wall clock and PID namespace"
                    )
            return self._hierarchies

    @property
    def available(self) -> bool:
        return bool(self.hierarchies())

    def create(self, *, max_tasks: int | None, memory_bytes: int | None) -> Group | None:
        """A new group with the limits set, or None when cgroups are not used here. Raises
        OSError when they are used and this group cannot be made (the caller fails closed)."""
        hierarchies = self.hierarchies()
        if not hierarchies:
            return None
        name = f"j{os.getpid()}-{next(self._ids)}"
        paths: list[Path] = []
        try:
            for h in hierarchies:
                path = h.root / name
                path.mkdir()
                paths.append(path)
                if "pids" in h.controllers:
                    _write(path / "pids.max", str(max_tasks or DEFAULT_TASKS))
                if "memory" in h.controllers and memory_bytes:
                    limit = "memory.max" if h.version == 2 else "memory.limit_in_bytes"
                    _write(path / limit, str(memory_bytes))
        except OSError:
            _remove(tuple(paths))
            raise
        return Group(tuple(paths))

    def sweep(self) -> int:
        """Kill and remove the groups of gateways that are no longer running; how many."""
        removed = 0
        for h in self.hierarchies():
            for path in sorted(h.root.glob("j*-*")):
                owner = path.name[1:].split("-", 1)[0]
                if not owner.isdigit() or int(owner) == os.getpid() or _alive(int(owner)):
                    continue
                _remove((path,))
                removed += not path.exists()
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


CGROUPS = Cgroups()
