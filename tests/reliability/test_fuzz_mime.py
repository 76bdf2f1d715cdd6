"""6. Property-based fuzzing of parse, Japanese decoding and the whole rebuild (CI-sized; the
long runs are bench/fuzz/run.py). Bugs found become the regression tests at the bottom."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.reliability import fuzz_targets as ft

LONG = os.environ.get("MUGAI_LONG") == "1"
CI = settings(
    max_examples=2000 if LONG else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
pytestmark = pytest.mark.timeout(900 if LONG else 300)


@CI
@given(ft.messages())
def test_parse_raises_only_permanent(raw: bytes) -> None:
    ft.check_parse(raw)


@CI
@given(ft.messages())
def test_sanitize_output_passes_the_independent_checks(raw: bytes) -> None:
    ft.check_sanitize(raw)


@CI
@given(ft.encoded_word_header())
@example("=?utf-8?B?aGkNCkJjYzogdmljdGltQGV4YW1wbGUuY29t?=")  # "hi\r\nBcc: victim@…"
@example("=?ISO-2022-JP?B?GyRC?= =?ISO-2022-JP?B?JDMbKEI=?=")  # escape split across words
def test_header_decoding_is_total_and_single_line(raw: str) -> None:
    ft.check_header_text(raw)


@CI
@given(ft.plain_texts, st.sampled_from(ft.CODECS))
def test_bodies_round_trip_under_their_own_label(text: str, codec: str) -> None:
    ft.check_body_roundtrip(text, codec)


@CI
@given(st.binary(max_size=400), st.sampled_from(ft.LABELS))
def test_any_bytes_under_any_label_decode(data: bytes, label: str) -> None:
    ft.check_bytes(data, label)
