"""Builds Outlook .msg files for the tests: a small compound-file (CFB v3) writer plus the
MS-OXMSG layout (property streams, attachments, embedded messages).

Written here because no permissively licensed library writes .msg files; olefile only reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SECTOR, MINI, CUTOFF = 512, 64, 4096
FREE, END, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


@dataclass
class Node:
    name: str
    data: bytes | None = None  # None ⇒ storage
    kids: list[Node] = field(default_factory=list)

    def add(self, node: Node) -> Node:
        self.kids.append(node)
        return node


def _key(n: Node) -> tuple[int, str]:
    return (len(n.name), n.name.upper())


def cfb(root_kids: list[Node]) -> bytes:
    root = Node("Root Entry", None, root_kids)
    entries: list[Node] = []

    def number(n: Node) -> None:
        entries.append(n)
        for k in n.kids:
            number(k)

    number(root)
    index = {id(n): i for i, n in enumerate(entries)}
    # Mini stream: every stream under the cutoff, in 64-byte mini sectors.
    mini = bytearray()
    minifat: list[int] = []
    starts: dict[int, int] = {}
    big: list[Node] = []
    for n in entries[1:]:
        if n.data is None:
            continue
        if len(n.data) < CUTOFF:
            count = max(1, -(-len(n.data) // MINI)) if n.data else 0
            if count == 0:
                starts[id(n)] = END
                continue
            first = len(mini) // MINI
            starts[id(n)] = first
            mini += n.data.ljust(count * MINI, b"\0")
            minifat += [first + i + 1 for i in range(count - 1)] + [END]
        else:
            big.append(n)
    dir_bytes_len = -(-len(entries) // 4) * SECTOR
    chains: list[tuple[str, bytes]] = [("dir", b"")]  # filled later
    minifat_b = b"".join(struct.pack("<I", v) for v in minifat)
    if minifat_b:
        chains.append(("minifat", minifat_b))
    if mini:
        chains.append(("ministream", bytes(mini)))
    for n in big:
        chains.append((f"big{id(n)}", n.data or b""))

    def sectors(length: int) -> int:
        return max(1, -(-length // SECTOR))

    sizes = [sectors(dir_bytes_len)] + [sectors(len(d)) for _, d in chains[1:]]
    n_fat = 1
    while True:
        total = n_fat + sum(sizes)
        need = -(-total * 4 // SECTOR)
        if need <= n_fat:
            break
        n_fat = need
    assert n_fat <= 109
    fat = [FATSECT] * n_fat
    first_of: dict[str, int] = {}
    for (name, _), size in zip(chains, sizes, strict=True):
        first_of[name] = len(fat)
        fat += [len(fat) + i + 1 for i in range(size - 1)] + [END]
    fat += [FREE] * (n_fat * SECTOR // 4 - len(fat))

    def dirent(n: Node, i: int) -> bytes:
        name = n.name.encode("utf-16-le") + b"\0\0"
        kind = 5 if i == 0 else (1 if n.data is None else 2)
        kids = sorted(n.kids, key=_key)
        child = index[id(kids[0])] if kids else NOSTREAM
        if i == 0:
            start = first_of["ministream"] if mini else END
            size = len(mini)
        elif n.data is None:
            start, size = 0, 0
        elif len(n.data) < CUTOFF:
            start, size = starts[id(n)], len(n.data)
        else:
            start, size = first_of[f"big{id(n)}"], len(n.data)
        return (
            name.ljust(64, b"\0")
            + struct.pack("<HBB", len(name), kind, 1)
            + struct.pack("<III", NOSTREAM, right[id(n)], child)
            + b"\0" * 16
            + b"\0" * 4
            + b"\0" * 16
            + struct.pack("<IQ", start, size)
        )

    # Siblings: a chain through the right pointers in CFB name order (a valid, if degenerate,
    # tree: every node black is allowed by readers).
    right: dict[int, int] = {id(root): NOSTREAM}
    for n in entries:
        kids = sorted(n.kids, key=_key)
        nexts: list[Node | None] = [*kids[1:], None]
        for a, b in zip(kids, nexts[: len(kids)], strict=True):
            right[id(a)] = index[id(b)] if b is not None else NOSTREAM
    directory = b"".join(dirent(n, i) for i, n in enumerate(entries))
    directory = directory.ljust(dir_bytes_len, b"\0")
    # Unused directory slots must be empty entries with NOSTREAM pointers.
    unused = (dir_bytes_len - len(entries) * 128) // 128
    empty = b"\0" * 66 + b"\0\0" + struct.pack("<III", NOSTREAM, NOSTREAM, NOSTREAM) + b"\0" * 48
    directory = directory[: len(entries) * 128] + empty * unused
    chains[0] = ("dir", directory)
    minifat_first = first_of["minifat"] if minifat_b else END
    minifat_count = sectors(len(minifat_b)) if minifat_b else 0
    difat = [i for i in range(n_fat)] + [FREE] * (109 - n_fat)
    header = (
        bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
        + struct.pack("<IIIIIIIII", 0, n_fat, first_of["dir"], 0, CUTOFF, minifat_first,
                      minifat_count, END, 0)
        + b"".join(struct.pack("<I", v) for v in difat)
    )  # fmt: skip
    assert len(header) == SECTOR
    body = b"".join(struct.pack("<I", v) for v in fat)
    for (_, data), size in zip(chains, sizes, strict=True):
        body += data.ljust(size * SECTOR, b"\0")
    return header + body


# --- MS-OXMSG --------------------------------------------------------------------------------
def _string(pid: int, value: str) -> Node:
    return Node(f"__substg1.0_{pid:04X}001F", value.encode("utf-16-le"))


def _binary(pid: int, value: bytes) -> Node:
    return Node(f"__substg1.0_{pid:04X}0102", value)


def _props(header: int, ints: dict[int, int], times: dict[int, int] | None = None) -> Node:
    rows = b"".join(
        struct.pack("<IIiI", (pid << 16) | 0x0003, 6, value, 0) for pid, value in ints.items()
    )
    rows += b"".join(
        struct.pack("<IIQ", (pid << 16) | 0x0040, 6, ticks) for pid, ticks in (times or {}).items()
    )
    return Node("__properties_version1.0", b"\0" * header + rows)


@dataclass
class Attachment:
    filename: str
    data: bytes = b""
    embedded: Message | None = None


@dataclass
class Message:
    subject: str = ""
    sender_name: str = ""
    sender_email: str = ""
    to: str = ""
    cc: str = ""
    body: str = ""
    html: bytes | None = None
    rtf_compressed: bytes | None = None
    attachments: list[Attachment] = field(default_factory=list)
    submit_ticks: int = 133_000_000_000_000_000  # 2022-06-16 (100 ns since 1601)

    def nodes(self, header: int) -> list[Node]:
        out = [
            _props(header, {0x3FDE: 65001}, {0x0039: self.submit_ticks}),
            Node("__nameid_version1.0", None, [Node("__substg1.0_00020102", b"")])
            if header == 32 else None,
        ]  # fmt: skip
        nodes = [n for n in out if n is not None]
        for pid, value in (
            (0x0037, self.subject), (0x0C1A, self.sender_name), (0x5D01, self.sender_email),
            (0x0E04, self.to), (0x0E03, self.cc), (0x1000, self.body),
        ):  # fmt: skip
            if value:
                nodes.append(_string(pid, value))
        if self.html is not None:
            nodes.append(_binary(0x1013, self.html))
        if self.rtf_compressed is not None:
            nodes.append(_binary(0x1009, self.rtf_compressed))
        for i, att in enumerate(self.attachments):
            store = Node(f"__attach_version1.0_#{i:08X}")
            if att.embedded is not None:
                store.add(_props(8, {0x3705: 5}))
                inner = Node("__substg1.0_3701000D", None, att.embedded.nodes(24))
                store.add(inner)
            else:
                store.add(_props(8, {0x3705: 1}))
                store.add(_binary(0x3701, att.data))
            store.add(_string(0x3707, att.filename))
            nodes.append(store)
        return nodes

    def build(self) -> bytes:
        return cfb(self.nodes(32))
