"""Sign-in throttling for the console: server-issued one-shot login nonces, sliding-window
attempt limits per source address and per token, and the failed sign-in counter.

All in this process's memory and bounded (like the sessions): a flood of keys forgets the
oldest, never grows without limit.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict, deque

from prometheus_client import Counter

MAX_KEYS = 10_000
NONCE_SECONDS = 3600.0

LOGIN_FAILURES = Counter(
    "mugai_console_login_failures",
    "Console sign-ins refused, by reason",
    ["reason"],
)


def _now() -> float:
    return time.monotonic()


class LoginNonces:
    """Nonces the server handed out with a sign-in form. A client-chosen value is not one of
    them, and each works once: a login form cannot be replayed or pre-set by a third party."""

    def __init__(self, ttl: float = NONCE_SECONDS, limit: int = MAX_KEYS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._items: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(32)
        with self._lock:
            while len(self._items) >= self.limit:
                self._items.popitem(last=False)
            self._items[nonce] = _now()
        return nonce

    def consume(self, nonce: str) -> bool:
        if not nonce or len(nonce) > 64:
            return False
        with self._lock:
            issued = self._items.pop(nonce, None)
        return issued is not None and _now() - issued <= self.ttl


class RateLimit:
    """At most ``limit`` events per key within ``window`` seconds."""

    def __init__(self, limit: int, window: float, keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window = window
        self.keys = keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Record an attempt for ``key``; False when it is over the limit (not recorded)."""
        at = _now()
        with self._lock:
            events = self._events.pop(key, None) or deque()
            while events and at - events[0] > self.window:
                events.popleft()
            allowed = len(events) < self.limit
            if allowed:
                events.append(at)
            while len(self._events) >= self.keys:
                self._events.popitem(last=False)
            self._events[key] = events  # most recently used last
            return allowed


def token_key(token: str) -> str:
    """The per-token limit's key: never the token itself in memory dumps or logs."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]
