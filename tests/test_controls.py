"""One rule for invisible characters where people read sender text (console, CSV, syslog)."""

from __future__ import annotations

import pytest

from gateway.controls import is_hidden, visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("請求書\u202efdp.exe", "請求書⟨U+202E⟩fdp.exe"),  # bidi override
        ("a\x00b", "a⟨U+0000⟩b"),  # NUL
        ("a\x7fb", "a⟨U+007F⟩b"),  # DEL
        ("a\x85b", "a⟨U+0085⟩b"),  # C1 NEL: a line break to some log readers
        ("a\u2028b", "a⟨U+2028⟩b"),  # line separator
        ("a\u200bb", "a⟨U+200B⟩b"),  # zero-width space
        ("\ufeffx", "⟨U+FEFF⟩x"),  # BOM
        ("a\r\nb", "a⟨U+000D⟩⟨U+000A⟩b"),
        ("x\ue000", "x⟨U+E000⟩"),  # private use
    ],
)
def test_hidden_characters_are_spelled_out(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_ordinary_japanese_and_spaces_are_unchanged() -> None:
    text = "総務課　山田 <yamada@town.example.lg.jp> ①㈱Ⅱ"
    assert visible(text) == text
    assert not any(is_hidden(c) for c in text)
