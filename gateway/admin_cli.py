"""`mugai user create|role|list`, `mugai token create|revoke|list`,
`mugai audit verify|init-key|rotate-key`, `mugai purge` (DESIGN.md §4.1).

Wired into gateway/cli.py with ``add_parsers(sub)``. Exit codes: 0 ok, 1 the check failed
(audit chain broken, nothing to revoke), 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from gateway.errors import Refused
from gateway.settings import Settings, load_settings
from gateway.store.audit_keys import AuditKeyError, create_key_file, rotate_key_file
from gateway.store.models import UserRow
from gateway.store.repository import Store, database_url
from gateway.store.tokens import ROLES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(Path(path) if path else None)
    except FileNotFoundError as exc:
        raise _UsageError(f"config file not found: {exc.filename}") from exc
    except (ValidationError, ValueError) as exc:
        raise _UsageError(f"invalid configuration:\n{exc}") from exc


def open_store(settings: Settings, *, seal: bool = True) -> Store:
    """The store, its audit entries MACed and anchored like the gateway's own."""
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url(settings.storage.database_url.get_secret_value(), settings.storage.data_dir)
    store = Store(url)
    store.create_schema()
    if seal:
        try:
            store.seal_audit(
                settings.audit_key_file, settings.audit_anchor_dir, create=True,
                syslog=settings.audit.syslog,
            )  # fmt: skip
        except (AuditKeyError, OSError) as exc:
            store.close()
            raise _UsageError(str(exc)) from exc
    return store


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "cli:unknown"


_STORE_ERRORS = {
    "user_exists": "a person of that name exists already (names are unique persons)",
    "user_role_differs": "that person has another role: change it with `mugai user role`",
    "user_not_found": "no such person (create one with `mugai user create`)",
}


def _refused(exc: Refused) -> _UsageError:
    return _UsageError(_STORE_ERRORS.get(exc.reason, exc.reason))


def _change_user(args: argparse.Namespace, change: Callable[[Store], UserRow]) -> UserRow:
    """One identity change with the store open; a bad name or a refusal is a usage error."""
    store = open_store(_settings(args.config))
    try:
        return change(store)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    except Refused as exc:
        raise _refused(exc) from exc
    finally:
        store.close()


def cmd_user_create(args: argparse.Namespace) -> int:
    row = _change_user(args, lambda s: s.create_user(args.name, args.role, _actor()))
    print(f"created user id={row.id} name={row.name} role={row.role}")
    return EXIT_OK


def cmd_user_role(args: argparse.Namespace) -> int:
    row = _change_user(args, lambda s: s.set_user_role(args.name, args.role, _actor()))
    print(f"user id={row.id} name={row.name} role={row.role}")
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace) -> int:
    store = open_store(_settings(args.config))
    try:
        rows = store.list_users()
    finally:
        store.close()
    for row in rows:
        print(f"{row.id}\t{row.name}\t{row.role}\t{row.created_at:%Y-%m-%d}\t{row.created_by}")
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    store = open_store(_settings(args.config))
    try:
        token, row = store.create_token(args.name, args.role, _actor())
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    except Refused as exc:
        raise _refused(exc) from exc
    finally:
        store.close()
    print(f"created token id={row.id} name={row.name} role={row.role}", file=sys.stderr)
    print("store it now: it is not shown again", file=sys.stderr)
    print(token)
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    store = open_store(_settings(args.config))
    try:
        rows = store.revoke_tokens(args.token, _actor())
    finally:
        store.close()
    for row in rows:
        print(f"revoked token id={row.id} name={row.name} role={row.role}")
    if not rows:
        print(f"mugai: no active token {args.token!r}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    store = open_store(_settings(args.config))
    try:
        rows = store.list_tokens()
    finally:
        store.close()
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        print(f"{row.id}\t{row.name}\t{row.role}\t{row.created_at:%Y-%m-%d}\t{state}")
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    store = open_store(settings, seal=False)
    try:
        unverifiable = ""
        try:
            store.seal_audit(settings.audit_key_file, settings.audit_anchor_dir, create=False)
        except AuditKeyError as exc:
            unverifiable = str(exc)
        if unverifiable and store.audit_is_keyed():
            # Someone removed the key: nothing MACed can be trusted, and that is a failure.
            print(f"audit chain CANNOT BE VERIFIED: {unverifiable}")
            return EXIT_FAILED
        report = store.verify_audit()
    finally:
        store.close()
    if unverifiable:
        print(f"warning: entries carry no MAC yet ({unverifiable})", file=sys.stderr)
    if report.ok:
        print(f"audit chain intact: {report.checked} entries")
        return EXIT_OK
    print(f"audit chain BROKEN ({report.checked} entries checked):")
    for problem in report.problems:
        print(f"  {problem}")
    return EXIT_FAILED


def cmd_audit_init_key(args: argparse.Namespace) -> int:
    path = _settings(args.config).audit_key_file
    try:
        key_id = create_key_file(path)
    except FileExistsError:
        raise _UsageError(f"{path} exists; use `mugai audit rotate-key` for a new key") from None
    except OSError as exc:
        raise _UsageError(f"{path}: {exc.strerror}") from exc
    print(f"created audit key {key_id} in {path} (mode 0600); back it up apart from the database")
    return EXIT_OK


def cmd_audit_rotate_key(args: argparse.Namespace) -> int:
    path = _settings(args.config).audit_key_file
    try:
        key_id = rotate_key_file(path)
    except (AuditKeyError, OSError) as exc:
        raise _UsageError(str(exc)) from exc
    print(f"new audit key {key_id} appended to {path}; restart every node to sign with it")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    from gateway.store.retention import purge

    settings = _settings(args.config)
    store = open_store(settings)
    try:
        report = purge(store, settings.retention)
    finally:
        store.close()
    print(json.dumps({"removed": report.removed, "total": report.total}))
    return EXIT_OK


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _UsageError as exc:
            print(f"mugai: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML config (embedded defaults when omitted)")

    user = sub.add_parser("user", help="persons (tokens are issued to them)")
    usub = user.add_subparsers(dest="user_command", required=True)
    p = usub.add_parser("create", help="create a person with a role (names are unique)")
    config(p)
    p.add_argument("name", metavar="NAME", help="letters, digits, . @ + - _")
    p.add_argument("--role", required=True, choices=ROLES)
    p.set_defaults(func=_guarded(cmd_user_create))
    p = usub.add_parser("role", help="change a person's role (all their tokens follow)")
    config(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", required=True, choices=ROLES)
    p.set_defaults(func=_guarded(cmd_user_role))
    p = usub.add_parser("list", help="list persons")
    config(p)
    p.set_defaults(func=_guarded(cmd_user_list))

    token = sub.add_parser("token", help="API tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    p = tsub.add_parser(
        "create", help="issue a token to the person NAME, created with ROLE when absent"
    )
    config(p)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--name", required=True, help="the person (letters, digits, . @ + - _)")
    p.set_defaults(func=_guarded(cmd_token_create))
    p = tsub.add_parser("revoke", help="revoke a token by id, or every token of a name")
    config(p)
    p.add_argument("token", metavar="ID_OR_NAME")
    p.set_defaults(func=_guarded(cmd_token_revoke))
    p = tsub.add_parser("list", help="list tokens (never their values)")
    config(p)
    p.set_defaults(func=_guarded(cmd_token_list))

    audit = sub.add_parser("audit", help="audit log")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    p = asub.add_parser(
        "verify", help="check the hash chain, MACs and the anchor file; exit 1 when broken"
    )
    config(p)
    p.set_defaults(func=_guarded(cmd_audit_verify))
    p = asub.add_parser("init-key", help="create the audit MAC key file (mode 0600)")
    config(p)
    p.set_defaults(func=_guarded(cmd_audit_init_key))
    p = asub.add_parser("rotate-key", help="append a new current key (old ones keep verifying)")
    config(p)
    p.set_defaults(func=_guarded(cmd_audit_rotate_key))

    p = sub.add_parser("purge", help="apply retention")
    config(p)
    p.set_defaults(func=_guarded(cmd_purge))
