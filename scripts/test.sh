#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (real clamd, LibreOffice, SMTP peers,
# PostgreSQL on 127.0.0.1:5432 where the machine runs one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The store tests need PostgreSQL on 127.0.0.1:5432; machines of this kind start it before
# the session, but start it here too if it is installed and down.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  for v in /etc/postgresql/*; do
    if [ -d "$v/main" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start || true
    fi
  done
fi
# House rules: lint, formatting and strict typing on gateway/ gate the tests.
.venv/bin/ruff check gateway tests bench scripts
.venv/bin/ruff format --check gateway tests bench scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
