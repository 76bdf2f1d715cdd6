"""RFC 5424 forwarding of audit entries and verdicts, received by real local receivers
(UDP, TCP with octet counting, unix datagram) and parsed here independently of the sender."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import Settings, load_settings
from gateway.store.repository import Store
from gateway.syslog import Event, Severity, SyslogForwarder, format_rfc5424
from tests.store.seed import add_message

_HEADER = re.compile(
    rb"^<(\d{1,3})>1 (\S+) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) (.*)$", re.S
)
_PARAM = re.compile(r'\s([^=\s\]"]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')


def parse(data: bytes) -> dict[str, object]:
    """A strict reader of what a SIEM would see: header, one SD element, optional MSG."""
    match = _HEADER.match(data)
    assert match, data
    pri, ts, host, app, procid, msgid, rest = match.groups()
    text = rest.decode("utf-8")
    assert text.startswith("["), text
    end, i = -1, 1
    while i < len(text):  # the SD element ends at the first unescaped ]
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "]":
            end = i
            break
        i += 1
    assert end > 0, text
    sd, msg = text[1:end], text[end + 1 :]
    sd_id, _, params_text = sd.partition(" ")
    params = {k: re.sub(r"\\([\"\\\]])", r"\1", v) for k, v in _PARAM.findall(" " + params_text)}
    assert "\n" not in text and "\r" not in text
    return {
        "pri": int(pri),
        "ts": ts.decode(),
        "host": host.decode(),
        "app": app.decode(),
        "msgid": msgid.decode(),
        "sd_id": sd_id,
        "params": params,
        "msg": msg,
    }


class Receiver:
    def __init__(self, kind: str, path: Path | None = None) -> None:
        self.records: list[bytes] = []
        self.kind = kind
        self._lock = threading.Lock()
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        elif kind == "unix":
            assert path is not None
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(path))
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen()
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.sock.getsockname()}"
        host, port = self.sock.getsockname()
        return f"{self.kind}:{host}:{port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.kind == "tcp":
                    conn, _ = self.sock.accept()
                    self._stream(conn)
                else:
                    data = self.sock.recv(65535)
                    with self._lock:
                        self.records.append(data)
            except (TimeoutError, OSError):
                continue

    def _stream(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buf += chunk
                while b" " in buf:  # RFC 6587 octet counting: "<len> <msg>"
                    length, _, rest = buf.partition(b" ")
                    assert length.isdigit(), buf[:40]
                    if len(rest) < int(length):
                        break
                    with self._lock:
                        self.records.append(rest[: int(length)])
                    buf = rest[int(length) :]

    def wait(self, n: int) -> list[dict[str, object]]:
        for _ in range(200):
            with self._lock:
                if len(self.records) >= n:
                    return [parse(r) for r in self.records]
            self._stop.wait(0.05)
        with self._lock:
            raise AssertionError(f"got {len(self.records)} records, expected {n}")

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def _settings(tmp_path: Path, target: str, **extra: object) -> Settings:
    return load_settings(
        storage={"data_dir": str(tmp_path)},
        syslog={"target": target, "timeout": "2s", **extra},
        smtp={"hostname": "mugai.town.example.lg.jp"},
    )


def test_format_escapes_and_bounds() -> None:
    event = Event(
        Severity.WARNING,
        "VERDICT",
        "verdict",
        (
            ("from", 'a"b\\c]d@evil.example'),
            ("job", "x\r\n<13>1 - forged - - - - injected"),
            ("big", "あ" * 5000),
        ),
        msg="line1\nline2",
    )
    data = format_rfc5424(
        event, facility=16, hostname="host name\n", app_name="mugai", max_bytes=2048
    )
    assert len(data) <= 2048
    rec = parse(data)
    assert rec["pri"] == 16 * 8 + 4
    assert rec["host"] == "host_name_"
    assert rec["sd_id"] == "verdict@32473"
    params = rec["params"]
    assert isinstance(params, dict)
    assert params["from"] == 'a"b\\c]d@evil.example'
    assert "\n" not in params["job"] and "\r" not in params["job"]
    assert params["big"].startswith("あ") and params["big"].endswith("…")


def test_bidi_and_c1_controls_never_reach_the_siem() -> None:
    event = Event(
        Severity.WARNING,
        "VERDICT",
        "verdict",
        (("from", "moc.live\u202e@x.example"), ("subject", "a\x85<13>1 forged")),
        msg="請求書\u202efdp.exe\u2028next",
    )
    data = format_rfc5424(event, facility=16, hostname="h", app_name="mugai", max_bytes=2048)
    text = data.decode("utf-8")
    assert not any(c in text for c in "\u202e\x85\u2028\n\r")
    params = parse(data)["params"]
    assert isinstance(params, dict)
    assert params["from"] == "moc.live⟨U+202E⟩@x.example"
    assert params["subject"] == "a⟨U+0085⟩<13>1 forged"


def test_small_max_bytes_still_parses() -> None:
    event = Event(Severity.INFO, "AUDIT", "audit", tuple((f"k{i}", "]" * 300) for i in range(8)))
    data = format_rfc5424(event, facility=1, hostname="h", app_name="a", max_bytes=480)
    assert len(data) <= 480
    rec = parse(data)
    assert set(rec["params"]) == {f"k{i}" for i in range(8)}  # type: ignore[arg-type]


def _new_events(store: Store) -> None:
    store.audit("token:alice", "original.read", "m1", {"why": "確認"})
    add_message(store, status="quarantined", mail_from="bad@evil.example", reason="virus_found")
    add_message(store, status="delivered", mail_from="good@example.jp")


def test_udp_forwards_only_what_is_new(
    store: Store, tmp_path: Path, receivers: list[Receiver]
) -> None:
    store.audit("system", "before.enabling")
    add_message(store, status="delivered")
    rx = Receiver("udp")
    receivers.append(rx)
    fwd = SyslogForwarder(_settings(tmp_path, rx.target), store)
    assert fwd.poll_once() == 0  # enabling syslog does not replay the history
    _new_events(store)
    assert fwd.poll_once() == 3
    recs = rx.wait(3)
    audit = [r for r in recs if r["msgid"] == "AUDIT"]
    verdicts = [r for r in recs if r["msgid"] == "VERDICT"]
    assert len(audit) == 1 and len(verdicts) == 2
    assert audit[0]["params"]["action"] == "original.read"  # type: ignore[index]
    assert audit[0]["params"]["actor"] == "token:alice"  # type: ignore[index]
    assert audit[0]["host"] == "mugai.town.example.lg.jp"
    by_status = {r["params"]["status"]: r for r in verdicts}  # type: ignore[index]
    assert by_status["quarantined"]["pri"] == 16 * 8 + 4
    assert by_status["quarantined"]["params"]["reasons"] == "virus_found"  # type: ignore[index]
    assert by_status["quarantined"]["params"]["from"] == "bad@evil.example"  # type: ignore[index]
    assert by_status["delivered"]["pri"] == 16 * 8 + 6
    # Never the subject or body.
    assert not any(b"hello" in r or "件名".encode() in r for r in rx.records)
    assert fwd.poll_once() == 0  # nothing twice


def test_tcp_receiver_down_loses_nothing(
    store: Store, tmp_path: Path, receivers: list[Receiver]
) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens on this port now
    fwd = SyslogForwarder(_settings(tmp_path, f"tcp:127.0.0.1:{port}"), store)
    fwd.cursor()
    _new_events(store)
    with pytest.raises(OSError):
        fwd.poll_once()
    # A restart (a new forwarder, same cursor file) still has everything to send.
    rx = Receiver("tcp")
    receivers.append(rx)
    fwd2 = SyslogForwarder(_settings(tmp_path, rx.target), store)
    assert fwd2.poll_once() == 3
    recs = rx.wait(3)
    assert sorted(str(r["msgid"]) for r in recs) == ["AUDIT", "VERDICT", "VERDICT"]
    fwd2.stop()


def test_unix_datagram_socket(store: Store, tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver("unix", tmp_path / "log.sock")
    receivers.append(rx)
    fwd = SyslogForwarder(_settings(tmp_path, rx.target, facility="mail"), store)
    fwd.cursor()
    _new_events(store)
    assert fwd.poll_once() == 3
    assert {r["pri"] // 8 for r in rx.wait(3)} == {2}


def test_damaged_cursor_starts_at_the_end(
    store: Store, tmp_path: Path, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    rx = Receiver("udp")
    receivers.append(rx)
    _new_events(store)
    (tmp_path / "syslog.cursor").write_text("{not json", encoding="utf-8")
    fwd = SyslogForwarder(_settings(tmp_path, rx.target), store)
    assert fwd.poll_once() == 0
    assert "unreadable" in caplog.text and "job=-" in caplog.text
    store.audit("token:bob", "message.delete", "m2")
    assert fwd.poll_once() == 1


@pytest.mark.parametrize(
    "target", ["syslog.example:514", "udp:", "http://x", "tcp:host:0", "tcp:host:99999"]
)
def test_bad_target_is_refused(target: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        _settings(tmp_path, target)
