"""The deployment files: the lint (scripts/lint-deploy.sh) passes, catches real mistakes, and
the checklist that no linter knows about holds (non-root, tini, healthcheck, published ports,
systemd hardening). No container engine or systemd is needed."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "scripts" / "lint-deploy.sh"


def lint(root: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(LINT), str(root)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_lint_passes_on_the_shipped_files() -> None:
    done = lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lint-deploy: ok" in done.stdout


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        ("Dockerfile", "USER 10001:10001", "USER 10001:10001\nRUN cd /tmp && true"),
        ("deploy/compose.yml", "    restart: unless-stopped\n", "    restrat: unless-stopped\n"),
        ("deploy/systemd/mugai.service", "ProtectSystem=strict", "ProtectSystm=strict"),
        ("deploy/systemd/mugai.service", "CapabilityBoundingSet=\n", ""),
    ],
    ids=["dockerfile-cd", "compose-typo", "unit-typo", "unit-weaker"],
)
def test_lint_catches_a_broken_copy(tmp_path: Path, path: str, old: str, new: str) -> None:
    for item in ("Dockerfile", "deploy"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, tmp_path / item)
        else:
            shutil.copy(src, tmp_path / item)
    target = tmp_path / path
    text = target.read_text(encoding="utf-8")
    assert old in text
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    done = lint(tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_runtime_stage_checklist() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build expected"
    runtime = stages[-1]
    joined = "\n".join(runtime)
    assert re.search(r"ARG DEBIAN_IMAGE=debian:bookworm-slim", (REPO / "Dockerfile").read_text())
    installs = " ".join(line for line in runtime if "apt-get install" in line)
    for package in (
        "python3",
        "libmagic1",
        "tini",
        "libreoffice-writer-nogui",
        "libreoffice-calc-nogui",
        "libreoffice-impress-nogui",
        "python3-uno",
        "fonts-noto-cjk",
    ):
        assert re.search(rf"(^|\s){re.escape(package)}(\s|$)", installs), package
    for compiler in ("build-essential", "gcc", "g++", "python3-dev", "clamav"):
        assert not re.search(rf"(^|\s){re.escape(compiler)}(\s|$)", installs), compiler
    assert "--no-install-recommends" in installs
    assert "rm -rf /var/lib/apt/lists/*" in installs
    users = [line for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("0", "root")
    entry = next(line for line in runtime if line.startswith("ENTRYPOINT"))
    assert '"/usr/bin/tini", "--"' in entry, "tini must be PID 1 to reap soffice"
    health = next(line for line in runtime if line.startswith("HEALTHCHECK"))
    assert "/readyz" in health and "8025" in health
    cmd = next(line for line in runtime if line.startswith("CMD"))
    assert '"serve", "--config", "/etc/mugai/gateway.toml"' in cmd
    assert "COPY --from=builder /opt/mugai/venv /opt/mugai/venv" in joined


def test_dockerignore_keeps_data_and_secrets_out_of_the_build_context() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in lines  # allow-list: only what the build needs
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed <= {"pyproject.toml", "gateway", "config/gateway.example.toml"}


# --- compose --------------------------------------------------------------------------------


def compose() -> dict[str, object]:
    data = yaml.safe_load((REPO / "deploy" / "compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_services_volumes_and_ports() -> None:
    data = compose()
    services = data["services"]
    assert isinstance(services, dict)
    assert set(services) == {"mugai", "clamd", "freshclam", "postgres"}
    mugai = services["mugai"]
    volumes = mugai["volumes"]
    assert "mugai-data:/var/lib/mugai" in volumes
    assert "./gateway.toml:/etc/mugai/gateway.toml:ro" in volumes
    # Published on one configured address each, never on every interface.
    for port in mugai["ports"]:
        host = port.rsplit(":", 2)[0]
        assert host.startswith("${") and host.endswith(":-127.0.0.1}"), port
    assert "ALL" in mugai["cap_drop"]
    assert "no-new-privileges:true" in mugai["security_opt"]
    assert "user" not in mugai, "the image's non-root user must not be overridden"
    # clamd and the updater share the signature volume; only the updater reaches out.
    assert "clamav-db:/var/lib/clamav" in services["clamd"]["volumes"]
    assert "clamav-db:/var/lib/clamav" in services["freshclam"]["volumes"]
    assert services["clamd"]["environment"]["CLAMAV_NO_FRESHCLAMD"] == "true"
    assert services["freshclam"]["environment"]["CLAMAV_NO_CLAMD"] == "true"
    for backend_only in ("clamd", "postgres"):
        assert services[backend_only]["networks"] == ["backend"]
        assert "ports" not in services[backend_only]
    networks = data["networks"]
    assert isinstance(networks, dict) and networks["backend"]["internal"] is True
    assert "${POSTGRES_PASSWORD:?" in mugai["environment"]["MUGAI_STORAGE__DATABASE_URL"]


def test_compose_gateway_config_is_valid_and_matches_the_services() -> None:
    settings = load_settings(REPO / "deploy" / "gateway.toml")
    assert settings.clamav.address == "clamd:3310"
    assert str(settings.storage.data_dir) == "/var/lib/mugai"
    assert settings.smtp.listen.endswith(":2525") and settings.admin.listen.endswith(":8025")
    assert settings.storage.database_url.get_secret_value() == ""  # from the environment only


# --- systemd --------------------------------------------------------------------------------


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO / "deploy" / "systemd" / "mugai.service", encoding="utf-8")
    return parser


def test_systemd_unit_hardening_checklist() -> None:
    service = unit()["Service"]
    expected = {
        "User": "mugai",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/mugai",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "Restart": "on-failure",
        "KillMode": "mixed",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert int(service["TimeoutStopSec"]) >= 60
    assert int(service["LimitNOFILE"]) >= 4096
    assert service["ExecStart"].endswith("serve --config /etc/mugai/gateway.toml")
    # The converters' network namespace needs user+net(+mnt) namespaces as a non-root user.
    denied = service["RestrictNamespaces"].lstrip("~").split()
    assert not {"user", "net", "mnt"} & set(denied)
    # The sandbox sets rlimits with prlimit(2): @resources must stay allowed.
    assert "@resources" not in service["SystemCallFilter"]


def test_sysusers_creates_the_unit_user() -> None:
    text = (REPO / "deploy" / "systemd" / "mugai.sysusers").read_text(encoding="utf-8")
    entries = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert any(e[0] == "u" and e[1] == unit()["Service"]["User"] for e in entries)


def test_container_seccomp_profile_lets_the_jail_be_built() -> None:
    # The converter jail (bubblewrap) needs namespaces and mounts, which Docker's default
    # profile refuses; the shipped profile must allow them and still deny the kernel surface.
    mugai = compose()["services"]["mugai"]  # type: ignore[index]
    opts = mugai["security_opt"]
    assert "seccomp=./seccomp-mugai.json" in opts
    assert "apparmor=unconfined" in opts and "systempaths=unconfined" in opts
    import json

    profile = json.loads((REPO / "deploy" / "seccomp-mugai.json").read_text(encoding="utf-8"))
    denied = {n for rule in profile["syscalls"] for n in rule["names"]
              if rule["action"] != "SCMP_ACT_ALLOW"}  # fmt: skip
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert not denied & {"unshare", "clone", "clone3", "mount", "pivot_root", "setns", "umount2"}
    assert {"bpf", "kexec_load", "init_module", "userfaultfd", "keyctl", "ptrace"} <= denied
    assert load_settings(REPO / "deploy" / "gateway.toml").sanitize.network_isolation == "required"
    service = unit()["Service"]
    assert service["RestrictNamespaces"] == "no"
    # Overmounts on /proc make the kernel refuse the jail's own /proc (reproduced by hand).
    assert service.get("ProtectKernelTunables", "no") == "no"
    assert service.get("ProtectKernelLogs", "no") == "no"
    assert service.get("ProcSubset", "all") == "all"
