"""The composition root: settings → adapters (store, spool, clamd, relay, office, sanitizer
registry, timers) → the SMTP listener, workers, watcher and admin API, in one loop.

Nothing else builds an adapter: the API is handed this object through its ports protocol
(``gateway.api.deps.GatewayPorts``) and never imports this module; tests inject an office
converter or a sanitizer registry through the constructor instead of patching globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.ingress.smtp import start_smtp
from gateway.ingress.watch import FolderWatcher
from gateway.loopmark import load_key
from gateway.pipeline import Pipeline
from gateway.relay import MaildirRelay, Relay, SmtpRelay
from gateway.sanitize import sandbox
from gateway.sanitize.base import OfficeConverter, Sanitizer
from gateway.sanitize.jail import isolation_status
from gateway.sanitize.registry import REGISTRY
from gateway.scan.clamd import ClamdScanner
from gateway.settings import Settings
from gateway.spool import Spool
from gateway.store.releases import Policy
from gateway.store.repository import Store, database_url
from gateway.store.retention import purge_loop
from gateway.syslog import SyslogForwarder  # issue 16
from gateway.worker import Worker, readiness

log = logging.getLogger(__name__)


def make_relay(settings: Settings) -> Relay:
    if settings.delivery.relay:
        return SmtpRelay(
            settings.delivery.relay,
            hostname=settings.smtp.hostname,
            timeout=settings.delivery.timeout,
            require_tls=settings.delivery.require_tls,
            ca_file=settings.delivery.tls_ca_file,
        )
    return MaildirRelay(settings.outbox_dir)


def release_policy(settings: Settings) -> Policy:
    return Policy(
        allow_infected=settings.release.allow_infected,
        stale_approval=settings.release.stale_approval,
    )


def make_store(settings: Settings) -> Store:
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(
        database_url(settings.storage.database_url.get_secret_value(), settings.storage.data_dir),
        identity_cooldown=settings.admin.identity_cooldown,
        policy=release_policy(settings),
    )
    store.create_schema()
    # Audit entries are MACed with a key outside the database; refused to start without it.
    store.seal_audit(
        settings.audit_key_file, settings.audit_anchor_dir, create=True,
        syslog=settings.audit.syslog,
    )  # fmt: skip
    return store


def make_office(settings: Settings) -> OfficeConverter:
    from gateway.sanitize.office import OfficePool

    return OfficePool.from_settings(settings.sanitize)


class Gateway:
    """Everything `mugai serve` runs; tests start it with port 0 listeners."""

    def __init__(
        self,
        settings: Settings,
        *,
        office: OfficeConverter | None = None,
        registry: Mapping[str, Sanitizer] = REGISTRY,
    ) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.store = make_store(settings)
        self.scanner = ClamdScanner(
            settings.clamav.address,
            timeout=settings.clamav.timeout,
            chunk_bytes=settings.clamav.chunk_bytes,
            max_stream_bytes=settings.clamav.max_stream_bytes,
        )
        self.relay = make_relay(settings)
        self._own_office = office is None
        self.office = office
        self.wakeup = asyncio.Event()
        self.pipeline = Pipeline(settings, self.scanner, office, registry=registry)
        self.pipeline.loop_key = load_key(settings)
        self.worker = Worker(
            settings, self.spool, self.store, self.pipeline, self.relay, self.wakeup
        )
        self.smtp_server: asyncio.base_events.Server | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self.watcher: FolderWatcher | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.syslog: SyslogForwarder | None = None  # issue 16
        self._syslog_task: asyncio.Task[None] | None = None  # issue 16
        self._retention_task: asyncio.Task[None] | None = None

    async def worker_problems(self) -> dict[str, str]:
        """For /readyz: which of workers / progress / store writes / spool is failing."""
        if self._worker_task is None:
            return {"workers": "not started"}
        if self._worker_task.done():
            return {"workers": "worker supervisor ended"}
        ready = await asyncio.to_thread(self.spool.ready)
        return readiness(self.worker.health, ready, self.settings.delivery.stall_after)

    @property
    def smtp_address(self) -> tuple[str, int]:
        assert self.smtp_server is not None
        sock = self.smtp_server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def start(self, *, timers: bool = True) -> None:
        """``timers=False``: no retention purge (tests that count records over a short run)."""
        # Spool writes, database calls and clamd I/O go through the loop's default executor;
        # size it for bursts rather than asyncio's cores+4 (sanitizing has its own pool).
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=64, thread_name_prefix="mugai-io")
        )
        recovered = self.spool.recover()
        if recovered:
            log.warning("job=- recovered %d jobs claimed before a restart", recovered)
        if self.office is None:
            # Lazy: LibreOffice starts on the first document (serve() warms it up).
            self.office = make_office(self.settings)
            self.pipeline.office = self.office
        self.smtp_server = await start_smtp(self.settings, self.spool, self.wakeup)
        host, port = self.smtp_address
        log.info("job=- SMTP listening on %s:%d", host, port)
        self._worker_task = asyncio.create_task(
            self.worker.run(self.settings.delivery.workers), name="workers"
        )
        if self.settings.watch.inbox is not None:
            self.watcher = FolderWatcher(self.settings.watch, self.spool, self.wakeup)
            self._watch_task = asyncio.create_task(self.watcher.run(), name="watch")
        if self.settings.syslog.target:  # issue 16: RFC 5424 forwarding
            self.syslog = SyslogForwarder(self.settings, self.store)
            self._syslog_task = asyncio.create_task(self.syslog.run(), name="syslog")
        if timers:
            self._retention_task = asyncio.create_task(
                purge_loop(self.store, self.settings.retention), name="retention"
            )

    async def stop(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retention_task
        if self.syslog is not None and self._syslog_task is not None:  # issue 16
            self.syslog.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._syslog_task, 10)
        if self.watcher is not None:
            self.watcher.stop()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
        if self.smtp_server is not None:
            self.smtp_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.smtp_server.wait_closed(), 5)
        self.worker.stop()
        if self._worker_task is not None:
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker_task
        self.pipeline.close()
        with contextlib.suppress(Exception):
            await self.relay.close()
        # Claimed jobs go back to the queue on the next start (Spool.recover).
        close = getattr(self.office, "close", None)
        if self._own_office and callable(close):
            await asyncio.to_thread(close)
        self.store.close()


class InstanceLocked(Exception):
    """Another ``mugai serve`` holds this data directory."""


LOCK_FILE = "instance.lock"


class InstanceLock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # the kernel drops the lock with the descriptor (also on kill -9)
            self.fd = -1


def lock_instance(data_dir: Path) -> InstanceLock:
    """An exclusive lock on ``<data_dir>/instance.lock`` for the life of the process. A second
    instance on the same directory would recover (move back and count) the first one's claimed
    jobs, so both deliver them, and reap its converters: it must refuse before anything."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InstanceLocked(f"another mugai serve is running on {data_dir}") from None
    except OSError:
        os.close(fd)
        raise
    return InstanceLock(fd)


async def serve(settings: Settings) -> None:
    instance = lock_instance(settings.storage.data_dir)  # before anything touches the spool
    try:
        await _serve(settings)
    finally:
        instance.close()


async def _serve(settings: Settings) -> None:
    from gateway.api.server import start_admin  # the API's imports only when it is served

    # issue 11/13: say whether converters can run; clear what a previous run left.
    sandbox.set_instance(settings.storage.data_dir)
    await asyncio.to_thread(sandbox.reap_leftovers)
    await asyncio.to_thread(isolation_status, settings.sanitize.network_isolation)
    gateway = Gateway(settings)
    await gateway.start()
    warm = getattr(gateway.office, "start", None)
    if callable(warm):
        asyncio.get_running_loop().run_in_executor(None, warm)
    admin = await start_admin(settings, gateway)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("job=- shutting down")
    await admin.stop()
    await gateway.stop()


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # aiosmtpd logs every SMTP command line (addresses, peers) without our job ids;
    # our handler logs what operators need, so keep the library to warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def default_config_path() -> Path | None:
    path = Path("config/gateway.toml")
    return path if path.exists() else None
