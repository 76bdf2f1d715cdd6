#!/usr/bin/env bash
# Sets everything up, starts a local clamd (shipped test signatures) and runs the
# gateway on its embedded defaults: SMTP on 127.0.0.1:2525 for town.example.lg.jp,
# sanitized mail delivered into var/outbox (Maildir), admin API on 127.0.0.1:8025.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/clamd.sh start var
exec .venv/bin/mugai serve "$@"
