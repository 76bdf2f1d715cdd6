from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from gateway.store.repository import Store
from gateway.store.tokens import Principal


def test_create_authenticate_revoke(store: Store) -> None:
    token, row = store.create_token("yamada", "operator", "cli:root")
    assert token.startswith("mgt_") and len(token) > 40
    who = store.authenticate(token)
    assert row.user_id and who == Principal(row.id, "yamada", "operator", row.user_id)
    assert store.authenticate(token + "x") is None
    assert store.authenticate("") is None
    assert store.authenticate("x" * 10_000) is None
    revoked = store.revoke_tokens("yamada", "cli:root")
    assert [r.id for r in revoked] == [row.id]
    assert store.authenticate(token) is None
    assert store.revoke_tokens(str(row.id), "cli:root") == []  # already revoked
    actions = [e.action for e in reversed(store.audit_entries())]
    assert actions == ["user.create", "token.create", "token.revoke"]


def test_only_the_hash_is_stored(store: Store) -> None:
    token, _ = store.create_token("sato", "viewer", "cli:root")
    with store.engine.connect() as conn:
        dump = " ".join(str(v) for r in conn.execute(text("SELECT * FROM api_tokens")) for v in r)
        audit = " ".join(str(v) for r in conn.execute(text("SELECT * FROM audit_log")) for v in r)
    assert token not in dump and token not in audit
    assert hashlib.sha256(token.encode()).hexdigest() in dump


@pytest.mark.parametrize(
    ("name", "role"),
    [("", "viewer"), ("a\r\nX-Evil: 1", "viewer"), ("x" * 65, "viewer"), ("ok", "root")],
)
def test_bad_names_and_roles_are_refused(store: Store, name: str, role: str) -> None:
    with pytest.raises(ValueError):
        store.create_token(name, role, "cli:root")


def test_roles() -> None:
    p = lambda role: Principal(1, "n", role)  # noqa: E731
    assert p("viewer").can("read") and not p("viewer").can("original")
    assert p("operator").can("original") and p("operator").can("request")
    assert not p("operator").can("decide")
    assert p("approver").can("decide") and not p("approver").can("audit")
    auditor = p("auditor")
    assert auditor.can("read") and auditor.can("audit")
    assert not any(auditor.can(x) for x in ("original", "request", "decide", "delete", "tokens"))
    assert all(p("admin").can(x) for x in ("read", "audit", "delete", "tokens", "decide"))
    assert not p("nobody").can("read")
