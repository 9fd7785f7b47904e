"""A tiny real UDP DNS server for the Sluice integration tests (pure Python).

    srv = DNSServer({"upstream.test": ("127.0.0.1", 2)}).start()
    srv.addr                     # ("127.0.0.1", port), bound on port 0
    srv.set("upstream.test", "127.0.0.2", ttl=2)
    srv.queries("upstream.test") # how many queries named it (any type)
    srv.queries("upstream.test", "A")
    srv.stop()

Answers, per question (only the first question of a message is looked at):
  A     for a name in the table: NOERROR with one A record carrying the
        table's IP and TTL; for an unknown name: NXDOMAIN
  AAAA  for a name in the table: NOERROR with no answer (the name exists,
        it has no IPv6 address); for an unknown name: NXDOMAIN
  other NOERROR, no answer (or NXDOMAIN for an unknown name)

Names are matched case-insensitively and the question is echoed byte for byte
(resolvers such as evdns randomise the case of the name they ask for, "0x20",
and check that the reply's question matches). `silent=True` makes a server
that receives and counts queries but never answers: a black-hole name server.
Every received query is also recorded in `.log` as (time, name, qtype).
"""

import socket
import struct
import threading
import time

QTYPES = {1: "A", 28: "AAAA", 5: "CNAME", 2: "NS", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
          33: "SRV", 255: "ANY"}
QTYPE_NUM = {v: k for k, v in QTYPES.items()}

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3


class ParseError(Exception):
    pass


def parse_question(msg):
    """(id, flags, qname_bytes_raw, qname_lower_str, qtype, qclass, question_end)."""
    if len(msg) < 12:
        raise ParseError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if qdcount < 1:
        raise ParseError("no question")
    off = 12
    labels = []
    while True:
        if off >= len(msg):
            raise ParseError("truncated name")
        n = msg[off]
        if n & 0xC0:
            raise ParseError("compression in a question")  # never sent by resolvers
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise ParseError("truncated label")
        labels.append(msg[off:off + n])
        off += n
    if off + 4 > len(msg):
        raise ParseError("truncated question")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    off += 4
    name = b".".join(labels).decode("ascii", "replace").lower()
    return qid, flags, name, qtype, qclass, off


def build_reply(query, qid, flags, question, rcode, answers=()):
    """question: the raw question bytes (name + type + class) as received.
    answers: list of (type, class, ttl, rdata)."""
    rd = flags & 0x0100
    opcode = flags & 0x7800
    out_flags = 0x8000 | opcode | 0x0400 | rd | 0x0080 | (rcode & 0xF)  # QR AA RD RA
    head = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0)
    body = bytearray(question)
    for rtype, rclass, ttl, rdata in answers:
        body += b"\xc0\x0c"  # pointer to the question name at offset 12
        body += struct.pack("!HHIH", rtype, rclass, ttl, len(rdata))
        body += rdata
    return head + bytes(body)


class DNSServer:
    def __init__(self, table=None, host="127.0.0.1", port=0, silent=False):
        self._lock = threading.Lock()
        self._table = {}
        for name, (ip, ttl) in (table or {}).items():
            self.set(name, ip, ttl)
        self.silent = silent
        self._counts = {}
        self.log = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.addr = self.sock.getsockname()
        self.host, self.port = self.addr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dnsserver", daemon=True)

    # --- table

    def set(self, name, ip, ttl):
        socket.inet_aton(ip)  # validates
        with self._lock:
            self._table[name.lower().rstrip(".")] = (ip, int(ttl))

    def remove(self, name):
        with self._lock:
            self._table.pop(name.lower().rstrip("."), None)

    # --- counters

    def queries(self, name, qtype=None):
        name = name.lower().rstrip(".")
        with self._lock:
            if qtype is None:
                return sum(n for (nm, _), n in self._counts.items() if nm == name)
            return self._counts.get((name, qtype), 0)

    def total_queries(self):
        with self._lock:
            return sum(self._counts.values())

    def reset_counts(self):
        with self._lock:
            self._counts.clear()
            self.log.clear()

    # --- serving

    def answer(self, msg):
        """The reply to msg (bytes), or None to stay silent."""
        try:
            qid, flags, name, qtype, qclass, qend = parse_question(msg)
        except ParseError:
            if len(msg) < 12:
                return None
            qid, flags = struct.unpack("!HH", msg[:4])
            return struct.pack("!HHHHHH", qid, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
        tname = QTYPES.get(qtype, str(qtype))
        with self._lock:
            key = (name, tname)
            self._counts[key] = self._counts.get(key, 0) + 1
            self.log.append((time.monotonic(), name, tname))
            entry = self._table.get(name)
        if self.silent:
            return None
        if flags & 0x8000:  # a response, not a query
            return None
        question = msg[12:qend]
        if entry is None:
            return build_reply(msg, qid, flags, question, RCODE_NXDOMAIN)
        ip, ttl = entry
        if qtype == 1 and qclass == 1:
            return build_reply(msg, qid, flags, question, RCODE_NOERROR,
                               [(1, 1, ttl, socket.inet_aton(ip))])
        return build_reply(msg, qid, flags, question, RCODE_NOERROR)

    def _run(self):
        while not self._stop.is_set():
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                continue
            reply = self.answer(msg)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def query(server_addr, name, qtype="A", timeout=2.0, qid=0x1234):
    """A minimal client for checking the server: (rcode, [(type, ttl, rdata)], raw)."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + \
        struct.pack("!HH", QTYPE_NUM[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(msg, server_addr)
        raw, _ = s.recvfrom(4096)
    finally:
        s.close()
    rid, flags, qd, an = struct.unpack("!HHHH", raw[:8])
    if rid != qid or not flags & 0x8000:
        raise ParseError("bad reply header")
    if raw[12:12 + len(qname) + 4] != msg[12:]:
        raise ParseError("question not echoed")
    off = 12 + len(qname) + 4
    answers = []
    for _ in range(an):
        if raw[off] & 0xC0 == 0xC0:
            off += 2
        else:
            while raw[off]:
                off += raw[off] + 1
            off += 1
        rtype, _rclass, ttl, rdlen = struct.unpack("!HHIH", raw[off:off + 10])
        off += 10
        answers.append((QTYPES.get(rtype, rtype), ttl, raw[off:off + rdlen]))
        off += rdlen
    return flags & 0xF, answers, raw
