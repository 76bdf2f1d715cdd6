"""`mugai user create|role|list` and `mugai token create` issuing to persons (DESIGN.md §4.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.admin_cli import open_store
from gateway.settings import load_settings
from tests.store.test_admin_cli import config, run  # noqa: F401 - the fixture


def test_user_create_is_unique_and_tokens_go_to_the_person(
    config: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = ["--config", str(config)]
    assert run(["user", "create", "tanaka", "--role", "operator", *c]) == 0
    assert run(["user", "create", "tanaka", "--role", "admin", *c]) == 2  # names are unique
    assert "exists already" in capsys.readouterr().err
    assert run(["token", "create", "--name", "tanaka", "--role", "operator", *c]) == 0
    assert run(["token", "create", "--name", "tanaka", "--role", "operator", *c]) == 0
    # A token for an existing person never changes their role on the side.
    assert run(["token", "create", "--name", "tanaka", "--role", "admin", *c]) == 2
    assert "mugai user role" in capsys.readouterr().err
    # A token for someone absent creates them with the role.
    assert run(["token", "create", "--name", "sato", "--role", "viewer", *c]) == 0
    assert run(["user", "role", "sato", "--role", "approver", *c]) == 0
    assert run(["user", "role", "nobody", "--role", "approver", *c]) == 2
    capsys.readouterr()
    assert run(["user", "list", *c]) == 0
    listing = capsys.readouterr().out
    assert "tanaka\toperator" in listing and "sato\tapprover" in listing
    store = open_store(load_settings(config))
    try:
        owners = {t.user_id for t in store.list_tokens() if t.name == "tanaka"}
        assert len(owners) == 1  # two tokens, one person
        actions = [(e.action, e.target) for e in reversed(store.audit_entries())]
    finally:
        store.close()
    assert actions == [
        ("user.create", "tanaka"),
        ("token.create", "tanaka"),
        ("token.create", "tanaka"),
        ("user.create", "sato"),
        ("token.create", "sato"),
        ("user.role", "sato"),
    ]


def test_user_create_refuses_bad_names(config: Path) -> None:  # noqa: F811
    c = ["--config", str(config)]
    assert run(["user", "create", "a\r\nX-Evil: 1", "--role", "viewer", *c]) == 2
    assert run(["user", "create", "x" * 65, "--role", "viewer", *c]) == 2
    with pytest.raises(SystemExit):
        run(["user", "create", "ok", "--role", "root", *c])
