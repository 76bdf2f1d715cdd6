"""DNS TXT look-ups for DKIM with a hard bound: a timeout or any DNS failure is "no answer",
which the caller reports as ``temperror`` (shown as unknown), never a crash or a long wait."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import dns.exception
import dns.resolver

log = logging.getLogger(__name__)

# Every TXT record on a name (each one's strings joined), in answer order; () when the
# name has none. DMARC must see them all: two v=DMARC1 records mean "no policy" (RFC 7489
# §6.6.3), and an unrelated TXT first must not hide the real one.
TxtLookup = Callable[[str], tuple[bytes, ...]]
_MAX_TXT = 16 * 1024  # a DKIM key record is < 1 KiB; anything huge is refused
_MAX_RECORDS = 16  # more TXT records on one name than this is refused, not parsed
_TTL, _FAIL_TTL, _CACHE_MAX = 300.0, 60.0, 1024


class DnsUnavailable(Exception):
    """The look-up did not finish (timeout, SERVFAIL, no server): the answer is unknown."""


def make_resolver(nameservers: Sequence[str], timeout: float) -> dns.resolver.Resolver:
    """``nameservers``: "192.0.2.53" or "127.0.0.1:5353" ([::1]:53 for IPv6); empty ⇒ the
    system's resolv.conf. No cache of its own: callers decide what to keep."""
    from gateway.settings import split_hostport

    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        pairs = [split_hostport(n, 53) for n in nameservers]
        resolver.nameservers = [host for host, _ in pairs]
        resolver.nameserver_ports = {host: port for host, port in pairs}
    resolver.timeout = timeout
    resolver.lifetime = timeout  # the whole look-up, every retry included
    resolver.cache = None
    return resolver


def make_lookup(nameservers: Sequence[str], timeout: float) -> TxtLookup:
    """TXT look-ups through ``make_resolver``, answers and failures cached briefly."""
    resolver = make_resolver(nameservers, timeout)

    cache: dict[str, tuple[float, tuple[bytes, ...], bool]] = {}
    lock = threading.Lock()

    def lookup(name: str) -> tuple[bytes, ...]:
        # A burst of mail from one signer asks for one key: cache answers (and, shorter,
        # failures, so a dead resolver costs one timeout a minute, not one per message).
        key = name.lower()
        now = time.monotonic()
        with lock:
            hit = cache.get(key)
            if hit is not None and hit[0] > now:
                if hit[2]:
                    raise DnsUnavailable("cached failure")
                return hit[1]
        try:
            value = _resolve(name)
        except DnsUnavailable:
            _remember(key, now + _FAIL_TTL, (), True)
            raise
        _remember(key, now + _TTL, value, False)
        return value

    def _remember(key: str, until: float, value: tuple[bytes, ...], failed: bool) -> None:
        with lock:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = (until, value, failed)

    def _resolve(name: str) -> tuple[bytes, ...]:
        try:
            answer = resolver.resolve(name.rstrip(".") + ".", "TXT", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return ()  # the name does not exist: a real, permanent answer
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(type(exc).__name__) from exc
        if answer.rrset is None:
            return ()
        if len(answer.rrset) > _MAX_RECORDS:
            raise DnsUnavailable("too many TXT records")
        values = tuple(b"".join(rdata.strings) for rdata in answer.rrset)
        if sum(len(v) for v in values) > _MAX_TXT:
            raise DnsUnavailable("TXT records too large")
        return values

    return lookup
