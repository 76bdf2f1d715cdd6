"""A DNS server on loopback for the tests (dnspython): TXT records from a dict, and the
failures a real resolver meets (no answer at all, SERVFAIL)."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsStub:
    def __init__(self) -> None:
        self.txt: dict[str, bytes] = {}
        self.silent: set[str] = set()  # names never answered (timeouts)
        self.servfail: set[str] = set()
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            q = query.question[0]
            name = q.name.to_text().rstrip(".").lower()
            self.queries.append(name)
            if name in self.silent:
                continue
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            if name in self.servfail:
                reply.set_rcode(dns.rcode.SERVFAIL)
            elif q.rdtype == dns.rdatatype.TXT and name in self.txt:
                value = self.txt[name]
                chunks = " ".join(
                    '"' + value[i : i + 255].decode() + '"' for i in range(0, len(value), 255)
                )
                reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "TXT", chunks))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()
