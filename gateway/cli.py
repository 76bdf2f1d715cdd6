"""The `mugai` command (DESIGN.md §4.1)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.settings import Settings, load_settings, masked_dump

EXIT_OK, EXIT_REMOVED, EXIT_USAGE, EXIT_CANNOT_SCAN = 0, 1, 2, 3


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(Path(path) if path else None)
    except FileNotFoundError as exc:
        raise SystemExit(_usage(f"config file not found: {exc.filename}")) from exc
    except ValidationError as exc:
        raise SystemExit(_usage(f"invalid configuration:\n{exc}")) from exc
    except ValueError as exc:  # TOML syntax
        raise SystemExit(_usage(f"invalid configuration: {exc}")) from exc


def _usage(message: str) -> int:
    print(f"mugai: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.app import InstanceLocked, configure_logging, serve

    settings = _settings(args.config)
    configure_logging(args.log_level)
    try:
        asyncio.run(serve(settings))
    except InstanceLocked as exc:
        return _usage(str(exc))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.sanitize.jail import isolation_status

    settings = _settings(args.config)
    print(json.dumps(masked_dump(settings), ensure_ascii=False, indent=2))
    mode = settings.sanitize.network_isolation
    ok, cause = isolation_status(mode)
    if not ok:
        print(f"mugai: converter jail UNAVAILABLE: {cause}", file=sys.stderr)
        print("mugai: attachments will be withheld (isolation_unavailable)", file=sys.stderr)
        return EXIT_REMOVED
    level = "WARNING" if mode == "off" else "ok"
    print(f"mugai: converter jail {level}: {cause}", file=sys.stderr)
    return EXIT_OK


EXIT_JAIL_FAILED = 125  # like env(1)/docker: the wrapper itself failed, not the command
_JAIL_STDIN_CAP = 64 * 1024 * 1024


def cmd_jail(args: argparse.Namespace) -> int:
    """Run CMD in exactly the converters' jail (binds, seccomp, rlimits); exit = CMD's."""
    import signal

    from gateway.errors import IsolationUnavailable
    from gateway.sanitize import jail, sandbox

    settings = _settings(args.config)
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _usage("jail: no command given (mugai jail -- CMD [ARGS...])")
    ok, cause = jail.jail_status()
    if not ok:
        print(f"mugai: jail cannot be built: {cause}", file=sys.stderr)
        return EXIT_JAIL_FAILED
    stdin = (
        b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read(_JAIL_STDIN_CAP)
    )
    out = sys.stdout.buffer

    def sink(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    limits = sandbox.Limits(seconds=args.seconds, memory_mb=settings.sanitize.memory_mb)
    try:
        result = sandbox.run(command, stdin=stdin, limits=limits, network="required", sink=sink)
    except IsolationUnavailable as exc:
        print(f"mugai: jail cannot be built: {exc}", file=sys.stderr)
        return EXIT_JAIL_FAILED
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    if result.killed is not None:
        print(f"mugai: jail: command killed ({result.killed})", file=sys.stderr)
    if result.returncode < 0:
        return 128 + -result.returncode if -result.returncode < 128 else 128 + signal.SIGKILL
    return result.returncode


def cmd_sanitize(args: argparse.Namespace) -> int:
    from gateway.offline import CannotScan, blocking_scan, sanitize_paths, summary_lines
    from gateway.scan.clamd import ClamdScanner

    settings = _settings(args.config)
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        return _usage(f"no such file: {', '.join(missing)}")
    out = Path(args.out) if args.out else None
    scan = None
    if not args.no_scan:
        clamav = settings.clamav
        scanner = ClamdScanner(
            clamav.address, timeout=clamav.timeout, chunk_bytes=clamav.chunk_bytes
        )
        scan = blocking_scan(scanner)
    try:
        report, all_clean = sanitize_paths(paths, out, settings, scan=scan)
        code = EXIT_OK if all_clean else EXIT_REMOVED
    except CannotScan as exc:
        print(
            f"mugai: cannot scan {exc.path}: clamd at {settings.clamav.address} did not scan it"
            f" ({exc.detail}); nothing unscanned was written (--no-scan: sanitize unscanned)",
            file=sys.stderr,
        )
        return EXIT_CANNOT_SCAN
    text = (
        json.dumps(report, ensure_ascii=False, indent=2)
        if args.json
        else "\n".join(summary_lines(report))
    )
    _print_survivable(text)
    return code


def _print_survivable(text: str) -> None:
    """Print to a stdout that may be closed early (``| head``): the exit code still counts."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point it at
        # /dev/null (the recipe in the signal module's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# Commands whose modules are cheap to import. The others (admin, replay, report) import the
# store (SQLAlchemy, alembic) at module level, which cost `mugai sanitize` about a second of
# start-up: their parsers are only built when the command line is not one of these.
CORE_COMMANDS = frozenset({"serve", "check-config", "jail", "sanitize"})


def build_parser(*, extensions: bool = True) -> argparse.ArgumentParser:
    """The full parser; ``extensions=False`` leaves out the commands that import the store."""
    parser = argparse.ArgumentParser(prog="mugai", description="無害化 mail/file gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run SMTP intake, workers and the admin API")
    p.add_argument("--config", help="TOML config (embedded defaults when omitted)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate and print the effective settings")
    p.add_argument("--config")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("jail", help="run a command inside the converters' jail (host check)")
    p.add_argument("--config")
    p.add_argument("--seconds", type=float, default=60.0, help="wall clock (default 60)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(func=cmd_jail)

    p = sub.add_parser("sanitize", help="sanitize files or .eml messages offline")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", help="output folder (default: beside each input)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--no-scan",
        action="store_true",
        help="sanitize without asking clamd (the report says unscanned; never all_clean)",
    )
    p.add_argument("--config")
    p.set_defaults(func=cmd_sanitize)
    if not extensions:
        return parser

    from gateway.admin_cli import add_parsers as add_admin_parsers
    from gateway.loadtest.command import add_parser as add_replay_parser

    add_replay_parser(sub)
    add_admin_parsers(sub)
    from gateway.report_monthly import add_parser as add_report_parser  # issue 16

    add_report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # Only the exact command word skips the others: `mugai --help` and typos still see them all.
    parser = build_parser(extensions=not (words and words[0] in CORE_COMMANDS))
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    func: Any = args.func
    try:
        return int(func(args))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
