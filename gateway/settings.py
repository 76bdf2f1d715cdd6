"""The one settings model, validated at startup and passed down explicitly.

Nothing reads configuration at import time. Sources, highest priority first:
environment (``MUGAI_<SECTION>__<KEY>``), then the TOML file, then the
embedded defaults below (which alone make a complete working config).
"""

from __future__ import annotations

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


class StorageSettings(_Section):
    data_dir: Path = Path("var")
    database_url: SecretStr = SecretStr("")


class AdminSettings(_Section):
    listen: HostPort = "127.0.0.1:8025"


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
