"""A hostile converter, run INSIDE the jail (its source is fed on stdin, nothing of tests/ is
visible in there). Every attempt an exploit would make is tried for real; the result is one
JSON object on stdout: attempt → "REACHED ..." or "blocked: <error>".

argv: JSON with the host paths and ports to go after (data_dir, spool, outbox, db, a file
outside the job, a TCP port and a Unix socket of the gateway's services, a token).
"""

import ctypes
import errno
import json
import os
import socket
import sys
import time

TARGETS = json.loads(sys.argv[1])
results = {}


def attempt(name, fn):
    try:
        got = fn()
    except OSError as exc:
        results[name] = "blocked: " + (errno.errorcode.get(exc.errno or 0, "?")) + " " + str(exc)
    except MemoryError:
        results[name] = "blocked: MemoryError"
    except Exception as exc:  # noqa: BLE001 - report, never crash the probe
        results[name] = "blocked: " + type(exc).__name__ + " " + str(exc)
    else:
        results[name] = "REACHED " + str(got)[:200]


def write(path):
    with open(path, "wb") as fh:
        fh.write(b"owned")
    return path


def read(path):
    with open(path, "rb") as fh:
        return fh.read(64)


def tcp(port):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return port


def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", port))
    return port


def unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    return path


libc = ctypes.CDLL(None, use_errno=True)


def syscall_result(value):
    if value == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return value


def ptrace_parent():
    PTRACE_ATTACH = 16
    return syscall_result(libc.ptrace(PTRACE_ATTACH, os.getppid(), None, None))


def ptrace_host_pid1():
    return syscall_result(libc.ptrace(16, 1, None, None))


def new_userns():
    CLONE_NEWUSER = 0x10000000
    return syscall_result(libc.unshare(CLONE_NEWUSER))


def mount_proc():
    return syscall_result(libc.mount(b"proc", b"/tmp", b"proc", 0, None))


def fill_tmp():
    written = 0
    chunk = b"\0" * (1 << 20)
    with open("/tmp/fill", "wb") as fh:
        try:
            while written < TARGETS["fill_cap"]:
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
        finally:
            TARGETS["filled"] = written
    return written


def memory():
    block = bytearray(TARGETS["memory_bytes"])
    return len(block)


def fork_bomb():
    started = 0
    for _ in range(TARGETS["forks"]):
        pid = os.fork()
        if pid == 0:
            os.execv(
                sys.executable,
                [sys.executable, "-c", "import time; time.sleep(1000)", TARGETS["token"]],
            )
        started += 1
    return started


def double_fork():
    # Classic daemonisation: fork, setsid, fork again, parent exits: a process of no job.
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(
                sys.executable,
                [sys.executable, "-c", "import time; time.sleep(1000)", TARGETS["token"]],
            )
        os._exit(0)
    os.waitpid(pid, 0)
    return "daemon started"


def host_pids():
    visible = [p for p in os.listdir("/proc") if p.isdigit()]
    if len(visible) > TARGETS["max_visible_pids"]:
        return visible
    raise OSError(errno.ESRCH, f"only the jail's {len(visible)} processes are visible")


for key in ("data_dir", "spool", "outbox"):
    attempt(f"write_{key}", lambda key=key: write(os.path.join(TARGETS[key], "owned.eml")))
attempt("write_usr", lambda: write("/usr/owned"))
attempt("write_root", lambda: write("/owned"))
attempt("read_db", lambda: read(TARGETS["db"]))
attempt("read_outside", lambda: read(TARGETS["outside"]))
attempt("read_config", lambda: read(TARGETS["config"]))
attempt("read_shadow", lambda: read("/etc/shadow"))
attempt("see_host_processes", host_pids)
attempt("tcp_clamd", lambda: tcp(TARGETS["tcp_port"]))
attempt("tcp_admin", lambda: tcp(TARGETS["admin_port"]))
attempt("udp_loopback", lambda: udp(TARGETS["tcp_port"]))
attempt("unix_clamd", lambda: unix(TARGETS["unix_socket"]))
attempt("unix_abstract", lambda: unix("\0" + TARGETS["abstract"]))
attempt("ptrace_parent", ptrace_parent)
attempt("ptrace_pid1", ptrace_host_pid1)
attempt("unshare_user", new_userns)
attempt("mount", mount_proc)
attempt("fill_tmp", fill_tmp)
results["filled_bytes"] = TARGETS.get("filled", 0)
attempt("memory", memory)
attempt("double_fork", double_fork)
attempt("fork_bomb", fork_bomb)
print(json.dumps(results), flush=True)
if TARGETS.get("linger"):
    time.sleep(1000)
