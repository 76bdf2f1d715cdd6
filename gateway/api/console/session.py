"""Server-side console sessions: the cookie carries only a random id.

The id maps, in this process's memory, to the principal the token authenticated as (never the
token itself), a CSRF synchronizer token and one-shot notices. Sign-out or expiry forgets the
entry, so a stolen cookie dies with it. Sessions are per process: behind a load balancer the
console needs sticky sessions (or signing in again on another node).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.store.tokens import Principal

COOKIE = "mugai_session"
LOGIN_COOKIE = "mugai_login"  # double-submit token for the sign-in form (no session yet)
IDLE_SECONDS = 8 * 3600
MAX_AGE_SECONDS = 24 * 3600  # even an active session signs in again once a day
MAX_SESSIONS = 10_000
MAX_FLASH = 5
_ID_CHARS = 64


def _now() -> float:
    return time.monotonic()


@dataclass
class Session:
    id: str
    principal: Principal
    csrf: str
    created: float
    seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)

    def notice(self, kind: str, text: str) -> None:
        self.flash = (self.flash + [(kind, text)])[-MAX_FLASH:]

    def take_flash(self) -> list[tuple[str, str]]:
        out, self.flash = self.flash, []
        return out


def _person(principal: Principal) -> object:
    return principal.user_id or principal.name


class SessionStore:
    """Bounded, thread-safe map of live sessions.

    Each person holds at most ``per_user`` sessions: their next sign-in ends their own least
    recently used one, so one token signing in over and over cannot push anyone else out.
    Only when the whole store is full (``limit`` / ``per_user`` persons) is the oldest dropped.
    """

    def __init__(
        self,
        idle: float = IDLE_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        limit: int = MAX_SESSIONS,
        per_user: int = 5,
    ) -> None:
        self.idle = idle
        self.max_age = max_age
        self.limit = limit
        self.per_user = per_user
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, principal: Principal) -> Session:
        at = _now()
        session = Session(
            id=secrets.token_urlsafe(32),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            created=at,
            seen=at,
        )
        with self._lock:
            self._expire(at)
            person = _person(principal)
            own = [k for k, v in self._items.items() if _person(v.principal) == person]
            for sid in own[: max(0, len(own) - self.per_user + 1)]:  # least recently used
                del self._items[sid]
            while len(self._items) >= self.limit:
                self._items.popitem(last=False)
            self._items[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > _ID_CHARS:
            return None
        at = _now()
        with self._lock:
            session = self._items.get(sid)
            if session is None:
                return None
            if at - session.seen > self.idle or at - session.created > self.max_age:
                del self._items[sid]
                return None
            session.seen = at
            self._items.move_to_end(sid)
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._items.pop(sid or "", None)

    def drop_token(self, token_id: int) -> None:
        """Forget every session of a token (it was revoked)."""
        with self._lock:
            for sid in [k for k, v in self._items.items() if v.principal.token_id == token_id]:
                del self._items[sid]

    def __len__(self) -> int:
        return len(self._items)

    def _expire(self, at: float) -> None:
        # Entries are ordered by last use, so stale ones sit at the front.
        while self._items:
            sid, oldest = next(iter(self._items.items()))
            if at - oldest.seen <= self.idle:
                break
            del self._items[sid]
