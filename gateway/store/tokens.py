"""API tokens and roles.

A token is 32 random bytes (``secrets.token_urlsafe``); only its sha256 is stored. A slow
password hash (bcrypt, argon2) protects *low-entropy* secrets against guessing after a database
leak; 256 random bits cannot be guessed whatever the hash, so sha256 gives the same protection
and lets each request find its token with one indexed lookup instead of a deliberate ~100 ms of
CPU per API call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

ROLES = ("viewer", "operator", "approver", "auditor", "admin")

# viewer < operator < approver; auditor reads plus the audit log and acts on nothing.
_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "original", "request"}),
    "approver": frozenset({"read", "original", "request", "decide"}),
    "auditor": frozenset({"read", "audit"}),
    "admin": frozenset(
        {"read", "original", "request", "decide", "audit", "delete", "tokens", "reopen"}
    ),
}
PERMISSIONS = frozenset().union(*_PERMISSIONS.values())

PREFIX = "mgt_"
# Names end up in a mail header (X-Mugai-Released-By) and in logs: letters (any script),
# digits and a few separators only.
NAME_RE = re.compile(r"^[\w.@+-]{1,64}$")
MAX_TOKEN_CHARS = 256


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValueError("name: 1-64 letters, digits or . @ + - _")
    return name


def check_role(role: str) -> str:
    if role not in _PERMISSIONS:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``name`` is the unique name of the person (gateway/store/users.py) the
    token was issued to, so the two-person rule, which compares it, compares persons."""

    token_id: int
    name: str
    role: str
    user_id: int = 0

    def can(self, permission: str) -> bool:
        return permission in _PERMISSIONS.get(self.role, frozenset())

    @property
    def actor(self) -> str:
        return f"token:{self.name}"
