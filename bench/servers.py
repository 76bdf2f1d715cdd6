"""The real servers a benchmark talks to, each in its own process.

Servers run outside the benchmark process so the measuring client never shares an event loop
or the GIL with what it measures; the same holds for the baseline servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO

START_TIMEOUT = 120.0


@dataclass
class Proc:
    process: asyncio.subprocess.Process
    port: int = 0
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()


@dataclass
class Sink(Proc):
    """Arrival times (monotonic, from the sink process) of every message received."""

    arrivals: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            when, size = raw.decode().split()
            self.arrivals.append(float(when))
            self.sizes.append(int(size))
            self.changed.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"sink got {len(self.arrivals)} of {count} messages")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))

    async def stop(self) -> None:
        await super().stop()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def _port_line(process: asyncio.subprocess.Process) -> int:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
    if not line.startswith(b"PORT "):
        raise RuntimeError(f"unexpected first line {line[:80]!r}")
    return int(line.split()[1])


async def start_sink() -> Sink:
    process = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.sink", cwd=REPO, env=_env(), stdout=asyncio.subprocess.PIPE
    )
    sink = Sink(process, await _port_line(process))
    sink.reader = asyncio.create_task(sink._read())
    return sink


async def start_forwarder(relay: str) -> Proc:
    process = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.forwarder", relay, cwd=REPO, env=_env(),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Proc(process, await _port_line(process))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


_LISTENING = re.compile(r"SMTP listening on ([\d.]+):(\d+)")


async def start_gateway(work: Path, relay: str, clamd: str, **sections: dict[str, Any]) -> Proc:
    """`python -m gateway.cli serve --config FILE`; waits for its "SMTP listening" log line."""
    work.mkdir(parents=True, exist_ok=True)
    config: dict[str, dict[str, Any]] = {
        "smtp": {"listen": "127.0.0.1:0", "accepted_domains": ["town.example.lg.jp"]},
        "delivery": {"relay": relay, "retry_schedule": ["2s"]},
        "clamav": {"address": clamd, "timeout": "60s"},
        "storage": {"data_dir": str(work / "data")},
        "admin": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = work / "gateway.toml"
    write_config(path, config)
    log = work / "gateway.log"
    with open(log, "wb") as out:
        process = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "gateway.cli", "serve", "--config", str(path), "--log-level", "INFO",
            cwd=REPO, env=_env(), stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    proc = Proc(process, log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(encoding="utf-8", errors="replace"))
        if match:
            proc.port = int(match.group(2))
            return proc
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    await proc.stop()
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise RuntimeError(f"gateway did not start:\n{tail}")


@contextlib.asynccontextmanager
async def running(*procs: Proc) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            await proc.stop()


@contextlib.contextmanager
def clamd(work: Path) -> Any:
    """A real clamd with the shipped config and signatures (tests.plugins.clamd)."""
    from tests.plugins.clamd import start_clamd

    instance = start_clamd(work / "clamd", tcp=False)
    try:
        yield instance.unix_address
    finally:
        instance.stop()
