"""The one settings model, validated at startup and passed down explicitly.

Nothing reads configuration at import time. Sources, highest priority first:
environment (``MUGAI_<SECTION>__<KEY>``), then the TOML file, then the
embedded defaults below (which alone make a complete working config).
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: Any) -> float:
    """'90s', '5m', '1h', '5d' or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h, 5d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError("duration must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):  # [::1]:25
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def _check_hostport(value: str) -> str:
    if value.startswith("unix:"):
        return value
    host, port = split_hostport(value, 0)
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


HostPort = Annotated[str, BeforeValidator(lambda v: _check_hostport(str(v)))]


class _Section(BaseModel):
    # A typo in a key must stop the start, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class SmtpSettings(_Section):
    listen: HostPort = "127.0.0.1:2525"
    hostname: str = "mugai.example.lg.jp"
    accepted_domains: list[str] = ["town.example.lg.jp"]
    max_message_bytes: int = Field(26_214_400, gt=0)
    max_recipients: int = Field(100, gt=0)
    # aiosmtpd refuses lines over 1001 octets by default; real mail has longer ones.
    max_line_bytes: int = Field(65_536, ge=1001)
    command_timeout: Duration = 300.0
    max_connections: int = Field(200, gt=0)
    # Fairness (issue 13): one client address may hold this many connections, send this many
    # commands per session and stay this long; over it, 421 4.7.0 to that client only.
    # Postfix opens at most 20 parallel connections to one destination and reuses one for
    # at most 300 s by default, far below these.
    # Secret of the loop token in our Received lines (empty ⇒ a random <data_dir>/loop.key);
    # set the same value on every node so a loop through several nodes counts.
    loop_key: SecretStr = SecretStr("")
    max_connections_per_client: int = Field(50, gt=0)
    max_commands: int = Field(20_000, gt=0)
    max_session_duration: Duration = 3600.0
    # Accept no new mail (451) while this many jobs wait in the spool.
    max_backlog: int = Field(10_000, gt=0)

    @field_validator("accepted_domains")
    @classmethod
    def _lower(cls, domains: list[str]) -> list[str]:
        return [d.strip().lower().rstrip(".") for d in domains if d.strip()]


class DeliverySettings(_Section):
    # Empty ⇒ Maildir in <data_dir>/outbox. Embedded default is empty so `mugai serve` alone
    # shows sanitized mail arriving with no other server; production sets the LGWAN relay.
    relay: str = ""
    retry_schedule: list[Duration] = [60.0, 300.0, 900.0, 3600.0]
    max_queue_lifetime: Duration = 5 * 86400.0
    timeout: Duration = 60.0
    require_tls: bool = False
    # CA bundle to verify the relay's certificate (empty ⇒ the system store).
    tls_ca_file: Path | None = None
    # Jobs processed concurrently; mostly waiting on clamd, the database and the relay.
    workers: int = Field(8, gt=0)
    # When the store cannot record a job's outcome, the job waits this long in the spool.
    store_retry: Duration = 30.0
    # A job claimed this many times when the process died is quarantined as crash_loop.
    max_recoveries: int = Field(3, gt=0)
    # /readyz reports the workers stalled when jobs wait and none finished for this long.
    stall_after: Duration = 900.0

    @field_validator("relay")
    @classmethod
    def _relay(cls, value: str) -> str:
        return _check_hostport(value) if value.strip() else ""

    @field_validator("retry_schedule")
    @classmethod
    def _nonempty(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("retry_schedule needs at least one wait")
        return value


class ClamavSettings(_Section):
    address: HostPort = "127.0.0.1:3310"
    timeout: Duration = 60.0
    chunk_bytes: int = Field(65_536, gt=0)
    # The clamd StreamMaxLength the operator runs (the shipped config/clamd.conf: 100M). No
    # message or file limit may exceed it (start-up and check-config refuse): clamd would
    # refuse such a stream, and it would be quarantined as too_large_to_scan.
    max_stream_bytes: int = Field(100 * 1024 * 1024, gt=0)


def _have(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


class StorageSettings(_Section):
    data_dir: Path = Path("var")
    database_url: SecretStr = SecretStr("")

    @field_validator("database_url")
    @classmethod
    def _driver_installed(cls, value: SecretStr) -> SecretStr:
        # Refused at start-up and by check-config, not at the first write: the postgres
        # extra (psycopg) is optional, SQLite needs nothing.
        url = value.get_secret_value()
        if url.startswith(("postgresql", "postgres:")) and not _have("psycopg"):
            raise ValueError("PostgreSQL needs the postgres extra: pip install 'mugai[postgres]'")
        return value


class AdminSettings(_Section):
    listen: HostPort = "127.0.0.1:8025"
    # Host header values the listener answers (a DNS-rebinding page sends its own name);
    # empty ⇒ the listen host, localhost, 127.0.0.1 and ::1. Others get 400 on every route.
    allowed_hosts: list[str] = []
    # Any request body (JSON, forms) beyond this is cut while it streams (413); uploads get
    # [files] max_bytes plus room for the multipart framing instead.
    max_body_bytes: int = Field(1_048_576, gt=0)
    # A request's headers must arrive within header_timeout of its first byte (or of the
    # connection); its whole body within body_timeout; idle keep-alive is closed after
    # keepalive_timeout. Slower clients are dropped (slowloris).
    header_timeout: Duration = 10.0
    body_timeout: Duration = 120.0
    keepalive_timeout: Duration = 5.0
    max_connections: int = Field(200, gt=0)  # beyond it: 503
    uploads_per_token: int = Field(2, gt=0)  # concurrent file uploads per token (429 beyond)
    sessions_per_user: int = Field(5, gt=0)  # a new console sign-in ends that user's oldest
    # Console sign-in attempts per source address and per token within login_window (429).
    login_attempts_per_address: int = Field(20, gt=0)
    login_attempts_per_token: int = Field(5, gt=0)
    login_window: Duration = 60.0
    # Two-person rule between people linked by an identity change: a person who created,
    # changed or issued a token to the other within this window cannot decide their request.
    identity_cooldown: Duration = 72 * 3600.0

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return [h.strip().lower().strip("[]").rstrip(".") for h in hosts if h.strip()]

    def hosts(self) -> frozenset[str]:
        """The effective Host allowlist (names and addresses, without ports)."""
        if self.allowed_hosts:
            return frozenset(self.allowed_hosts)
        host = split_hostport(self.listen, 8025)[0].lower()
        return frozenset({host, "localhost", "127.0.0.1", "::1"})


class SanitizeSettings(_Section):
    max_parts: int = Field(200, gt=0)
    max_depth: int = Field(10, gt=0)
    max_header_bytes: int = Field(262_144, gt=0)
    max_archive_members: int = Field(500, gt=0)
    max_archive_depth: int = Field(3, gt=0)
    max_unpacked_bytes: int = Field(200 * 1024 * 1024, gt=0)
    max_ratio: float = Field(100.0, gt=1)
    max_pages: int = Field(300, gt=0)
    max_pages_per_message: int = Field(1000, gt=0)
    max_pixels: int = Field(50_000_000, gt=0)
    dpi: int = Field(150, ge=36, le=600)
    seconds_per_page: Duration = 10.0
    min_seconds: Duration = 60.0
    memory_mb: int = Field(2048, gt=0)
    # Processes rendering or converting at once (0 ⇒ the number of cores).
    processes: int = Field(0, ge=0)
    office_pool: int = Field(1, ge=0)  # warm LibreOffice listeners (0 ⇒ cold start each time)
    # "required": every converter runs in the bwrap+seccomp jail, or nothing is converted
    # (isolation_unavailable). "auto" is an old alias of "required". "off": no jail (loudly logged).
    network_isolation: Literal["auto", "required", "off"] = "required"
    # issue 16: QR codes/barcodes in rebuilt images and PDFs: "list" shows each decoded
    # text (disarmed) in the notice; "mask" also paints over it in rebuilt images.
    qr: Literal["list", "mask"] = "list"


class NoticeSettings(_Section):
    # Tell recipients when a whole message was withheld (virus, unparseable).
    withheld_notice: bool = True
    contact: str = "情報システム担当 / IT administrator"


class RetentionSettings(_Section):
    delivered: Duration = 90 * 86400.0
    quarantined: Duration = 180 * 86400.0
    released: Duration = 180 * 86400.0
    deleted: Duration = 0.0
    interval: Duration = 3600.0


class TlsSettings(_Section):
    cert_file: Path | None = None
    key_file: Path | None = None


class WatchSettings(_Section):
    inbox: Path | None = None
    outbox: Path | None = None
    failed: Path | None = None
    interval: Duration = 2.0
    # Largest file taken from the inbox (larger ones go to failed/).
    max_file_bytes: int = Field(100 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _separate(self) -> WatchSettings:
        if self.inbox is None and self.outbox is None:
            return self
        if self.inbox is None or self.outbox is None:
            raise ValueError("watch needs both inbox and outbox")
        folders = [p.resolve() for p in (self.inbox, self.outbox, self.failed) if p is not None]
        for i, a in enumerate(folders):
            for b in folders[i + 1 :]:
                # Overlap would feed results back in, or put originals on the LGWAN side.
                if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                    raise ValueError(f"watch folders must not overlap: {a} and {b}")
        return self


class FilesSettings(_Section):
    # Largest upload to POST /api/v1/files (413 above).
    max_bytes: int = Field(100 * 1024 * 1024, gt=0)


class UnlockSettings(_Section):
    """PPAP unlock (POST /api/v1/messages/{id}/unlock): an operator supplies the password."""

    enabled: bool = True
    # Wrong passwords per message within `window`; then 429 until the window has passed.
    max_wrong_passwords: int = Field(5, gt=0, le=100)
    window: Duration = 900.0
    # Wall clock for the decrypting child (the sanitizers keep their own limits).
    seconds: Duration = 60.0


class ReleaseSettings(_Section):
    # Originals quarantined as virus_found / virus_found_output never cross to the LGWAN side
    # unless this is true; even then the request and the approval must name the signature.
    allow_infected: bool = False
    # An approval with no relay answer for this long is taken as interrupted by a crash and
    # may be approved again (longer than any relay delivery can take).
    stale_approval: Duration = 15 * 60.0


class AuditSettings(_Section):
    # HMAC key for the audit chain; NOT in the database. Created 0600 by `mugai audit init-key`
    # (or at first start). Empty ⇒ <data_dir>/keys/audit.key.
    key_file: Path | None = None
    # Append-only file of chain heads, written and fsynced on every entry; keep it on another
    # disk or mount than the database. Empty ⇒ <data_dir>/audit-anchor.
    anchor_dir: Path | None = None
    # Also send each anchor line to syslog: a unix socket path (/dev/log) or host:port (UDP).
    syslog: str = Field("", pattern=r"^(|/.+|\[?[0-9A-Za-z.:-]+\]?:[0-9]{1,5})$")


class ReportSettings(_Section):
    # Month boundaries of `mugai report` (a municipal month ends at midnight JST).
    timezone: str = "Asia/Tokyo"
    top_senders: int = Field(20, gt=0, le=1000)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone: {value!r}") from exc
        return value


class SyslogSettings(_Section):
    # udp:host:port | tcp:host:port | unix:/dev/log; empty ⇒ no forwarding.
    target: str = ""
    facility: Literal[
        "kern", "user", "mail", "daemon", "auth", "syslog", "authpriv",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ] = "local0"  # fmt: skip
    app_name: str = "mugai"
    hostname: str = ""  # empty ⇒ [smtp] hostname
    # RFC 5426: receivers must take 480 octets and should take 2048 over UDP.
    max_bytes: int = Field(2048, ge=480, le=65_000)
    timeout: Duration = 5.0
    interval: Duration = 5.0

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        scheme, _, rest = value.partition(":")
        if scheme not in ("udp", "tcp", "unix") or not rest:
            raise ValueError(
                f"syslog target must be udp:host:port, tcp:host:port or unix:/path: {value!r}"
            )
        if scheme != "unix":
            host, port = split_hostport(rest, 514)
            if not host or not 0 < port <= 65535:
                raise ValueError(f"syslog target needs host:port: {value!r}")
        return value


class AuthSettings(_Section):
    # Verify DKIM signatures of the original (DNS look-ups for the signers' keys).
    verify_dkim: bool = True
    # authserv-ids whose Authentication-Results (SPF/DMARC) are believed: the upstream MTA or
    # the prefectural security cloud. Empty ⇒ none are believed.
    trusted_authserv_ids: list[str] = []
    # Only headers above this many Received lines (from the top) count as the trusted hop's.
    trusted_hops: int = Field(1, ge=1, le=10)
    # Prepended to the subject when the verdict is "suspicious" (e.g. "【なりすましの疑い】").
    subject_tag: str = ""
    # Resolvers for DKIM keys (empty ⇒ the system's); the timeout bounds the whole look-up.
    nameservers: list[str] = []
    dns_timeout: Duration = 2.0
    # Evaluate SPF (peer IP, HELO, MAIL FROM) and DMARC ourselves. Only where the connecting
    # address is the real sender (not behind a relay); a trusted upstream header still wins.
    evaluate: bool = False
    # The whole SPF evaluation (every look-up of includes/redirects) within this bound.
    evaluate_timeout: Duration = 5.0

    @field_validator("evaluate_timeout", "dns_timeout")
    @classmethod
    def _bounded_wait(cls, value: float) -> float:
        if not 0 < value <= 60:
            raise ValueError("must be more than 0 and at most 60 seconds")
        return value

    @field_validator("subject_tag")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(c in value for c in "\r\n\x00") or len(value) > 64:
            raise ValueError("subject_tag must be one short line")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MUGAI_", env_nested_delimiter="__", extra="forbid"
    )

    smtp: SmtpSettings = SmtpSettings()
    delivery: DeliverySettings = DeliverySettings()
    clamav: ClamavSettings = ClamavSettings()
    storage: StorageSettings = StorageSettings()
    admin: AdminSettings = AdminSettings()
    sanitize: SanitizeSettings = SanitizeSettings()
    notice: NoticeSettings = NoticeSettings()
    retention: RetentionSettings = RetentionSettings()
    tls: TlsSettings = TlsSettings()
    watch: WatchSettings = WatchSettings()
    files: FilesSettings = FilesSettings()
    unlock: UnlockSettings = UnlockSettings()
    release: ReleaseSettings = ReleaseSettings()
    audit: AuditSettings = AuditSettings()
    report: ReportSettings = ReportSettings()  # issue 16
    syslog: SyslogSettings = SyslogSettings()  # issue 16
    auth: AuthSettings = AuthSettings()  # issue 16

    @model_validator(mode="after")
    def _limits_agree(self) -> Settings:
        # Issue 13: a stream clamd refuses can never be scanned; refuse the configuration
        # rather than quarantine every such mail or file as too_large_to_scan.
        stream = self.clamav.max_stream_bytes
        for key, value in (
            ("smtp.max_message_bytes", self.smtp.max_message_bytes),
            ("files.max_bytes", self.files.max_bytes),
            ("watch.max_file_bytes", self.watch.max_file_bytes),
        ):
            if value > stream:
                raise ValueError(
                    f"{key} ({value}) exceeds clamav.max_stream_bytes ({stream}): raise clamd's "
                    "StreamMaxLength and clamav.max_stream_bytes, or lower the limit"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed as init kwargs).
        return (env_settings, init_settings)

    @property
    def spool_dir(self) -> Path:
        return self.storage.data_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        return self.storage.data_dir / "outbox"

    @property
    def audit_key_file(self) -> Path:
        return self.audit.key_file or self.storage.data_dir / "keys" / "audit.key"

    @property
    def audit_anchor_dir(self) -> Path:
        return self.audit.anchor_dir or self.storage.data_dir / "audit-anchor"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from an optional TOML file plus the environment."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Settings(**data)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings with secrets masked, for check-config."""
    return settings.model_dump(mode="json")  # SecretStr dumps as '**********'
