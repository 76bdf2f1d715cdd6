"""Small messages generated in code for the replay tests."""

from __future__ import annotations

import mailbox
from pathlib import Path


def eml(
    i: int,
    to: str = "staff@example.com",
    cc: str | None = None,
    mid: bool = True,
    eol: bytes = b"\r\n",
    extra: str = "",
) -> bytes:
    head = [
        "From: 送信者 <sender@example.net>",
        f"To: {to}",
        *([f"Cc: {cc}"] if cc else []),
        f"Subject: test {i}",
        "Date: Mon, 1 Apr 2024 09:00:00 +0900",
        *([f"Message-ID: <msg{i}@example.net>"] if mid else []),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    body = [f"本文 {i}", extra, ".leading dot line", "end"]
    text = eol.decode().join(head) + eol.decode() * 2 + eol.decode().join(body) + eol.decode()
    return text.encode("utf-8")


def write_folder(root: Path, count: int, **kw: object) -> list[bytes]:
    """``count`` .eml files spread over nested folders; returns their bytes in file order."""
    datas = []
    for i in range(count):
        sub = root / f"d{i % 3}" / "inner" if i % 2 else root
        sub.mkdir(parents=True, exist_ok=True)
        data = eml(i, **kw)  # type: ignore[arg-type]
        (sub / f"m{i:03}.eml").write_bytes(data)
        datas.append(data)
    return datas


def write_mbox(path: Path, count: int) -> None:
    """An mbox whose bodies contain lines starting with "From " (quoted as ">From " by mbox)."""
    box = mailbox.mbox(str(path))
    try:
        for i in range(count):
            box.add(eml(i, eol=b"\n", extra="From the minutes of the meeting:\nFrom here on"))
        box.flush()
    finally:
        box.close()


def write_maildir(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(str(path), create=True)
    for i in range(count):
        box.add(eml(i, eol=b"\n"))
