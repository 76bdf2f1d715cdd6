from __future__ import annotations

from email.message import Message
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.disposition import content_disposition, safe_filename


def test_examples() -> None:
    assert content_disposition("見積書.pdf") == (
        "attachment; filename=\"___.pdf\"; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8.pdf"
    )
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\x\\evil.exe") == "evil.exe"
    assert safe_filename("\u202egpj.exe") == "gpj.exe"
    assert safe_filename("a\r\nb") == "ab"
    assert safe_filename("...") == "download"
    assert len(safe_filename("あ" * 1000)) == 150


@given(st.text(max_size=400))
def test_any_name_gives_one_safe_header(name: str) -> None:
    cd = content_disposition(name)
    assert cd.isascii() and cd.isprintable()
    assert cd.count('"') == 2 and cd.count(";") == 2
    msg = Message()
    msg["Content-Disposition"] = cd
    star = cd.split("filename*=UTF-8''", 1)[1]
    decoded = unquote(star)
    assert decoded == safe_filename(name)
    assert decoded and decoded.isprintable()
    assert not any(c in decoded for c in '/\\"\r\n\u202e')
