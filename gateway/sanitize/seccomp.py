"""The seccomp filter every jailed converter runs under (handed to bubblewrap as BPF).

Built with libseccomp (through ``pyseccomp``, its ctypes binding, API-compatible with the
upstream Python bindings) so that architecture checks and syscall numbers are libseccomp's,
not ours. The default is to allow: converters need a broad, library-dependent set of calls;
what is denied is what no converter needs and what an exploit uses to get out or to reach
something — debugging other processes, mounting, kernel attack surface (bpf, keyrings,
userfaultfd, io_uring, perf), new namespaces, and any socket that is not ``AF_UNIX``.
Denied calls fail with EPERM (no SIGSYS: libraries probing optional features keep working).
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import tempfile

from gateway.errors import IsolationUnavailable

# Calls no converter makes: the process-inspection, mount, kernel-extension and namespace
# families. Listed by name; a name unknown to this libseccomp/arch is skipped.
DENIED: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "personality",
    "uselib",
    "vhangup",
)

# clone flags that create namespaces: a plain fork/thread clone passes, a clone that asks
# for a new namespace fails. clone3 passes its flags in memory, which seccomp cannot read:
# it gets ENOSYS, on which glibc falls back to clone.
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
_CLONE_NEW |= 0x40000000 | 0x00000080  # CLONE_NEWNET, CLONE_NEWTIME


@functools.lru_cache(maxsize=1)
def filter_bpf() -> bytes:
    """The compiled filter (cached); IsolationUnavailable when libseccomp cannot build it."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # OSError: libseccomp.so.2 missing
        raise IsolationUnavailable(f"libseccomp unavailable: {exc}") from exc
    try:
        filt = sc.SyscallFilter(sc.ALLOW)
        for name in DENIED:
            try:
                filt.add_rule(sc.ERRNO(errno.EPERM), name)
            except (RuntimeError, ValueError, OSError):
                continue  # not a syscall on this architecture
        for bit in _bits(_CLONE_NEW):
            filt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
        filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        # Only AF_UNIX sockets (soffice's UNO pipe, socketpair): no IP, netlink, packet…
        filt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
        with tempfile.TemporaryFile() as fh:
            filt.export_bpf(fh)
            fh.seek(0)
            data = fh.read()
    except (RuntimeError, ValueError, OSError) as exc:
        raise IsolationUnavailable(f"seccomp filter could not be built: {exc}") from exc
    if not data or len(data) % 8:
        raise IsolationUnavailable("seccomp filter is empty or malformed")
    return data


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(mask.bit_length()) if mask >> i & 1]


def filter_fd() -> int:
    """A fresh memfd holding the filter, positioned at 0; the caller passes and closes it."""
    data = filter_bpf()
    fd = os.memfd_create("mugai-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
