"""Persons. A token belongs to exactly one user; the user's unique name is who acted.

The two-person rule compares persons (two tokens of one person are one person). It also keeps
apart people linked by an identity change: whoever created a person, changed their role or
issued them a token within ``[admin] identity_cooldown`` cannot decide that person's release
request, nor they the other's, and two people whom one and the same third person changed within
it cannot decide each other's requests (that person holds both their tokens), also through a
chain of persons made within it (an admin made by the admin makes the approver). Otherwise an
admin could create an approver (or mint a token for one, or make both an operator and an
approver) and approve their own request through it. Every identity change is an audit entry
(``user.create``, ``user.role``, ``token.create``, ``token.revoke``) that the link check reads,
so what the auditor sees is what the rule enforces. Changes made with the local CLI (actor
``cli:<account>``) link nobody: a shell on the gateway host is outside this model.

These functions run inside ``Database.write()``/``read()`` transactions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.errors import Conflict, NotFound
from gateway.store import audit
from gateway.store.models import AuditRow, UserRow
from gateway.store.tokens import check_name, check_role

DEFAULT_COOLDOWN = 72 * 3600.0
# Audit actions that give or change someone's power; their actor is linked to their target.
LINKING_ACTIONS = ("user.create", "user.role", "token.create")
MAX_CHAIN = 8


def _now() -> datetime:
    return datetime.now(UTC)


def by_name(s: Session, name: str) -> UserRow | None:
    return s.scalar(select(UserRow).where(UserRow.name == name))


def create(s: Session, name: str, role: str, actor: str) -> UserRow:
    check_name(name)
    check_role(role)
    if by_name(s, name) is not None:
        raise Conflict("user_exists")
    at = _now()
    row = UserRow(
        name=name,
        role=role,
        created_at=at,
        created_by=actor[:128],
        changed_at=at,
        changed_by=actor[:128],
    )
    s.add(row)
    s.flush()
    audit.append(s, actor, "user.create", name, {"user": row.id, "role": role})
    return row


def ensure(s: Session, name: str, role: str, actor: str) -> UserRow:
    """The person NAME, created with ROLE when absent; an existing person keeps their role
    (a token never changes it silently: a different ROLE is refused)."""
    check_name(name)
    check_role(role)
    row = by_name(s, name)
    if row is None:
        return create(s, name, role, actor)
    if row.role != role:
        raise Conflict("user_role_differs")
    return row


def set_role(s: Session, name: str, role: str, actor: str) -> UserRow:
    check_role(role)
    row = by_name(s, name)
    if row is None:
        raise NotFound("user_not_found")
    if row.role != role:
        old, row.role = row.role, role
        row.changed_at = _now()
        row.changed_by = actor[:128]
        audit.append(s, actor, "user.role", name, {"user": row.id, "from": old, "to": role})
    return row


def list_all(s: Session) -> list[UserRow]:
    return list(s.scalars(select(UserRow).order_by(UserRow.id)))


def _controllers(s: Session, name: str, since: str) -> set[str]:
    """NAME and whoever, within the window, changed NAME or (transitively) one of those: each
    of them held or could mint a token of NAME. Bounded: a chain longer than MAX_CHAIN links
    through its first MAX_CHAIN steps."""
    found = {name}
    frontier = {name}
    for _ in range(MAX_CHAIN):
        stmt = (
            select(AuditRow.actor)
            .where(
                AuditRow.action.in_(LINKING_ACTIONS),
                AuditRow.at >= since,
                AuditRow.target.in_(sorted(frontier)),
                AuditRow.actor.like("token:%"),
            )
            .distinct()
        )
        frontier = {actor.removeprefix("token:") for actor in s.scalars(stmt)} - found
        if not frontier:
            break
        found |= frontier
    return found


def linked(s: Session, a: str, b: str, cooldown: float) -> bool:
    """Did either person create, re-role or issue a token to the other within ``cooldown``,
    or did one and the same person do so to both, directly or through persons they made
    (then that one holds both tokens)?"""
    since = (_now() - timedelta(seconds=cooldown)).isoformat(timespec="microseconds")
    return bool(_controllers(s, a, since) & _controllers(s, b, since))
