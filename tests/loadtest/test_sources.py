from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gateway.loadtest.headers import (
    header_recipients,
    header_sender,
    message_id,
    rewrite_recipient,
    with_message_id,
)
from gateway.loadtest.sources import (
    Message,
    Skip,
    estimate_count,
    iter_items,
    looks_like_mail,
)
from tests.loadtest.mails import eml, write_folder, write_maildir, write_mbox


def _split(items: list[Message | Skip]) -> tuple[list[Message], Counter[str]]:
    msgs = [i for i in items if isinstance(i, Message)]
    skips = Counter(i.reason for i in items if isinstance(i, Skip))
    return msgs, skips


def test_folder_recursive_with_bad_inputs(tmp_path: Path) -> None:
    datas = write_folder(tmp_path, 7)
    (tmp_path / "notes.txt").write_text("just some text\nno headers here\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "d0" / "dangling.eml").symlink_to(tmp_path / "nowhere")
    (tmp_path / "big.eml").write_bytes(eml(99) + b"x" * 5000)

    msgs, skips = _split(list(iter_items([tmp_path], max_bytes=2000)))

    assert sorted(m.data for m in msgs) == sorted(datas)
    assert skips == {"not_mail": 2, "empty": 1, "unreadable": 1, "too_large": 1}
    assert estimate_count([tmp_path]) >= len(datas)


def test_mbox_with_from_lines_in_bodies(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    write_mbox(path, 4)
    raw = path.read_bytes()
    assert raw.count(b"\nFrom ") == 3  # separators only: body lines were quoted

    msgs, skips = _split(list(iter_items([path])))

    assert not skips
    assert [message_id(m.data) for m in msgs] == [f"msg{i}@example.net" for i in range(4)]
    for m in msgs:
        assert not m.data.startswith(b"From ")  # the separator line is not part of the message
        assert b">From the minutes" in m.data  # raw bytes kept, quoting included
    assert estimate_count([path]) == 4


def test_maildir_directly_and_inside_a_folder(tmp_path: Path) -> None:
    write_maildir(tmp_path / "box", 3)
    write_maildir(tmp_path / "tree" / "user" / "Maildir", 2)
    (tmp_path / "tree" / "loose.eml").write_bytes(eml(50))

    direct, skips = _split(list(iter_items([tmp_path / "box"])))
    nested, skips2 = _split(list(iter_items([tmp_path / "tree"])))

    assert len(direct) == 3 and not skips
    assert len(nested) == 3 and not skips2


def test_single_file_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "one.eml").write_bytes(eml(1))
    msgs, skips = _split(list(iter_items([tmp_path / "one.eml", tmp_path / "gone.eml"])))
    assert len(msgs) == 1 and skips == {"unreadable": 1}


def test_looks_like_mail() -> None:
    assert looks_like_mail(eml(1))
    assert looks_like_mail(b"Content-Type: text/plain\n\nbody\n")
    assert not looks_like_mail(b"%PDF-1.7\n")
    assert not looks_like_mail(b"  \r\nFrom: a@b\r\n\r\n")
    assert not looks_like_mail(b"key: value\nother: thing\n\n")


def test_with_message_id_replaces_folded_and_keeps_body() -> None:
    data = (
        b"From: a@example.net\r\nMessage-ID:\r\n <old@x>\r\nSubject: s\r\n\r\n"
        b"Message-ID: <in-body@x>\r\n"
    )
    out = with_message_id(data, "new@y")
    assert out == (
        b"From: a@example.net\r\nMessage-ID: <new@y>\r\nSubject: s\r\n\r\n"
        b"Message-ID: <in-body@x>\r\n"
    )
    assert message_id(out) == "new@y"


def test_with_message_id_inserts_with_the_message_line_ending() -> None:
    out = with_message_id(eml(3, mid=False, eol=b"\n"), "fresh@y")
    assert out.startswith(b"Message-ID: <fresh@y>\nFrom: ")
    assert with_message_id(b"Subject: x", "n@y") == b"Message-ID: <n@y>\nSubject: x\n"


def test_envelope_from_headers() -> None:
    data = eml(1, to="A <a@example.com>, b@example.com", cc="a@example.com, 壊れた")
    assert header_recipients(data) == ["a@example.com", "b@example.com"]
    assert header_sender(data) == "sender@example.net"
    assert header_sender(b"Return-Path: <>\nFrom: x@example.net\n\n") == ""
    assert rewrite_recipient("a@example.com", "@town.example.lg.jp") == "a@town.example.lg.jp"
    assert rewrite_recipient("a@example.com", "u@town.example.lg.jp") == "u@town.example.lg.jp"


def test_hostile_address_field_does_not_exhaust_the_parser() -> None:
    # The stdlib address parser recurses once per group ("x:"), like corpus
    # adversarial/mail/mimekit/stack-overflow.txt.
    data = b'From: a@example.net\nTo: "t" <t@example.com>, ' + b"x:" * 3000 + b"\n\nbody\n"
    assert header_recipients(data) == ["t@example.com"]


@pytest.mark.corpus
def test_corpus_every_message_prepares(corpus: Path) -> None:
    from gateway.loadtest.replay import ID_DOMAIN, Outgoing, ReplayConfig, prepare

    cfg = ReplayConfig("127.0.0.1", 25, rcpt="@town.example.lg.jp", loop=True)
    for item in iter_items([corpus / "mail", corpus / "mail-ja", corpus / "adversarial"]):
        if isinstance(item, Message):
            out = prepare(item, cfg, "run", 1)
            assert isinstance(out, Outgoing), item.origin
            assert message_id(out.data) == f"run.1@{ID_DOMAIN}"
