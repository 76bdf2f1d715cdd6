from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import pytest

from gateway.errors import Conflict, NotFound
from gateway.spool import JobMeta
from gateway.store.repository import MessageQuery, Store
from gateway.store.tokens import Principal
from tests.store.seed import add_message, raw_mail

ADMIN = Principal(1, "root", "admin")


def test_worker_calls_keep_original_report_and_outcome(store: Store) -> None:
    raw = raw_mail()
    meta = JobMeta(
        id="0000000000010000000001",
        kind="mail",
        mail_from="a@example.com",
        rcpt_tos=("U@Town.example.lg.jp", "b@town.example.lg.jp"),
        received_at=time.time(),
    )
    assert store.record_received(meta, raw) == "processing"
    assert store.record_received(meta, b"other") == "processing"  # idempotent
    assert store.status(meta.id) == "processing"
    assert store.blob(meta.id, "original") == raw
    row = store.get(meta.id)
    assert row is not None
    assert row.sha256 == hashlib.sha256(raw).hexdigest() and row.size == len(raw)
    store.mark_deferred(meta.id, "relay_temporary", "451 busy", 1)
    assert store.status(meta.id) == "deferred"
    store.mark_delivered(meta.id, b"clean", 2)
    assert store.status(meta.id) == "delivered"
    assert store.blob(meta.id, "sanitized") == b"clean"
    assert store.blob(meta.id, "original") == raw  # originals kept for delivered mail too
    assert store.status("nope") is None
    with pytest.raises(KeyError):
        store.mark_delivered("nope", b"", 1)


def test_report_fields_round_trip(store: Store) -> None:
    mid = add_message(store, status="quarantined", reason="virus_found")
    row = store.get(mid)
    assert row is not None
    assert row.status == "quarantined" and row.reasons == ["virus_found"]
    assert row.parts[0]["filename"] == "見積書.docx"
    assert row.parts[0]["action"] == "converted"
    assert row.parts[0]["reasons"] == ["macros_removed"]
    assert row.tokens == ["CHG_TEXT", "CONV_ATTACH"]
    assert row.scan["clean"] is False
    assert row.timings["sanitize"] == 0.2
    assert row.subject == "件名 hello"


def test_search_filters(store: Store) -> None:
    old = add_message(store, message_id="<old@x>", received_at=time.time() - 86400 * 3)
    a = add_message(store, message_id="<a@x>", mail_from="Alice@Example.com")
    b = add_message(
        store, status="quarantined", message_id="<b@x>", rcpt_tos=("Boss@Town.example.lg.jp",)
    )
    ids = lambda q: [r.id for r in store.search(q)]  # noqa: E731
    assert ids(MessageQuery()) == [b, a, old]  # newest first
    assert ids(MessageQuery(message_id="a@x")) == [a]
    assert ids(MessageQuery(message_id="<a@x>")) == [a]
    assert ids(MessageQuery(status="quarantined")) == [b]
    assert ids(MessageQuery(sender="alice@example.com")) == [a]
    assert ids(MessageQuery(recipient="boss@town.example.lg.jp")) == [b]
    assert ids(MessageQuery(recipient="BOSS@town.example.lg.jp")) == [b]
    assert ids(MessageQuery(sender="%")) == []  # LIKE wildcards are literal
    day = datetime.fromtimestamp(time.time() - 86400, UTC)
    assert ids(MessageQuery(since=day)) == [b, a]
    assert ids(MessageQuery(until=day)) == [old]
    naive = day.replace(tzinfo=None)  # taken as UTC
    assert ids(MessageQuery(since=naive)) == [b, a]


def test_cursor_pagination_visits_each_message_once(store: Store) -> None:
    made = [add_message(store, message_id=f"<{i}@x>") for i in range(7)]
    seen: list[str] = []
    cursor = ""
    while True:
        page = store.search(MessageQuery(limit=3, cursor=cursor))
        seen += [r.id for r in page]
        if len(page) < 3:
            break
        cursor = page[-1].id
    assert seen == sorted(made, reverse=True)


def test_read_original_is_audited(store: Store) -> None:
    mid = add_message(store)
    who = Principal(5, "alice", "operator")
    assert store.read_original(mid, who) == raw_mail()
    entry = store.audit_entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.target) == ("token:alice", "original.read", mid)
    with pytest.raises(NotFound):
        store.read_original("missing", who)


def test_delete_keeps_record_and_audit_and_respects_legal_hold(store: Store) -> None:
    mid = add_message(store)
    store.set_legal_hold(mid, True, ADMIN)
    with pytest.raises(Conflict, match="legal_hold"):
        store.delete_message(mid, ADMIN)
    store.set_legal_hold(mid, False, ADMIN)
    store.delete_message(mid, ADMIN)
    assert store.status(mid) == "deleted"
    assert store.blob(mid, "original") is None and store.blob(mid, "sanitized") is None
    with pytest.raises(Conflict, match="original_deleted"):
        store.read_original(mid, ADMIN)
    actions = [e.action for e in store.audit_entries()]
    assert actions[0] == "message.delete"
    assert store.verify_audit().ok


def test_delete_refuses_jobs_in_progress(store: Store) -> None:
    mid = add_message(store, status="deferred")
    with pytest.raises(Conflict):
        store.delete_message(mid, ADMIN)


def test_metrics_queries(store: Store) -> None:
    add_message(store)
    add_message(store, status="quarantined", reason="virus_found")
    add_message(store, status="quarantined", reason="virus_found")
    add_message(store, status="quarantined", reason="encrypted")
    assert store.counts_by_status() == {"delivered": 1, "quarantined": 3}
    assert store.reason_counts() == {
        ("quarantined", "virus_found"): 2,
        ("quarantined", "encrypted"): 1,
    }
