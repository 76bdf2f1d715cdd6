"""Header-From vs envelope-From, and display names that show someone else's address.

``"総務課 soumu@town.example.lg.jp" <x@evil.example>`` shows a municipal address in the
name while the mail comes from evil.example: mail clients often show only the name. The name
is normalised first (NFKC: full-width ＠ and letters, and separators such as "[at]"), so the
usual disguises do not hide the address.
"""

from __future__ import annotations

import re
import unicodedata

_ADDR_IN_NAME = re.compile(r"[\w.+-]+\s*@\s*((?:[\w-]+\.)+[a-z]{2,63})", re.I)
_AT_WORDS = re.compile(r"\s*[\[(]\s*at\s*[\])]\s*", re.I)
# A bare domain in a name ("town.example.lg.jp 総務課"): only common endings, so that
# ordinary names with dots ("Ver.2") are not taken for domains.
_DOMAIN_IN_NAME = re.compile(
    r"\b((?:[a-z0-9-]+\.)+(?:lg\.jp|go\.jp|co\.jp|ne\.jp|or\.jp|ac\.jp|jp|com|net|org))\b",
    re.I,
)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(">").lower().rstrip(".")


def related(a: str, b: str) -> bool:
    """Same domain, or one a subdomain of the other (mail.example.jp and example.jp)."""
    if not a or not b:
        return False
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def envelope_mismatch(header_from: str, envelope_from: str) -> bool:
    """True when both are known and their domains are unrelated (bounces have no envelope)."""
    h, e = domain_of(header_from), domain_of(envelope_from)
    if not h or not e or "@" not in envelope_from:
        return False
    return not related(h, e)


def lookalike_domains(display_name: str, address: str) -> list[str]:
    """Domains shown in the display name that are not the sender address's own."""
    name = unicodedata.normalize("NFKC", display_name or "")
    name = _AT_WORDS.sub("@", name)
    own = domain_of(address)
    shown: list[str] = []
    for match in _ADDR_IN_NAME.finditer(name):
        shown.append(match.group(1).lower())
    for match in _DOMAIN_IN_NAME.finditer(name):
        shown.append(match.group(1).lower())
    return sorted({d for d in shown if not related(d, own)})[:5]
