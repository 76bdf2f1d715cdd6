"""``mugai replay``: load test a gateway by replaying recorded mail (DESIGN.md §4.1).

Exit status: 0 when every message sent was accepted (and, with --wait-relay, reached the
relay); 1 when something was refused, failed, timed out, or nothing could be sent; 2 on usage
errors. Inputs that are not messages are skipped and counted; they do not change the status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gateway.loadtest.progress import PlainProgress, ProgressSink, RichProgress
from gateway.loadtest.relaywatch import RelayWatch, WatchSpecError, parse_watch
from gateway.loadtest.replay import ReplayConfig, replay
from gateway.loadtest.report import Stats, render_summary, to_json
from gateway.loadtest.sources import DEFAULT_MAX_BYTES, Item, estimate_count, iter_items

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
NEEDS_EXTRA = "mugai replay needs the replay extra (rich): pip install 'mugai[replay]'"


class UsageError(Exception):
    pass


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="load test: replay .eml files, folders, mbox and Maildir over SMTP",
        description="Replay recorded mail to an SMTP gateway and report throughput, "
        "refusals by reply code, errors by kind and latency percentiles.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=".eml file, folder, mbox, Maildir")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="the gateway's SMTP address")
    p.add_argument("--concurrency", type=int, default=10, metavar="N", help="parallel senders")
    p.add_argument("--rate", type=float, metavar="R", help="at most R messages per second")
    p.add_argument("--limit", type=int, metavar="N", help="send at most N messages")
    p.add_argument(
        "--rcpt",
        metavar="ADDR",
        help="envelope recipient for every message; '@domain' keeps each To/Cc local part "
        "in that domain (default: the To/Cc addresses; messages without any are skipped)",
    )
    p.add_argument(
        "--mail-from",
        metavar="ADDR",
        help="envelope sender (default: Return-Path, else From, of each message; '' for <>)",
    )
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-': stdout)")
    p.add_argument(
        "--loop",
        action="store_true",
        help="repeat the sources with fresh Message-IDs until --limit or --timeout",
    )
    p.add_argument(
        "--wait-relay",
        metavar="SINK",
        help="after sending, wait for the messages at the relay and report relay_seconds: "
        "smtp://HOST:PORT runs a sink there (point the gateway's delivery.relay at it), "
        "or a Maildir path to watch (e.g. the gateway's outbox)",
    )
    p.add_argument(
        "--relay-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="longest wait for the relay after sending (default 300)",
    )
    p.add_argument("--timeout", type=float, metavar="S", help="bound for the whole run")
    p.add_argument(
        "--smtp-timeout", type=float, default=30.0, metavar="S", help="per SMTP command (30)"
    )
    p.add_argument(
        "--reuse",
        type=int,
        default=1,
        metavar="N",
        help="messages per SMTP connection (default 1: a new connection for each)",
    )
    p.add_argument("--starttls", action="store_true", help="require STARTTLS (certs not checked)")
    p.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="BYTES",
        help="skip larger messages",
    )
    p.set_defaults(func=run)


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--to: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be positive")


def build_config(args: argparse.Namespace) -> ReplayConfig:
    host, port = _hostport(args.to)
    for name in ("concurrency", "rate", "limit", "timeout", "smtp_timeout", "reuse", "max_size"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.relay_timeout < 0:
        raise UsageError("--relay-timeout must not be negative")
    if args.loop and args.limit is None and args.timeout is None:
        raise UsageError("--loop needs --limit or --timeout (it would never end)")
    if args.rcpt is not None and ("@" not in args.rcpt or any(c.isspace() for c in args.rcpt)):
        raise UsageError("--rcpt: expected user@domain or @domain")
    missing = [s for s in args.sources if not Path(s).exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    if args.json not in (None, "-") and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"--json: no such folder for {args.json}")
    return ReplayConfig(
        host=host,
        port=port,
        concurrency=args.concurrency,
        rate=args.rate,
        limit=args.limit,
        rcpt=args.rcpt,
        mail_from=args.mail_from,
        loop=args.loop,
        timeout=args.timeout,
        smtp_timeout=args.smtp_timeout,
        reuse=args.reuse,
        relay_timeout=args.relay_timeout,
        starttls=args.starttls,
    )


def _progress(out: TextIO, console: Console, total: int | None) -> ProgressSink:
    if out.isatty():
        return RichProgress(console, total)
    return PlainProgress(out, total)


async def run_async(args: argparse.Namespace) -> int:
    """The command inside a running event loop (``run`` wraps it in ``asyncio.run``)."""
    try:
        cfg = build_config(args)
        watch: RelayWatch | None = parse_watch(args.wait_relay) if args.wait_relay else None
    except (UsageError, WatchSpecError) as exc:
        print(f"mugai replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        from rich.console import Console
    except ImportError:
        print(f"mugai replay: {NEEDS_EXTRA}", file=sys.stderr)
        return EXIT_USAGE
    paths = [Path(s) for s in args.sources]
    max_bytes = int(args.max_size)

    def items() -> Iterator[Item]:
        return iter_items(paths, max_bytes)

    # With --json - the report owns stdout; people still see progress and summary on stderr.
    out = sys.stderr if args.json == "-" else sys.stdout
    console = Console(file=out)
    total: int | None = None if cfg.loop else await asyncio.to_thread(estimate_count, paths)
    if cfg.limit is not None:
        total = cfg.limit if total is None else min(total, cfg.limit)

    stats = Stats(target=f"{cfg.host}:{cfg.port}")
    if watch is not None:
        try:
            await watch.start()
        except OSError as exc:
            print(f"mugai replay: --wait-relay {args.wait_relay}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    progress = _progress(out, console, total)
    try:
        await replay(items, cfg, stats, progress, watch)
    except asyncio.CancelledError:  # Ctrl-C: still report what was done
        stats.interrupted = True
    finally:
        progress.close(stats)
        if watch is not None:
            await watch.close()

    render_summary(stats, console)
    report = to_json(stats)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if stats.sent == 0:
        print("mugai replay: nothing was sent (no usable messages)", file=sys.stderr)
    return EXIT_OK if stats.ok else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    return asyncio.run(run_async(args))
