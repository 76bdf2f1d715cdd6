"""A private, throw-away Postfix instance for the interoperation tests.

Each instance has its own config, queue and data directories in a temporary directory,
listens on one free loopback port and logs to a file (no syslog needed). It never touches
/etc/postfix or port 25, so a system-wide Postfix (if any) is left alone.

Postfix drops privileges to ``mail_owner`` (user ``postfix``): the directory tree must be
traversable by it, which pytest's 0700 ``tmp_path`` is not, hence ``tempfile.mkdtemp`` plus
explicit modes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

POSTFIX = "/usr/sbin/postfix"
START_TIMEOUT = 30.0

# Only the services a relay and a virtual-mailbox host need; no chroot (column 5 = n).
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

BASE_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {root}/etc
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {name}.test
mydomain = test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
# Next hops in the tests are IP literals; nothing may wait on a resolver.
smtp_dns_support_level = disabled
# Retry quickly if the next hop was not up yet (defaults are minutes).
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""


def postfix_binary() -> str:
    if os.geteuid() != 0:
        # master(8) must start as root (it drops to mail_owner); CI runs as root.
        pytest.skip("starting a private Postfix needs root")
    if not os.access(POSTFIX, os.X_OK) or shutil.which("postconf") is None:
        pytest.fail(
            "postfix not found: install it (DEBIAN_FRONTEND=noninteractive apt-get install "
            "postfix); the interoperation tests need a real Postfix",
            pytrace=False,
        )
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        pytest.fail("user 'postfix' missing: the Debian postfix package creates it", pytrace=False)
    return POSTFIX


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def greets(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(512).startswith(b"220")
    except OSError:
        return False


@dataclass
class Postfix:
    """One running instance; ``stop`` is idempotent."""

    name: str
    root: Path
    port: int
    _stopped: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def master_pid(self) -> int | None:
        path = self.root / "queue" / "pid" / "master.pid"
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        pid = self.master_pid()
        self.command("stop")
        # master waits for its children; anything still there after that is killed by pid.
        if pid is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _layout(root: Path) -> None:
    postfix_uid = pwd.getpwnam("postfix").pw_uid
    for sub in ("etc", "queue", "data"):
        (root / sub).mkdir(mode=0o755)
    # master.lock and the TLS/verify caches live here and are written as mail_owner.
    os.chown(root / "data", postfix_uid, -1)


def start_postfix(name: str, main_cf: str, *, attempts: int = 3) -> Postfix:
    """Start an instance whose main.cf is the base plus ``main_cf`` (``{root}`` expands)."""
    postfix_binary()
    failure = ""
    for _ in range(attempts):  # retry only for a lost race on the port
        root = Path(tempfile.mkdtemp(prefix=f"mugai-pf-{name}-"))
        root.chmod(0o755)
        _layout(root)
        port = free_port()
        instance = Postfix(name, root, port)
        text = BASE_MAIN_CF.format(root=root, name=name) + main_cf.replace("{root}", str(root))
        (root / "etc" / "main.cf").write_text(text, encoding="utf-8")
        (root / "etc" / "master.cf").write_text(
            MASTER_CF.format(listen=f"127.0.0.1:{port}"), encoding="utf-8"
        )
        done = instance.command("start")
        deadline = time.monotonic() + START_TIMEOUT
        while done.returncode == 0 and time.monotonic() < deadline:
            if greets(port):
                return instance
            if instance.master_pid() is None and "fatal" in instance.log:
                break
            time.sleep(0.1)
        log = instance.log
        failure = f"exit {done.returncode}: {done.stdout}{done.stderr}\n{log[-4000:]}"
        instance.stop()
        if "Address already in use" not in log:
            break
    pytest.fail(f"postfix instance {name!r} did not start: {failure}", pytrace=False)


def maildir_messages(maildir: Path) -> list[bytes]:
    new = maildir / "new"
    if not new.is_dir():
        return []
    return [p.read_bytes() for p in sorted(new.iterdir()) if p.is_file()]
