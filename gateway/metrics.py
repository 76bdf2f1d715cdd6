"""Process-wide Prometheus instruments (served by GET /metrics with the store's gauges)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOBS = Counter("mugai_jobs_total", "Jobs finished or deferred, by outcome", ["outcome"])
REASONS = Counter("mugai_outcome_reasons_total", "Reasons of quarantines and retries", ["reason"])
STAGE_SECONDS = Histogram(
    "mugai_stage_seconds",
    "Time spent per stage",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CLAMD_ERRORS = Counter("mugai_clamd_errors_total", "Scans that failed (clamd unavailable)")
RELAY_ERRORS = Counter("mugai_relay_errors_total", "Relay deliveries that failed", ["kind"])
SMTP_REPLIES = Counter("mugai_smtp_data_replies_total", "Replies to DATA by code", ["code"])

# --- issue 13: supervision and total outcome handling ---
WORKER_RESTARTS = Counter("mugai_worker_restarts_total", "Worker slots restarted after dying")
OUTCOME_FAILURES = Counter(
    "mugai_outcome_record_failures_total",
    "Jobs whose outcome could not be recorded and went back to the spool",
    ["kind"],
)
CRASH_LOOPS = Counter(
    "mugai_crash_loops_total", "Jobs quarantined because the process died while handling them"
)
SMTP_LIMITED = Counter(
    "mugai_smtp_limited_total", "SMTP sessions refused or ended by a fairness limit", ["limit"]
)
