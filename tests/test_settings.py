from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import load_settings, masked_dump, parse_duration

REPO = Path(__file__).resolve().parents[1]


def test_embedded_defaults_are_complete() -> None:
    s = load_settings()
    assert s.smtp.listen == "127.0.0.1:2525"
    assert s.delivery.relay == ""  # outbox Maildir: works with no other server
    assert s.delivery.retry_schedule == [60, 300, 900, 3600]
    assert s.delivery.max_queue_lifetime == 5 * 86400


def test_example_config_loads_and_covers_every_key() -> None:
    s = load_settings(REPO / "config" / "gateway.example.toml")
    assert s.delivery.relay == "127.0.0.1:2526"
    text = (REPO / "config" / "gateway.example.toml").read_text(encoding="utf-8")
    for section, values in s.model_dump().items():
        assert f"[{section}]" in text, section
        for key in values:
            assert f"{key} =" in text or f"# {key} =" in text, f"{section}.{key} undocumented"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[smtp]\nlisten = "127.0.0.1:2600"\nhostname = "h.example"\n')
    monkeypatch.setenv("MUGAI_SMTP__LISTEN", "127.0.0.1:2700")
    s = load_settings(cfg)
    assert s.smtp.listen == "127.0.0.1:2700"
    assert s.smtp.hostname == "h.example"


def test_invalid_values_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[delivery]\nretry_schedule = ["soon"]\n')
    with pytest.raises(ValidationError):
        load_settings(cfg)
    cfg.write_text("[smtp]\nunknown_key = 1\n")
    with pytest.raises(ValidationError):
        load_settings(cfg)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("1h") == 3600
    assert parse_duration("5d") == 432000
    assert parse_duration(12) == 12
    with pytest.raises(ValueError):
        parse_duration("-1m")


def test_secrets_are_masked() -> None:
    s = load_settings(None, storage={"database_url": "postgresql://u:secret@h/db"})
    assert "secret" not in str(masked_dump(s))
