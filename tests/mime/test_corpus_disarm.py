"""Corpus regression tier for disarming: real phishing and Japanese mail (../shared/corpus).

Measures how much readable text ``disarm`` changes (it never adds or removes whitespace, so
whitespace-separated words compare one to one) and that every rebuilt message passes the
independent egress checker: a refusal here would be a real mail quarantined for nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.egress.check import check_message
from gateway.errors import EgressRefused, Permanent
from gateway.mime.defang import clean_text, disarm
from gateway.mime.parse import parse_message
from gateway.pipeline import sanitize_message
from gateway.settings import load_settings
from gateway.spool import JobMeta, new_id

SETTINGS = load_settings(None)
SUFFIXES = {".eml", ".txt", ".msg", ".raw", ".email", ""}


def _mails(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in SUFFIXES and path.stat().st_size < 2_000_000:
            yield path


def _meta() -> JobMeta:
    return JobMeta(id=new_id(), kind="mail", received_at=time.time())


@pytest.mark.corpus
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("group", ["mail-ja", "mail"])
def test_corpus_text_survives_and_nothing_delivered_is_refused(corpus: Path, group: str) -> None:
    limits = SETTINGS.sanitize
    words = changed_words = 0
    chars = changed_chars = 0
    japanese = japanese_kept = 0
    outcomes: Counter[str] = Counter()
    refused: list[tuple[str, str]] = []
    for path in _mails(corpus / group):
        raw = path.read_bytes()
        try:
            parsed = parse_message(
                raw,
                max_parts=limits.max_parts,
                max_depth=limits.max_depth,
                max_header_bytes=limits.max_header_bytes,
            )
        except Permanent:
            continue
        for body in parsed.bodies:
            if body.kind != "plain":
                continue
            before = clean_text(body.text)
            after = disarm(body.text).text
            b_words, a_words = before.split(), after.split()
            assert len(b_words) == len(a_words), path  # disarm never touches whitespace
            words += len(b_words)
            changed_words += sum(1 for x, y in zip(b_words, a_words, strict=True) if x != y)
            chars += len(before)
            changed_chars += abs(len(after) - len(before))
            jp_before = [c for c in before if "\u3040" <= c <= "\u9fff"]
            japanese += len(jp_before)
            japanese_kept += sum(1 for c in after if "\u3040" <= c <= "\u9fff")
        try:
            out = sanitize_message(raw, _meta(), SETTINGS, None)
        except Permanent as exc:
            outcomes[exc.reason] += 1
            continue
        try:
            check_message(out.data)
            outcomes["delivered"] += 1
        except EgressRefused as exc:
            outcomes[exc.reason] += 1
            refused.append((str(path.relative_to(corpus)), exc.detail))
    print(
        f"\n{group}: {dict(outcomes)}\n"
        f"  words changed by disarm: {changed_words}/{words}"
        f" ({100 * changed_words / max(words, 1):.2f} %)\n"
        f"  characters added: {changed_chars}/{chars}"
        f" ({100 * changed_chars / max(chars, 1):.2f} %)\n"
        f"  Japanese characters kept: {japanese_kept}/{japanese}"
    )
    for name, detail in refused[:20]:
        print("  refused:", name, detail)
    assert japanese_kept == japanese  # disarming never loses Japanese text
    assert outcomes["delivered"] > 0
    assert refused == [], refused[:5]
