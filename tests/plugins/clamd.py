"""pytest plugin: a real clamd for the tests.

Registered in tests/conftest.py (``pytest_plugins = ["tests.plugins.clamd"]``).
clamd runs from the shipped template ``config/clamd.conf`` with the shipped
signatures ``config/clamav`` (EICAR only), in a temporary directory, on a unix
socket and a free loopback TCP port, so parallel runs never collide.

Fixtures:
- ``clamd_address``     ``"unix:/tmp/.../clamd.sock"`` (session)
- ``clamd_tcp_address`` ``"127.0.0.1:<port>"`` (session, same clamd)
- ``clamd_factory``     starts extra instances with config overrides (session; all
  stopped at the end), e.g. ``clamd_factory(StreamMaxLength="256K")``.

A missing clamd binary fails the test: CI installs clamav-daemon, so its absence
is a setup error, not a reason to skip the virus checks.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "config" / "clamd.conf"
SIGNATURES = REPO / "config" / "clamav"

# Built from two halves so this source file itself does not trip a virus scanner.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# clamd adds ".UNOFFICIAL" to names from unsigned databases such as ours.
EICAR_SIGNATURE = "Mugai.Test.EICAR.UNOFFICIAL"

START_TIMEOUT = 60.0  # seconds; the local database loads in well under one
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux; keep a margin


def clamd_binary() -> str:
    env = os.environ.get("MUGAI_CLAMD")
    if env:
        if not os.access(env, os.X_OK):
            pytest.fail(f"MUGAI_CLAMD={env} is not an executable clamd", pytrace=False)
        return env
    if os.access("/usr/sbin/clamd", os.X_OK):
        return "/usr/sbin/clamd"
    found = shutil.which("clamd")
    if found is None:
        pytest.fail(
            "clamd not found (looked at $MUGAI_CLAMD, /usr/sbin/clamd and PATH): "
            "install clamav-daemon (apt-get install clamav-daemon); "
            "the virus tests need a real clamd",
            pytrace=False,
        )
    return found


def render_config(data_dir: Path, overrides: dict[str, str | None] | None = None) -> str:
    """The shipped template with absolute paths; ``overrides`` replace (None: drop) keys."""
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("@CONFIG_DIR@", str(REPO / "config")).replace("@DATA_DIR@", str(data_dir))
    overrides = overrides or {}
    lines = [
        line
        for line in text.splitlines()
        if not line.strip() or line.lstrip().startswith("#") or line.split()[0] not in overrides
    ]
    lines += [f"{key} {value}" for key, value in overrides.items() if value is not None]
    return "\n".join(lines) + "\n"


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping_sync(address: str, timeout: float = 2.0) -> bool:
    """Blocking zPING, for the fixtures (which run outside any event loop)."""
    try:
        if address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = address[len("unix:") :]
        else:
            host, port = address.rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = (host, int(port))
        with sock:
            sock.settimeout(timeout)
            sock.connect(target)
            sock.sendall(b"zPING\0")
            reply = b""
            while not reply.endswith(b"\0") and len(reply) < 64:
                data = sock.recv(64)
                if not data:
                    break
                reply += data
        return reply == b"PONG\0"
    except OSError:
        return False


@dataclass
class Clamd:
    """One running clamd started by the plugin."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    unix_address: str
    tcp_address: str | None
    config: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def log(self) -> str:
        parts = []
        for name in ("clamd.log", "clamd.out"):
            path = self.data_dir / name
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _socket_dir(preferred: Path) -> Path:
    # A deep --basetemp would overflow sun_path; fall back to a short /tmp directory.
    if len(str(preferred / "clamd.sock")) <= _SUN_PATH_MAX:
        return preferred
    return Path(tempfile.mkdtemp(prefix="mugai-clamd-"))


def start_clamd(
    data_dir: Path,
    *,
    tcp: bool = True,
    overrides: dict[str, str | None] | None = None,
    attempts: int = 3,
) -> Clamd:
    """Start clamd in the foreground and wait until it answers PING on every socket."""
    binary = clamd_binary()
    data_dir = _socket_dir(data_dir)
    (data_dir / "clamd-tmp").mkdir(parents=True, exist_ok=True)
    failure = ""
    for _ in range(attempts):  # retry only for a lost race on the TCP port
        settings: dict[str, str | None] = {"Foreground": "yes"}
        tcp_address = None
        if tcp:
            port = free_tcp_port()
            settings |= {"TCPSocket": str(port), "TCPAddr": "127.0.0.1"}
            tcp_address = f"127.0.0.1:{port}"
        else:
            settings |= {"TCPSocket": None, "TCPAddr": None}
        settings |= overrides or {}
        config = data_dir / "clamd.conf"
        config.write_text(render_config(data_dir, settings), encoding="utf-8")
        for stale in ("clamd.log", "clamd.out"):
            (data_dir / stale).unlink(missing_ok=True)
        with open(data_dir / "clamd.out", "wb") as out:
            process = subprocess.Popen(
                [binary, "--foreground", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        clamd = Clamd(process, data_dir, f"unix:{data_dir / 'clamd.sock'}", tcp_address, config)
        addresses = [clamd.unix_address] + ([tcp_address] if tcp_address else [])
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if all(ping_sync(a) for a in addresses):
                return clamd
            if "Cannot bind" in clamd.log:  # lost the port race: clamd stays up on unix only
                break
            time.sleep(0.05)
        exited = process.poll()
        clamd.stop()
        if exited is not None:
            failure = f"exited with status {exited}"
        elif "Cannot bind" in clamd.log:
            failure = "could not bind its sockets"
        else:
            failure = f"did not answer PING within {START_TIMEOUT:g}s"
        log = clamd.log
        errors = [line for line in log.splitlines() if "ERROR" in line]
        failure += "\n" + ("\n".join(errors[-20:]) if errors else log[-4000:])
        if "Cannot bind" not in log:
            break
    pytest.fail(f"clamd ({binary}, config {data_dir / 'clamd.conf'}) {failure}", pytrace=False)


@pytest.fixture(scope="session")
def clamd_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Clamd]]:
    """Start extra clamd instances: ``clamd_factory(tcp=False, StreamMaxLength="256K")``."""
    started: list[Clamd] = []

    def factory(*, tcp: bool = True, **overrides: str | None) -> Clamd:
        clamd = start_clamd(tmp_path_factory.mktemp("clamd"), tcp=tcp, overrides=overrides)
        started.append(clamd)
        return clamd

    try:
        yield factory
    finally:
        for clamd in started:
            clamd.stop()


@pytest.fixture(scope="session")
def clamd_instance(clamd_factory: Callable[..., Clamd]) -> Clamd:
    return clamd_factory(tcp=True)


@pytest.fixture(scope="session")
def clamd_address(clamd_instance: Clamd) -> str:
    """``"unix:/path/clamd.sock"`` of a real clamd with the shipped config and signatures."""
    return clamd_instance.unix_address


@pytest.fixture(scope="session")
def clamd_tcp_address(clamd_instance: Clamd) -> str:
    """``"127.0.0.1:<free port>"`` of the same clamd."""
    assert clamd_instance.tcp_address is not None
    return clamd_instance.tcp_address
