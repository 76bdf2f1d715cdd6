"""Sign-in throttling for the console: server-issued one-shot login nonces, sliding-window
attempt limits per source address and per token, and the failed sign-in counter.

All in this process's memory and bounded (like the sessions): a flood of keys forgets the
oldest, never grows without limit.
"""

from __future__ import annotations

import hashlib
import hmac
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
    """Nonces the server handed out with a sign-in form: ``<issued>.<random>.<mac>`` under a
    per-process key, so a client-chosen value is never one, and nothing is stored per form
    (a flood of GET /login cannot evict a colleague's open form). Each works once: used ones
    are remembered until they would have expired anyway."""

    def __init__(self, ttl: float = NONCE_SECONDS, limit: int = MAX_KEYS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._key = secrets.token_bytes(32)
        self._used: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        body = f"{_now():.3f}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def _genuine(self, nonce: str, at: float) -> bool:
        """Issued by this process and not expired (used or not)."""
        if not nonce or len(nonce) > 128:
            return False
        body, _, mac = nonce.rpartition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return False
        return 0 <= at - float(body.partition(".")[0]) <= self.ttl

    def reusable(self, nonce: str) -> bool:
        """A form may show it again (two tabs share the one login cookie)."""
        with self._lock:
            used = nonce in self._used
        return not used and self._genuine(nonce, _now())

    def consume(self, nonce: str) -> bool:
        at = _now()
        if not self._genuine(nonce, at):
            return False
        with self._lock:
            while self._used and at - next(iter(self._used.values())) > self.ttl:
                self._used.popitem(last=False)
            if nonce in self._used:
                return False
            while len(self._used) >= self.limit:
                self._used.popitem(last=False)
            self._used[nonce] = at
        return True


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
