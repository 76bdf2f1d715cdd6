#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (real clamd, LibreOffice, SMTP peers,
# PostgreSQL on 127.0.0.1:5432 where the machine runs one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
