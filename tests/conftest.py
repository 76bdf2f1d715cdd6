"""Shared test fixtures.

The third-party corpus lives outside the repository (``../shared/corpus``, or
``MUGAI_CORPUS``); tests that need it use the ``corpus`` fixture and are skipped
with a clear message where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def corpus_dir() -> Path | None:
    env = os.environ.get("MUGAI_CORPUS")
    path = Path(env) if env else REPO.parent / "shared" / "corpus"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_dir()
    if path is None:
        pytest.skip("corpus tier skipped: ../shared/corpus not found (set MUGAI_CORPUS)")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


pytest_plugins = ["tests.plugins.clamd", "tests.plugins.smtp_sink", "tests.plugins.gateway"]
