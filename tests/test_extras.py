"""The optional extras (pyproject: postgres = psycopg, replay = rich): without them the default
gateway runs, and the one feature that needs an extra says which, instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run_without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """Python with ``modules`` made unimportable (``sys.modules[name] = None``)."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{block}{code}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_replay_without_rich_names_the_extra(tmp_path: Path) -> None:
    mail = tmp_path / "m.eml"
    mail.write_bytes(b"From: a@example.jp\r\nTo: b@town.lg.jp\r\nSubject: s\r\n\r\nbody\r\n")
    p = run_without(
        ("rich",),
        f"from gateway.cli import main\nsys.exit(main(['replay', {str(mail)!r}, "
        "'--to', '127.0.0.1:9']))",
    )
    assert p.returncode == 2, p.stderr
    assert "mugai[replay]" in p.stderr and "Traceback" not in p.stderr


def test_the_gateway_commands_need_neither_extra(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("テキスト\n", encoding="utf-8")
    p = run_without(
        ("rich", "psycopg"),
        "from gateway.cli import main\n"
        f"sys.exit(main(['sanitize', '--no-scan', '--out', {str(tmp_path / 'out')!r}, "
        f"{str(text)!r}]))",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").iterdir())


def test_the_gateway_and_admin_api_import_without_either_extra() -> None:
    p = run_without(("rich", "psycopg"), "import gateway.app, gateway.api.main, gateway.worker")
    assert p.returncode == 0, p.stderr


def test_a_postgresql_url_without_psycopg_is_refused_at_start_up() -> None:
    p = run_without(
        ("psycopg",),
        "from gateway.settings import load_settings\n"
        "try:\n"
        "    load_settings(None, storage={'database_url': 'postgresql://u@127.0.0.1/db'})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "    sys.exit(3)\n",
    )
    assert p.returncode == 3, p.stdout + p.stderr
    assert "mugai[postgres]" in p.stdout


def test_sqlite_needs_no_driver_extra() -> None:
    p = run_without(
        ("psycopg",),
        "from gateway.settings import load_settings\n"
        "load_settings(None, storage={'database_url': 'sqlite:////tmp/x.db'})\n",
    )
    assert p.returncode == 0, p.stderr
