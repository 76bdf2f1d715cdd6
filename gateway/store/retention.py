"""Retention: records and originals older than their status's period are removed
(``mugai purge`` and a timer inside ``serve``). Messages on legal hold, and those still
processing or deferred, are never purged. The audit log is never purged."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from gateway.settings import RetentionSettings
from gateway.store import audit
from gateway.store.models import MessageRow
from gateway.vocab import MessageStatus

if TYPE_CHECKING:
    from gateway.store.repository import Store

log = logging.getLogger(__name__)

# status → the [retention] key that sets its period (file jobs follow their mail twins)
PURGEABLE = {
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.QUARANTINED: "quarantined",
    MessageStatus.RELEASED: "released",
    MessageStatus.DELETED: "deleted",
    MessageStatus.DONE: "delivered",
    MessageStatus.WITHHELD: "quarantined",
}
_BATCH = 500


@dataclass
class PurgeReport:
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def purge(store: Store, retention: RetentionSettings, now: datetime | None = None) -> PurgeReport:
    now = now or datetime.now(UTC)
    report = PurgeReport()
    for status, key in PURGEABLE.items():
        cutoff = now - timedelta(seconds=getattr(retention, key))
        while True:  # batches keep each transaction (and its locks) short
            with store.db.write() as s:
                ids = list(
                    s.scalars(
                        select(MessageRow.id)
                        .where(
                            MessageRow.status == status,
                            MessageRow.updated_at <= cutoff,
                            MessageRow.legal_hold.is_(False),
                        )
                        .limit(_BATCH)
                    )
                )
                if not ids:
                    break
                # Blobs, recipients and release requests go with the row (ON DELETE CASCADE).
                s.execute(delete(MessageRow).where(MessageRow.id.in_(ids)))
                audit.append(s, "system:retention", "retention.purge", status, {"count": len(ids)})
            report.removed[status] = report.removed.get(status, 0) + len(ids)
    if report.total:
        log.info("job=- retention removed %d records %s", report.total, report.removed)
    return report


async def purge_loop(store: Store, retention: RetentionSettings) -> None:
    """Runs forever inside `serve`; a failing purge is logged and tried again next interval."""
    while True:
        try:
            await asyncio.to_thread(purge, store, retention)
        except Exception:  # noqa: BLE001 - the timer must outlive one bad run
            log.exception("job=- retention purge failed")
        await asyncio.sleep(max(retention.interval, 1.0))
