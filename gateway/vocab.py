"""The closed vocabularies of record states (kinds live in ``mime``/``sanitize``, reasons in
``gateway/reasons.py``). Members are ``str``: they are stored as their value, compare equal to
it, and hash like it, so rows read back as plain strings still match.

tests/test_vocab.py fails when a status is spelled as a bare string anywhere in ``gateway/``
or the console templates."""

from __future__ import annotations

import enum


class MessageStatus(enum.StrEnum):
    """``messages.status``: where one mail or file job is."""

    PROCESSING = "processing"  # accepted, not yet decided
    DEFERRED = "deferred"  # a later retry is due (relay or store temporarily down)
    DELIVERED = "delivered"  # the sanitized mail went to the LGWAN relay
    QUARANTINED = "quarantined"  # withheld whole, with reasons (virus, unsanitizable, ...)
    RELEASED = "released"  # an operator's approved release was delivered
    DELETED = "deleted"  # content purged (retention or an admin); the record stays
    DONE = "done"  # a file job: the sanitized files are ready
    WITHHELD = "withheld"  # a file job: nothing could be passed on


# A job in one of these will not change again by itself (only release or deletion).
FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.QUARANTINED,
        MessageStatus.RELEASED,
        MessageStatus.DELETED,
        MessageStatus.DONE,
        MessageStatus.WITHHELD,
    }
)


class ReleaseStatus(enum.StrEnum):
    """``release_requests.status``: pending → approved (delivery under way) → released | failed;
    pending → rejected."""

    PENDING = "pending"
    APPROVED = "approved"
    RELEASED = "released"
    FAILED = "failed"
    REJECTED = "rejected"
