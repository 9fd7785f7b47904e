#!/usr/bin/env python3
"""Opens N keep-alive client connections to a proxy, sends one request on
each and reads its response, then leaves them idle and reports the proxy's
resident memory (VmRSS of the pid and its children) before and after.
"""

import argparse
import os
import resource
import socket
import sys
import time


def rss_kb(pid):
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def read_response(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a response")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        body += data
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", required=True, help="host:port")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--label", default="proxy")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    n = args.conns
    if limit != resource.RLIM_INFINITY and n > limit - 64:
        print("  note: RLIMIT_NOFILE is %d; opening %d connections instead of %d"
              % (limit, limit - 64, n))
        n = limit - 64

    host, port = args.addr.rsplit(":", 1)
    addr = (host, int(port))
    request = b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"

    time.sleep(0.5)
    before = rss_kb(args.pid)
    socks = []
    errors = 0
    batch = 200
    for start in range(0, n, batch):
        group = []
        for _ in range(min(batch, n - start)):
            try:
                s = socket.create_connection(addr, timeout=10)
                s.sendall(request)
                group.append(s)
            except OSError:
                errors += 1
        for s in group:
            try:
                if read_response(s) != 200:
                    errors += 1
                socks.append(s)
            except (OSError, ConnectionError):
                errors += 1
                s.close()
    time.sleep(2)
    after = rss_kb(args.pid)

    # How many are still open (a proxy may not close idle ones this early).
    open_count = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(1)
            if data:
                open_count += 1
        except BlockingIOError:
            open_count += 1
        except OSError:
            pass
    for s in socks:
        s.close()

    per_conn = (after - before) * 1024.0 / max(1, len(socks))
    print("  %-22s VmRSS before %7.1f MB, after %7.1f MB with %d idle connections "
          "(+%.1f MB, %.0f bytes/connection; %d still open, %d errors)"
          % (args.label, before / 1024.0, after / 1024.0, len(socks),
             (after - before) / 1024.0, per_conn, open_count, errors))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
