#!/usr/bin/env python3
"""A misbehaving plugin server of the tests' own, speaking Kong's ProtoBuf:1.

It hosts one plugin, `fake` (priority 1000, phases access and log, a config
with one string field `mode`), and serves the same protocol as go-pdk's
embedded server (plugin-protocol.md sections 1.2, 2 and 6), written by hand
with the standard library only: frames are a 4-byte little-endian length and
a payload; the few messages it needs (RpcCall, RpcReturn with
instance_status, String, KV, ExitArgs) are encoded and decoded here as
varints and length-delimited fields.

    python3 fakeserver.py -dump
        prints the ProtoBuf:1 plugin info (JSON) and exits
    python3 fakeserver.py -kong-prefix DIR [--behaviour B]
        listens on DIR/fake.socket, one thread per connection

An instance's behaviour is the `mode` of its config (from start_instance's
config JSON), else the server's --behaviour (default ok). Behaviours apply to
access events; log events are always answered cleanly. In access:

    ok                 get_header("x-in"), set_header("x-fake", <it>), end
    garbage            random bytes instead of a frame, then close
    oversized          a frame header announcing 1 GiB, then as many bytes as
                       the peer takes (at most 256 MiB), then close
    stall              never answers; waits until the gateway closes
    close_mid_event    reads the event, closes before any PDK call
    close_first_event  the first access event of each plugin entity
                       (__plugin_id) closes as close_mid_event; every later
                       one, on any instance, answers as ok
    close_after_write  set_header("x-fake", "before-close"), reads the
                       answer, closes
    bad_sequence       end marker, then an RpcReturn with a wrong sequence;
                       journals whether the gateway then closed the connection
    unknown_method     calls "kong.nope.nope", then finishes as ok would if
                       answered
    exit               kong.response.exit(418, "fake says no",
                       {"X-Fake-Exit": "teapot"}), then closes (as go-pdk)
    slow               sleeps 200 ms, then as ok
    crash              get_header("x-in"), then os._exit(1)
    scheme_https       kong.service.request.set_scheme("https"), end

As go-pdk does, a handle_event or close_instance for an unknown instance id
closes the connection without an answer, and so does any protocol error.

Everything goes to stderr, one line per step; every command and outcome is
also appended as a JSON line to DIR/fake-events.jsonl, which the tests read
(the process may be killed at any moment, so each line is written whole with
one write on an O_APPEND descriptor).
"""

import argparse
import itertools
import json
import os
import socket
import struct
import sys
import threading
import time

PLUGIN = "fake"
VERSION = "0.1.0"
PRIORITY = 1000
PHASES = ["access", "log"]
BEHAVIOURS = ("ok", "garbage", "oversized", "stall", "close_mid_event", "close_first_event",
              "close_after_write", "bad_sequence", "unknown_method", "exit", "slow", "crash",
              "scheme_https")

EXIT_STATUS = 418
EXIT_BODY = b"fake says no"
EXIT_HEADERS = {"X-Fake-Exit": "teapot"}

ONE_GIB = 1 << 30
OVERSIZED_MAX_SEND = 256 << 20
# The largest frame this server accepts from the gateway.
MAX_FRAME = 64 << 20

# RpcCall / RpcReturn oneof field numbers (plugin-protocol.md 2.2).
CMD_GET_PLUGIN_NAMES = 31
CMD_GET_PLUGIN_INFO = 32
CMD_START_INSTANCE = 33
CMD_GET_INSTANCE_STATUS = 34
CMD_CLOSE_INSTANCE = 35
CMD_HANDLE_EVENT = 36
RET_INSTANCE_STATUS = 33


# ------------------------------------------------------------------ protobuf by hand


class DecodeError(Exception):
    pass


def varint(n):
    """A protobuf varint; negative numbers as 10-byte two's complement (int32/int64)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, pos):
    shift = 0
    n = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return varint((num << 3) | 2) + varint(len(data)) + data


def fields(buf):
    """Decodes a message into [(field number, wire type, value)]: ints for
    varint and fixed fields, bytes for length-delimited ones."""
    out = []
    pos = 0
    buf = bytes(buf)
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise DecodeError("field number 0")
        if wt == 0:
            v, pos = read_varint(buf, pos)
        elif wt == 1:
            if pos + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            v = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise DecodeError("truncated length-delimited field %d" % num)
            v = buf[pos:pos + n]
            pos += n
        elif wt == 5:
            if pos + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            v = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise DecodeError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def first(buf, num, default=None):
    for n, _, v in fields(buf):
        if n == num:
            return v
    return default


def int32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def int64(v):
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


# --- messages

def msg_string(s):
    """kong_plugin_protocol.String{v}."""
    return field_bytes(1, s) if s else b""


def parse_string(payload):
    return first(payload, 1, b"").decode("utf-8", "replace")


def msg_value_string(s):
    """google.protobuf.Value{string_value}."""
    return field_bytes(3, s)


def msg_value(v):
    if isinstance(v, (list, tuple)):
        return field_bytes(6, b"".join(field_bytes(1, msg_value(x)) for x in v))
    return msg_value_string(v)


def msg_struct(d):
    return b"".join(field_bytes(1, field_bytes(1, k) + field_bytes(2, msg_value(v)))
                    for k, v in d.items())


def msg_kv(k, v):
    return field_bytes(1, k) + field_bytes(2, msg_value_string(v))


def msg_exit_args(status, body, headers):
    return field_varint(1, status) + field_bytes(2, body) + field_bytes(3, msg_struct(headers))


def rpc_call(seq, cmd, sub):
    """An RpcCall (the gateway's side; for self-checks)."""
    return field_varint(1, seq) + field_bytes(cmd, sub)


def rpc_return(seq, instance_status=None):
    out = field_varint(1, seq) if seq else b""
    if instance_status is not None:
        out += field_bytes(RET_INSTANCE_STATUS, instance_status)
    return out


def msg_instance_status(name, instance_id, started_at):
    return field_bytes(1, name) + field_varint(2, instance_id) + field_varint(4, started_at)


def parse_rpc_call(payload):
    """(sequence, command field number, submessage bytes); command 0 if none."""
    seq, cmd, sub = 0, 0, b""
    for num, wt, v in fields(payload):
        if num == 1 and wt == 0:
            seq = int64(v)
        elif 31 <= num <= 36 and wt == 2:
            cmd, sub = num, v
    return seq, cmd, sub


def parse_rpc_return(payload):
    """(sequence, {instance status fields} or None) (for self-checks)."""
    seq, status = 0, None
    for num, wt, v in fields(payload):
        if num == 1 and wt == 0:
            seq = int64(v)
        elif num == RET_INSTANCE_STATUS and wt == 2:
            status = {"name": "", "instance_id": 0, "started_at": 0}
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    status["name"] = v2.decode("utf-8", "replace")
                elif n2 == 2:
                    status["instance_id"] = int32(v2)
                elif n2 == 4:
                    status["started_at"] = int64(v2)
    return seq, status


# ------------------------------------------------------------------ framing


class Closed(Exception):
    pass


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            raise Closed("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_frame(sock, max_len=MAX_FRAME):
    n = struct.unpack("<I", recv_exact(sock, 4))[0]
    if n > max_len:
        raise DecodeError("frame of %d bytes" % n)
    return recv_exact(sock, n) if n else b""


def frame(payload):
    return struct.pack("<I", len(payload)) + payload


def send_frame(sock, payload):
    sock.sendall(frame(payload))


# ------------------------------------------------------------------ the server


def dump(prefix):
    schema = {"name": PLUGIN, "fields": [{"config": {"type": "record", "fields": [
        {"mode": {"type": "string"}}]}}]}
    return {"Protocol": "ProtoBuf:1",
            "SocketPath": os.path.join(prefix, PLUGIN + ".socket"),
            "Plugins": [{"Name": PLUGIN, "Phases": PHASES, "Version": VERSION,
                         "Priority": PRIORITY, "Schema": schema}]}


class Server:
    def __init__(self, prefix, behaviour):
        self.prefix = prefix
        self.behaviour = behaviour
        self.socket_path = os.path.join(prefix, PLUGIN + ".socket")
        self.lock = threading.Lock()
        self.instances = {}  # id -> {"mode", "config", "plugin_id", "started_at"}
        self.ids = itertools.count(1)
        self.first_event_seen = set()  # plugin ids whose first access event was closed
        self.conn_ids = itertools.count(1)
        self.journal_fd = os.open(os.path.join(prefix, PLUGIN + "-events.jsonl"),
                                  os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # --- logging

    def log(self, conn, fmt, *args):
        line = "fake[%d] conn %s: %s\n" % (os.getpid(), conn, fmt % args if args else fmt)
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except OSError:
            pass

    def journal(self, conn, what, **kw):
        rec = {"t": time.time(), "pid": os.getpid(), "conn": conn, "what": what}
        rec.update(kw)
        os.write(self.journal_fd, (json.dumps(rec, sort_keys=True) + "\n").encode())

    # --- main loop

    def serve(self):
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.socket_path)
        lsock.listen(256)
        self.log("-", "Listening on socket: %s (default behaviour %s)", self.socket_path,
                 self.behaviour)
        self.journal(0, "listening", behaviour=self.behaviour)
        while True:
            conn, _ = lsock.accept()
            cid = next(self.conn_ids)
            t = threading.Thread(target=self.connection, args=(conn, cid), daemon=True)
            t.start()

    def connection(self, sock, cid):
        try:
            while True:
                try:
                    payload = recv_frame(sock)
                except Closed:
                    return  # the gateway closed an idle connection
                seq, cmd, sub = parse_rpc_call(payload)
                if cmd == CMD_START_INSTANCE:
                    self.start_instance(sock, cid, seq, sub)
                elif cmd == CMD_CLOSE_INSTANCE:
                    if not self.close_instance(sock, cid, seq, sub):
                        return
                elif cmd == CMD_HANDLE_EVENT:
                    if not self.handle_event(sock, cid, seq, sub):
                        return
                elif cmd in (CMD_GET_PLUGIN_NAMES, CMD_GET_PLUGIN_INFO):
                    send_frame(sock, b"")  # unimplemented in go-pdk too
                else:
                    self.log(cid, "unexpected command %d (sequence %d); closing", cmd, seq)
                    self.journal(cid, "bad_command", cmd=cmd, seq=seq)
                    return
        except (DecodeError, Closed, OSError, ValueError) as e:
            self.log(cid, "connection error: %s; closing", e)
            self.journal(cid, "conn_error", error=str(e))
        finally:
            try:
                sock.close()
            except OSError:
                pass

    # --- commands

    def start_instance(self, sock, cid, seq, sub):
        name = first(sub, 1, b"").decode("utf-8", "replace")
        config_text = first(sub, 2, b"{}")
        config = json.loads(config_text)  # ValueError closes the connection, as go-pdk
        if not isinstance(config, dict):
            raise ValueError("config is not a JSON object")
        mode = config.get("mode") or self.behaviour
        started_at = int(time.time())
        with self.lock:
            iid = next(self.ids)
            self.instances[iid] = {"mode": mode, "config": config, "started_at": started_at,
                                   "plugin_id": config.get("__plugin_id")}
        self.log(cid, "start_instance %s -> id %d, mode %s, __seq__ %s", name, iid, mode,
                 config.get("__seq__"))
        self.journal(cid, "start_instance", seq=seq, name=name, id=iid, mode=mode,
                     config=config)
        send_frame(sock, rpc_return(seq, msg_instance_status(name, iid, started_at)))

    def close_instance(self, sock, cid, seq, sub):
        iid = int32(first(sub, 1, 0))
        with self.lock:
            inst = self.instances.pop(iid, None)
        self.journal(cid, "close_instance", seq=seq, id=iid, found=inst is not None)
        if inst is None:
            self.log(cid, "close_instance: no plugin instance %d; closing", iid)
            return False
        self.log(cid, "close_instance %d", iid)
        send_frame(sock, rpc_return(seq, msg_instance_status("---", iid, inst["started_at"])))
        return True

    def handle_event(self, sock, cid, seq, sub):
        """Runs one event. Returns False when the connection must close."""
        iid = int32(first(sub, 1, 0))
        phase = first(sub, 2, b"").decode("utf-8", "replace")
        with self.lock:
            inst = self.instances.get(iid)
        if inst is None:
            self.log(cid, "no plugin instance %d; closing", iid)
            self.journal(cid, "event", seq=seq, id=iid, phase=phase, outcome="no_instance")
            return False
        if phase not in PHASES:
            self.log(cid, "undefined method %s; closing", phase)
            self.journal(cid, "event", seq=seq, id=iid, phase=phase, outcome="bad_phase")
            return False
        mode = inst["mode"] if phase == "access" else "ok"
        if mode == "close_first_event":
            key = inst["plugin_id"] or json.dumps(inst["config"], sort_keys=True)
            with self.lock:
                fresh = key not in self.first_event_seen
                self.first_event_seen.add(key)
            mode = "close_mid_event" if fresh else "ok"
        self.log(cid, "handle_event %s on instance %d (sequence %d): %s", phase, iid, seq, mode)
        ev = {"seq": seq, "id": iid, "phase": phase, "mode": mode,
              "plugin_id": inst["plugin_id"]}
        self.journal(cid, "event", outcome="begin", **ev)
        run = getattr(self, "ev_" + mode, None)
        if run is None:
            self.log(cid, "unknown behaviour %r; closing", mode)
            self.journal(cid, "event", outcome="unknown_behaviour", **ev)
            return False
        keep, outcome, extra = run(sock, cid, seq, phase)
        self.journal(cid, "event", outcome=outcome, **dict(ev, **extra))
        return keep

    # --- PDK calls

    def pdk(self, sock, method, arg=b""):
        """One PDK callback (frames A, B; answer C). Returns the answer payload."""
        send_frame(sock, method.encode())
        send_frame(sock, arg)
        return recv_frame(sock)

    def finish(self, sock, seq):
        send_frame(sock, b"")
        send_frame(sock, rpc_return(seq))

    # --- behaviours: each returns (keep the connection, outcome, journal extras)

    def ev_ok(self, sock, cid, seq, phase):
        extra = {}
        if phase == "access":
            value = parse_string(self.pdk(sock, "kong.request.get_header", msg_string("x-in")))
            answer = self.pdk(sock, "kong.response.set_header", msg_kv("x-fake", value))
            extra = {"x_in": value, "set_header_answer": answer.hex()}
        self.finish(sock, seq)
        return True, "ok", extra

    def ev_scheme_https(self, sock, cid, seq, phase):
        """kong.service.request.set_scheme("https"): the upstream over TLS."""
        answer = self.pdk(sock, "kong.service.request.set_scheme", msg_string("https"))
        self.finish(sock, seq)
        return True, "ok", {"set_scheme_answer": answer.hex()}

    def ev_slow(self, sock, cid, seq, phase):
        time.sleep(0.2)
        return self.ev_ok(sock, cid, seq, phase)

    def ev_garbage(self, sock, cid, seq, phase):
        junk = os.urandom(256)
        sock.sendall(junk)
        time.sleep(0.1)
        return False, "garbage_sent", {"head": junk[:4].hex()}

    def ev_oversized(self, sock, cid, seq, phase):
        sock.sendall(struct.pack("<I", ONE_GIB))
        sent = 0
        chunk = b"\0" * (1 << 20)
        sock.settimeout(5)
        reason = "limit"
        try:
            while sent < OVERSIZED_MAX_SEND:
                sock.sendall(chunk)
                sent += len(chunk)
        except socket.timeout:
            reason = "peer stopped reading"
        except OSError as e:
            reason = "peer closed (%s)" % e.__class__.__name__
        self.log(cid, "oversized: %d payload bytes sent; %s", sent, reason)
        return False, "oversized_sent", {"sent": sent, "reason": reason}

    def ev_stall(self, sock, cid, seq, phase):
        sock.settimeout(120)
        try:
            while sock.recv(4096):
                pass
            reason = "peer closed"
        except socket.timeout:
            reason = "gave up after 120 s"
        except OSError as e:
            reason = "peer closed (%s)" % e.__class__.__name__
        self.log(cid, "stall ended: %s", reason)
        return False, "stalled", {"reason": reason}

    def ev_close_mid_event(self, sock, cid, seq, phase):
        return False, "closed_mid_event", {}

    def ev_close_after_write(self, sock, cid, seq, phase):
        answer = self.pdk(sock, "kong.response.set_header", msg_kv("x-fake", "before-close"))
        return False, "closed_after_write", {"set_header_answer": answer.hex()}

    def ev_bad_sequence(self, sock, cid, seq, phase):
        send_frame(sock, b"")
        send_frame(sock, rpc_return(seq + 1000))
        # Wait for the gateway to drop the connection rather than reading its
        # next call as if nothing happened.
        sock.settimeout(10)
        try:
            more = sock.recv(4096)
            after = "sent %d more bytes" % len(more) if more else "closed"
        except socket.timeout:
            after = "kept it open for 10 s"
        except OSError:
            after = "closed"
        return False, "bad_sequence_sent", {"after": after}

    def ev_unknown_method(self, sock, cid, seq, phase):
        sock.settimeout(10)
        try:
            answer = self.pdk(sock, "kong.nope.nope", b"")
        except (Closed, OSError) as e:
            return False, "unknown_method_refused", {"error": str(e)}
        self.finish(sock, seq)
        return True, "unknown_method_answered", {"answer": answer.hex()}

    def ev_exit(self, sock, cid, seq, phase):
        send_frame(sock, b"kong.response.exit")
        send_frame(sock, msg_exit_args(EXIT_STATUS, EXIT_BODY, EXIT_HEADERS))
        # go-pdk's Ask reads an answer and ignores its error; Kong never
        # answers, it closes when the request is done.
        sock.settimeout(10)
        try:
            answer = recv_frame(sock).hex()
        except (Closed, OSError, DecodeError) as e:
            answer = "none (%s)" % e
        return False, "exited", {"answer": answer}

    def ev_crash(self, sock, cid, seq, phase):
        value = parse_string(self.pdk(sock, "kong.request.get_header", msg_string("x-in")))
        self.log(cid, "crashing on purpose (x-in %r)", value)
        self.journal(cid, "event", seq=seq, phase=phase, mode="crash", outcome="crashing")
        os._exit(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A ProtoBuf:1 plugin server for fault tests.")
    ap.add_argument("-dump", "--dump", action="store_true", help="print plugin info and exit")
    ap.add_argument("-kong-prefix", "--kong-prefix", default="/usr/local/kong",
                    help="directory of the socket (DIR/fake.socket)")
    ap.add_argument("--behaviour", "-behaviour", default="ok", choices=BEHAVIOURS,
                    help="behaviour of instances whose config has no mode")
    args = ap.parse_args(argv)
    if args.dump:
        sys.stdout.write(json.dumps(dump(args.kong_prefix)) + "\n")
        return 0
    Server(args.kong_prefix, args.behaviour).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
