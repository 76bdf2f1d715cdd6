"""A DNS server on loopback for the tests (dnspython): TXT records from a dict, and the
failures a real resolver meets (no answer at all, SERVFAIL)."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset


class DnsStub:
    def __init__(self) -> None:
        self.txt: dict[str, bytes] = {}
        self.txt_many: dict[str, list[bytes]] = {}  # several TXT records on one name
        self.rr: dict[tuple[str, str], list[str]] = {}  # (name, "A"|"AAAA"|"MX"|…): rdata text
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
                data, peer = self.sock.recvfrom(65535)
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
            elif q.rdtype == dns.rdatatype.TXT and (name in self.txt or name in self.txt_many):
                values = self.txt_many.get(name) or [self.txt[name]]
                rdatas = [  # built from bytes: hostile records need not be text
                    dns.rdtypes.ANY.TXT.TXT(
                        dns.rdataclass.IN,
                        dns.rdatatype.TXT,
                        [v[i : i + 255] for i in range(0, len(v), 255)] or [b""],
                    )
                    for v in values
                ]
                reply.answer.append(dns.rrset.from_rdata_list(q.name, 60, rdatas))
            elif (name, dns.rdatatype.to_text(q.rdtype)) in self.rr:
                texts = self.rr[(name, dns.rdatatype.to_text(q.rdtype))]
                rdtype = dns.rdatatype.to_text(q.rdtype)
                reply.answer.append(dns.rrset.from_text_list(q.name, 60, "IN", rdtype, texts))
            elif any(n == name for n, _ in self.rr) or name in self.txt:
                pass  # the name exists, without this type: NOERROR, no answer
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()
