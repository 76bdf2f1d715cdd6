#!/usr/bin/env bash
# Installs everything mugai needs on Debian 12: system packages, then the venv.
# Idempotent and quick when nothing changed. Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv python3-pip
  clamav-daemon clamav          # virus scanning (clamd); local signatures in config/clamav
  libmagic1                     # content type detection
  libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui
  python3-uno                   # our UNO driver runs under Debian's /usr/bin/python3
  fonts-noto-cjk                # Japanese glyphs in converted documents (no tofu)
  poppler-utils                 # pdffonts/pdftoppm used by tests to check output
  bubblewrap util-linux         # the converter jail (bwrap) and its rlimits (prlimit)
  libseccomp2                   # the jail's seccomp filter (through pyseccomp)
  swaks                         # SMTP testing by hand
  chromium chromium-driver      # web console tests
  postfix                       # Postfix interoperation tests (private instances, not port 25)
  docker-compose logrotate systemd  # deploy lint: compose config, logrotate -d, systemd-analyze
  openssl                       # test certificates for STARTTLS
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
  # Postfix: no system-wide configuration (the tests run private instances).
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.mugai-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
echo "setup: ok"
