from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.settings import RetentionSettings
from gateway.store.repository import Store
from gateway.store.retention import purge
from gateway.store.tokens import Principal
from tests.store.seed import add_message

ADMIN = Principal(1, "root", "admin")


def test_purge_applies_retention_per_status(store: Store) -> None:
    delivered = add_message(store)
    quarantined = add_message(store, status="quarantined")
    held = add_message(store)
    store.set_legal_hold(held, True, ADMIN)
    deferred = add_message(store, status="deferred")
    deleted = add_message(store)
    store.delete_message(deleted, ADMIN)
    req = store.request_release(quarantined, "x", ADMIN)

    retention = RetentionSettings(delivered="10d", quarantined="30d", released="30d", deleted="0s")
    report = purge(store, retention)
    # "deleted" keeps its record for 0 s; everything else is still young.
    assert report.removed == {"deleted": 1}
    assert store.get(deleted) is None

    later = datetime.now(UTC) + timedelta(days=11)
    assert purge(store, retention, now=later).removed == {"delivered": 1}
    assert store.get(delivered) is None and store.blob(delivered, "original") is None
    assert store.get(held) is not None  # legal hold
    much_later = datetime.now(UTC) + timedelta(days=400)
    assert purge(store, retention, now=much_later).removed == {"quarantined": 1}
    assert store.release_request(req.id) is None  # went with its message
    assert store.get(deferred) is not None and store.get(held) is not None
    # The audit log is never purged and still verifies.
    assert any(e.action == "retention.purge" for e in store.audit_entries())
    assert store.verify_audit().ok
