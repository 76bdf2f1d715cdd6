# mugai: sanitizing mail/file gateway. Multi-stage: the builder makes a venv, the runtime
# image gets the venv plus the runtime libraries only (no compilers, no pip cache).
# Lint: scripts/lint-deploy.sh (hadolint). Build: docker build -t mugai .

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS builder
# Same Debian python3 (3.11) as the runtime stage, so the venv's interpreter links stay valid.
# Apt versions are not pinned: bookworm's security updates must flow in on every rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
COPY gateway ./gateway
RUN python3 -m venv /opt/mugai/venv \
 && /opt/mugai/venv/bin/pip install --no-cache-dir '.[postgres]' \
 && /opt/mugai/venv/bin/python -m compileall -q /opt/mugai/venv

FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/mugai/venv/bin:/usr/local/bin:/usr/bin:/bin
# tini is PID 1: soffice.bin is re-parented to PID 1 when a converter group is killed, and
# something must reap it. LibreOffice runs under Debian's python3 (python3-uno); fonts-noto-cjk
# or Japanese renders as tofu; bubblewrap + libseccomp2 build the converter jail when the
# container's seccomp/AppArmor policy allows user namespaces (docs/operations.md §2).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 libmagic1 tini ca-certificates \
      libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui python3-uno \
      fonts-noto-cjk bubblewrap libseccomp2 util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/mugai \
      --shell /usr/sbin/nologin mugai \
 && install -d -o mugai -g mugai -m 0750 /var/lib/mugai \
 && install -d -m 0755 /etc/mugai
COPY --from=builder /opt/mugai/venv /opt/mugai/venv
COPY config/gateway.example.toml /etc/mugai/gateway.example.toml

# Numeric, so runtimes can check "non-root" without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/mugai
VOLUME ["/var/lib/mugai"]
# 2525: SMTP from the Internet-side MTA; 8025: admin API, console, /readyz, /metrics.
EXPOSE 2525 8025
# Ready = spool, database, clamd and the LGWAN relay all answer (GET /readyz → 200).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os,urllib.request; urllib.request.urlopen(os.environ.get('MUGAI_HEALTHCHECK_URL','http://127.0.0.1:8025/readyz'), timeout=8)"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/mugai/venv/bin/mugai"]
CMD ["serve", "--config", "/etc/mugai/gateway.toml"]
