"""One rule for invisible characters where people read sender text (console, CSV, syslog)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.controls import is_hidden, strip_hidden, visible


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


# --------------------------------------------------------------------------- name cleaners
# U+202E, U+200B, NEL, LS, NUL, DEL, C0; then what only some copies removed: private use,
# unassigned.
_HIDDEN = ["\u202e", "\u200b", "\x85", "\u2028", "\x00", "\x7f", *map(chr, range(1, 0x20))]
_HIDDEN += ["\ue000", "\u0378"]


def _name_sites() -> dict[str, Callable[[str], str]]:
    from gateway.api.display import real_extension
    from gateway.api.disposition import safe_filename
    from gateway.mime.headers_block import one_line
    from gateway.mime.notice import display_name
    from gateway.mime.rebuild import _one_line
    from gateway.sanitize.names import clean_name

    return {
        "sanitize.names.clean_name": lambda s: clean_name(s, "pdf"),
        "mime.headers_block.one_line": one_line,
        "mime.rebuild._one_line": _one_line,
        "mime.notice.display_name": display_name,
        "api.disposition.safe_filename": safe_filename,
        "api.display.real_extension": lambda s: real_extension(s + ".exe"),
    }


@pytest.mark.parametrize("site", sorted(_name_sites()))
@pytest.mark.parametrize("ch", _HIDDEN, ids=lambda c: f"U+{ord(c):04X}")
def test_every_name_cleaner_removes_hidden_characters(site: str, ch: str) -> None:
    """One rule (strip_hidden) behind every site that cleans a sender's name."""
    out = _name_sites()[site](f"請求{ch}書{ch}.txt")
    assert ch not in out, (site, out)
    assert "請求" in out or site == "api.display.real_extension"


def test_strip_hidden_removes_or_spaces_line_breaks() -> None:
    assert strip_hidden("a\u202eb\u200bc\ue000d\x00e") == "abcde"
    assert strip_hidden("a\r\nb\u2028c\td", breaks=" ") == "a  b c d"
    assert strip_hidden("a\x0bb\x85c", breaks=" ") == "abc"  # only real breaks are spaced
    text = "総務課　山田 ①㈱Ⅱ"
    assert strip_hidden(text) == text
