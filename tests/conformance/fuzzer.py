"""The fuzzing endpoint shared by the fuzzing client (which tests servers) and
the fuzzing server (which tests clients), and the judging and reports.

It follows the Autobahn testsuite's model so that verdicts mean what they mean
in published Autobahn reports:

* A case script runs on a conforming WebSocket endpoint of ours (masking by
  role, answering pings, the closing handshake, failing the connection with a
  close frame on a peer's protocol error, Autobahn's 1 s close handshake and
  server-drop timeouts) and may also write raw, invalid bytes.
* What the peer did is recorded as events (messages, pongs, timeout markers)
  and compared with the case's expected event lists, one per behaviour (OK,
  NON-STRICT): that gives the case's *behaviour*.
* How the connection ended gives the *closing behaviour*: who started the
  close, whether the close handshake was clean, the peer's close code, and
  (for a tested server) whether the server closed TCP.
* The verdict combines both: FAILED if either failed (or was unclean where
  the spec requires a clean close), NON-STRICT if either is non-strict (wrong
  close code, TCP left to the client), else the behaviour (OK, INFORMATIONAL,
  UNIMPLEMENTED).

Stdlib only (no dependency on the implementation under test).
"""
import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OK, NON_STRICT, FAILED = "OK", "NON-STRICT", "FAILED"
INFORMATIONAL, UNIMPLEMENTED = "INFORMATIONAL", "UNIMPLEMENTED"
WRONG_CODE, UNCLEAN, FAILED_BY_CLIENT = "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT"

CONNECTING, OPEN, CLOSING, CLOSED = "connecting", "open", "closing", "closed"

# Autobahn's protocol defaults (closeHandshakeTimeout, serverConnectionDropTimeout).
CLOSE_HANDSHAKE_TIMEOUT = 1.0
SERVER_DROP_TIMEOUT = 1.0
# Pause after each chop or frame written on its own: Autobahn queues such a
# write for a later reactor turn (10 us plus the turn); without a pause the
# chops would reach the peer as one read and the case would not test chopping.
SYNC_WRITE_PAUSE = 0.0001

VALID_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011}


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def mask_bytes(data, key, offset=0):
    """XOR with the 4-byte key, starting at `offset` into the key stream (for
    frames written in several parts). Whole-int XOR: fast enough for 16 MiB."""
    n = len(data)
    if n == 0:
        return b""
    k = key[offset % 4:] + key[:offset % 4]
    stream = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def frame_header(opcode, length, fin=True, rsv=0, mask_key=None):
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    m = 0x80 if mask_key is not None else 0
    if length < 126:
        hdr = struct.pack(">BB", b0, m | length)
    elif length < 65536:
        hdr = struct.pack(">BBH", b0, m | 126, length)
    else:
        hdr = struct.pack(">BBQ", b0, m | 127, length)
    return hdr + (mask_key or b"")


def valid_utf8(b):
    try:
        bytes(b).decode("utf-8", "strict")
        return True
    except UnicodeDecodeError:
        return False


def close_code_ok(code):
    return code in VALID_CLOSE_CODES or 3000 <= code <= 4999


class Fuzzer(asyncio.Protocol):
    """One connection running one case. role: 'client' (we test a server) or
    'server' (we test a client). For the server role the HTTP request has been
    read by the caller; for the client role this object does the handshake."""

    def __init__(self, role, case, loop, on_done):
        self.role = role
        self.is_server = role == "server"
        self.case = case
        self.loop = loop
        self.on_done = on_done
        self.transport = None
        self.state = CONNECTING
        self.rx = bytearray()
        self.rx_pos = 0
        self.msg_op = None
        self.msg_parts = []
        self.auto_fragment_size = 0
        self.send_queue = []
        self.pumping = False
        self.timers = []
        self.wirelog = []           # compact: (t, 'tx'|'rx', description)
        self.t0 = None
        # Autobahn's closing bookkeeping.
        self.connection_was_open = False
        self.closed_by_me = False
        self.failed_by_me = False
        self.dropped_by_me = False
        self.was_clean = False
        self.not_clean_reason = None
        self.local_close_code = None
        self.remote_close_code = None
        self.remote_close_reason = None
        self.close_sent = False
        self.close_received = False
        self.remote_close_frame = None     # raw payload of the peer's close frame
        self.handshake_error = None
        self.http_head = b""
        self.key = None
        self.frame_mask = None
        self.frame_mask_off = 0
        self.is_tls = False
        self.tcp_error = None

    # ------------------------------------------------------------ transport
    def connection_made(self, transport):
        self.transport = transport
        self.is_tls = transport.get_extra_info("sslcontext") is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.is_server:
            self.key = base64.b64encode(os.urandom(16)).decode()
            host, port = transport.get_extra_info("peername")[:2]
            req = (f"GET / HTTP/1.1\r\n"
                   f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"User-Agent: wscore-conformance\r\n\r\n")
            transport.write(req.encode())

    def start_open(self, leftover=b""):
        """The opening handshake is done: run the case."""
        self.state = OPEN
        self.connection_was_open = True
        self.t0 = time.monotonic()
        self.timer(self.case.watchdog, self._watchdog)
        self.case.on_open(self)
        if leftover:
            self.data_received(leftover)

    def _watchdog(self):
        if self.state != CLOSED and not self.transport.is_closing():
            self.log("watchdog: the case did not end in time; aborting")
            self.dropped_by_me = True
            self.not_clean_reason = "case watchdog"
            self._abort()

    def data_received(self, data):
        if self.state == CONNECTING:
            self.http_head += data
            end = self.http_head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.http_head) > 16384:
                    self._handshake_failed("response head larger than 16 KiB")
                return
            head, rest = self.http_head[:end].decode("latin-1"), self.http_head[end + 4:]
            err = self._check_response(head)
            if err:
                self._handshake_failed(err)
                return
            self.start_open(rest)
            return
        if self.state == CLOSED:
            return
        self.rx += data
        self._parse()

    def _abort(self):
        try:
            self.transport.abort()
        except AttributeError:
            pass  # an asyncio TLS transport that has already let go of its connection

    def _drain_after_error(self):
        # asyncio gives up on a connection at its first write error (the peer
        # reset it, say, after closing with our bytes unread), but what the
        # peer sent before that is still in the kernel's receive buffer: its
        # close frame above all. Read it, as a blocking reader would have.
        if self.is_tls:
            return  # the raw bytes are TLS records, and asyncio has let go of the TLS state
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            raw = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return
        try:
            raw.setblocking(False)
            while self.state in (OPEN, CLOSING):
                data = raw.recv(1 << 16)
                if not data:
                    break
                self.rx += data
                self._parse()
        except OSError:
            pass
        finally:
            raw.close()

    def _check_response(self, head):
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1" or parts[1] != "101":
            return f"status line {lines[0]!r}"
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        if [v.lower() for v in hdrs.get("upgrade", [])] != ["websocket"]:
            return f"Upgrade: {hdrs.get('upgrade')}"
        if "upgrade" not in [t.strip().lower() for v in hdrs.get("connection", []) for t in v.split(",")]:
            return f"Connection: {hdrs.get('connection')}"
        if hdrs.get("sec-websocket-accept") != [accept_key(self.key)]:
            return f"Sec-WebSocket-Accept: {hdrs.get('sec-websocket-accept')}"
        if hdrs.get("sec-websocket-extensions"):
            return f"an extension we did not offer: {hdrs['sec-websocket-extensions']}"
        return None

    def _handshake_failed(self, why):
        self.handshake_error = why
        self._abort()

    def connection_lost(self, exc):
        if exc is not None and self.state in (OPEN, CLOSING):
            self._drain_after_error()
        prev = self.state
        self.state = CLOSED
        for t in self.timers:
            t.cancel()
        if prev != CLOSED and self.connection_was_open:
            if self.close_sent and self.close_received and not self.was_clean:
                # Both close frames went; a tested server must also be the one
                # to close TCP (we only drop after SERVER_DROP_TIMEOUT).
                if self.is_server or not self.dropped_by_me:
                    self.was_clean = True
            if not self.was_clean and self.not_clean_reason is None:
                self.not_clean_reason = ("peer dropped TCP" if not self.dropped_by_me else "I dropped TCP")
        self.tcp_error = repr(exc) if exc else None
        self.log("TCP closed" + (f" ({exc!r}: data the peer sent last may be lost)" if exc else ""))
        self.on_done(self)

    # ------------------------------------------------------------ sending
    def _write(self, data, sync=False):
        self.send_queue.append((data, sync))
        if not self.pumping:
            self.pumping = True
            self.loop.create_task(self._pump())

    async def _pump(self):
        # Items marked sync go out in their own write with a loop turn between
        # them (Autobahn's "sync" and chopped writes); the rest are batched.
        try:
            while self.send_queue:
                data, sync = self.send_queue.pop(0)
                if self.transport.is_closing():
                    self.send_queue.clear()
                    break
                self.transport.write(data)
                if sync:
                    await asyncio.sleep(SYNC_WRITE_PAUSE)
        finally:
            self.pumping = False

    def _mask_key(self):
        return None if self.is_server else os.urandom(4)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, payload_len=None, chopsize=None, sync=False):
        """A raw frame (any opcode, bits or length): what the case says, as is."""
        if isinstance(payload, str):
            payload = payload.encode()
        if payload_len is not None and payload_len != len(payload):
            payload = (payload * (payload_len // max(1, len(payload)) + 1))[:payload_len]
        key = self._mask_key()
        data = frame_header(opcode, len(payload), fin, rsv, key) + (mask_bytes(payload, key) if key else payload)
        self.log(f"tx frame op={opcode} fin={int(fin)} rsv={rsv} len={len(payload)}"
                 + (f" chop={chopsize}" if chopsize else "") + (" sync" if sync else ""), payload)
        if chopsize:
            for i in range(0, len(data), chopsize):
                self._write(data[i:i + chopsize], True)
        else:
            self._write(data, sync)

    def send_message(self, payload, binary=False, fragment_size=None):
        if isinstance(payload, str):
            payload = payload.encode()
        size = fragment_size or self.auto_fragment_size
        op = 2 if binary else 1
        if not size or len(payload) <= size:
            self.send_frame(op, payload)
            return
        for i in range(0, len(payload), size):
            self.send_frame(op if i == 0 else 0, payload[i:i + size], fin=i + size >= len(payload))

    def begin_message_frame(self, opcode, length):
        """A frame header alone; its payload follows with send_frame_data."""
        self.frame_mask = self._mask_key()
        self.frame_mask_off = 0
        self.log(f"tx header op={opcode} len={length}")
        self._write(frame_header(opcode, length, True, 0, self.frame_mask))

    def send_frame_data(self, data):
        if self.frame_mask:
            masked = mask_bytes(data, self.frame_mask, self.frame_mask_off)
        else:
            masked = data
        self.frame_mask_off += len(data)
        self.log(f"tx frame data len={len(data)}", data)
        self._write(masked)

    def send_close(self, code=None, reason=b""):
        """A close frame (any code or reason, valid or not): starts our side of
        the closing handshake, as Autobahn's sendCloseFrame."""
        if self.state != OPEN:
            return
        if isinstance(reason, str):
            reason = reason.encode()
        payload = b"" if code is None else struct.pack(">H", code) + reason
        self.local_close_code = code
        self.closed_by_me = True
        self._send_close_payload(payload)
        self.state = CLOSING
        self.timer(CLOSE_HANDSHAKE_TIMEOUT, self._close_timeout)

    def _send_close_payload(self, payload):
        key = self._mask_key()
        self.close_sent = True
        self.log("tx close", payload)
        self._write(frame_header(8, len(payload), True, 0, key) + (mask_bytes(payload, key) if key else payload))

    def _close_timeout(self):
        if self.state == CLOSING and not self.close_received:
            self.log("close handshake timeout: dropping")
            self.drop("the peer did not answer our close within 1 s")

    def drop(self, why):
        if self.state != CLOSED:
            self.dropped_by_me = True
            self.was_clean = False
            self.not_clean_reason = why
            self._abort()

    def fail_connection(self, code=1001, reason="Going Away"):
        """Autobahn's failConnection with failByDrop off: a close frame if we
        have not sent one yet, else drop."""
        if self.state == CLOSED:
            return
        self.failed_by_me = True
        if self.state == OPEN:
            self.send_close(code, reason)
        else:
            self.drop(f"failed while closing ({reason})")

    # ------------------------------------------------------------ timers
    def timer(self, delay, fn):
        h = self.loop.call_later(delay, fn)
        self.timers.append(h)
        return h

    def later(self, delay, fn, tag=None):
        def run():
            if self.state != CLOSED:
                if tag:
                    self.log(f"continue later ({tag})")
                fn()
        self.timer(delay, run)

    def kill_after(self, delay):
        def kill():
            if self.state != CLOSED:
                self.log("kill after timeout")
                self.fail_connection()
        self.timer(delay, kill)

    def close_after(self, delay):
        def close():
            if self.state == OPEN:
                self.log("close after timeout")
                self.send_close()
        self.timer(delay, close)

    # ------------------------------------------------------------ receiving
    def _parse(self):
        rx = self.rx
        while self.state in (OPEN, CLOSING) and not self.close_received:
            pos = self.rx_pos
            avail = len(rx) - pos
            if avail < 2:
                break
            b0, b1 = rx[pos], rx[pos + 1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if avail < 4:
                    break
                n, off = struct.unpack_from(">H", rx, pos + 2)[0], 4
            elif n == 127:
                if avail < 10:
                    break
                n, off = struct.unpack_from(">Q", rx, pos + 2)[0], 10
            masked = bool(b1 & 0x80)
            if masked:
                off += 4
            if avail < off + n:
                break
            payload = bytes(rx[pos + off:pos + off + n])
            if masked:
                payload = mask_bytes(payload, bytes(rx[pos + off - 4:pos + off]))
            self.rx_pos = pos + off + n
            self._frame(b0, masked, payload)
        if self.rx_pos > 1 << 20 or self.rx_pos == len(rx):
            del rx[:self.rx_pos]
            self.rx_pos = 0

    def _frame(self, b0, masked, payload):
        fin, rsv, op = b0 & 0x80, (b0 >> 4) & 7, b0 & 0x0F
        self.log(f"rx frame op={op} fin={int(bool(fin))} rsv={rsv} len={len(payload)}"
                 + (" masked" if masked else ""), payload)
        if masked != self.is_server:
            return self._violation(1002, "masked frame from a server" if masked else "unmasked frame from a client")
        if rsv:
            return self._violation(1002, "RSV bits set")
        if op >= 8:
            if op not in (8, 9, 10):
                return self._violation(1002, f"reserved opcode {op}")
            if not fin or len(payload) > 125:
                return self._violation(1002, "fragmented or oversized control frame")
            if op == 8:
                return self._close_frame(payload)
            if op == 9:
                if self.state == OPEN:
                    key = self._mask_key()
                    self._write(frame_header(10, len(payload), True, 0, key) + (mask_bytes(payload, key) if key else payload))
                return
            self.case.record_pong(self, payload)
            return
        if op not in (0, 1, 2):
            return self._violation(1002, f"reserved opcode {op}")
        if op == 0 and self.msg_op is None:
            return self._violation(1002, "continuation frame outside a message")
        if op != 0 and self.msg_op is not None:
            return self._violation(1002, "new data frame inside a fragmented message")
        if op != 0:
            self.msg_op = op
            self.msg_parts = []
        self.msg_parts.append(payload)
        if fin:
            data = b"".join(self.msg_parts)
            binary = self.msg_op == 2
            self.msg_op, self.msg_parts = None, []
            if not binary and not valid_utf8(data):
                return self._violation(1007, "text message that is not UTF-8")
            self.case.record_message(self, data, binary)

    def _violation(self, code, why):
        self.log(f"protocol violation by the peer: {why}")
        self.peer_violation = why
        self.fail_connection(code, why)

    def _close_frame(self, payload):
        self.close_received = True
        self.remote_close_frame = payload
        code = None
        if len(payload) == 1:
            self.remote_close_code = None
            return self._close_reply_or_end(1002)
        if len(payload) >= 2:
            code = struct.unpack(">H", payload[:2])[0]
            self.remote_close_code = code
            self.remote_close_reason = payload[2:]
            if not close_code_ok(code):
                return self._close_reply_or_end(1002)
            if not valid_utf8(payload[2:]):
                return self._close_reply_or_end(1007)
        self._close_reply_or_end(code)

    def _close_reply_or_end(self, code):
        if self.state == OPEN:
            # The peer started the close: answer with its code (as Autobahn).
            self.state = CLOSING
            self._send_close_payload(b"" if code is None else struct.pack(">H", code))
        self.state = CLOSING
        if self.is_server:
            # Both close frames are out: the server closes TCP (RFC 6455 7.1.1).
            self.was_clean = True
            self.loop.call_soon(self._server_close_tcp)
        else:
            self.timer(SERVER_DROP_TIMEOUT, self._server_drop_timeout)

    def _server_close_tcp(self):
        if self.state != CLOSED:
            self.dropped_by_me = True
            self.transport.close()

    def _server_drop_timeout(self):
        if self.state != CLOSED:
            self.log("the server did not close TCP within 1 s after the close handshake: dropping")
            self.drop("the server did not close TCP after the close handshake")

    def log(self, what, payload=None):
        t = 0.0 if self.t0 is None else time.monotonic() - self.t0
        if payload is not None:
            what += " " + (payload[:16].hex() + ("..." if len(payload) > 16 else ""))
        if len(self.wirelog) < 400:
            self.wirelog.append(f"{t:7.3f} {what}")


def judge(f, case, strict=False):
    """Autobahn's verdicts for a finished connection; see the module doc."""
    r = {"id": case.id, "description": case.description}
    if not f.connection_was_open:
        r.update(behavior=FAILED, behaviorClose=FAILED, result="the WebSocket opening handshake never completed"
                 + (f": {f.handshake_error}" if f.handshake_error else ""), resultClose="")
        r["verdict"] = FAILED
        return r
    behavior, result = case.behavior_of(f)
    ec = case.expected_close
    if ec["closedByMe"] != f.closed_by_me:
        bc, rc = FAILED, ("the connection was failed by the wrong endpoint"
                          + (" (we had to time out)" if f.closed_by_me else ""))
    elif ec["requireClean"] and not f.was_clean:
        bc, rc = UNCLEAN, f"the close was not clean: {f.not_clean_reason}"
    elif f.remote_close_code is not None and f.remote_close_code not in ec["closeCode"]:
        bc, rc = WRONG_CODE, f"close code {f.remote_close_code}, expected {ec['closeCode']} or none"
    elif not f.is_server and f.dropped_by_me:
        bc, rc = FAILED_BY_CLIENT, "the server left TCP open; the client (we) closed it"
    else:
        bc, rc = OK, "connection properly closed"
    if ec.get("closedByWrongEndpointIsFatal") and ec["closedByMe"] != f.closed_by_me:
        behavior = FAILED
    behavior, bc, result = case.post_judge(f, behavior, bc, result, rc)
    note = None
    if strict and behavior == OK and bc == OK and not ec["closedByMe"] and f.remote_close_frame is None:
        if f.is_tls and f.tcp_error:
            # The peer reset the connection while we were writing: its close
            # frame may be in our receive buffer, unreadable once asyncio's TLS
            # layer has let go. A drop we cannot prove is not held against it.
            note = ("reset by the peer while we were writing (it closed with our bytes unread); "
                    "under TLS we cannot read what it sent before the reset")
        else:
            # Autobahn accepts a plain TCP drop when failing; RFC 6455 7.1.7 says
            # SHOULD send a close frame first. Our own implementation must.
            bc, rc = NON_STRICT, "the peer failed the connection by dropping TCP, without a close frame (strict mode)"
    verdict = combine(behavior, bc)
    r.update(behavior=behavior, behaviorClose=bc, verdict=verdict, result=result, resultClose=rc,
             closedByMe=f.closed_by_me, droppedByMe=f.dropped_by_me, wasClean=f.was_clean,
             remoteCloseCode=f.remote_close_code,
             remoteCloseReason=(f.remote_close_reason or b"")[:60].decode("utf-8", "replace"),
             duration_ms=int(1000 * (time.monotonic() - f.t0)))
    if note:
        r["note"] = note
    if verdict not in (OK, INFORMATIONAL, UNIMPLEMENTED):
        r["received"] = [summ_event(e) for e in case.received[:10]]
        r["expected"] = {k: [summ_event(e) for e in v[:10]] for k, v in case.expected.items()}
        r["wirelog"] = f.wirelog[:60]
    return r


def combine(behavior, bc):
    if behavior == FAILED or bc in (FAILED, UNCLEAN):
        return FAILED
    if behavior == NON_STRICT or bc in (WRONG_CODE, FAILED_BY_CLIENT, NON_STRICT):
        return NON_STRICT
    return behavior


def summ_event(e):
    if e[0] == "message":
        p = e[1]
        show = p[:24].hex() + ("..." if len(p) > 24 else "")
        return f"{'binary' if e[2] else 'text'} message {len(p)} B {show}"
    if e[0] == "pong":
        return f"pong {len(e[1])} B {e[1][:24].hex()}"
    return f"{e[0]} {e[1]}"


# ---------------------------------------------------------------- reports

def summarize(results):
    by_sec = {}
    for r in results:
        sec = r["id"].split(".")[0]
        d = by_sec.setdefault(sec, {})
        d[r["verdict"]] = d.get(r["verdict"], 0) + 1
    return by_sec


def write_json(path, agent, role, results):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"agent": agent, "role": role, "summary": summarize(results),
                   "not_run": {"12": "permessage-deflate not implemented", "13": "permessage-deflate not implemented"},
                   "results": results}, fh, indent=1)


def markdown(agent, role, results):
    s = summarize(results)
    lines = [f"#### {agent} ({role} role)", "",
             "| section | cases | OK | NON-STRICT | FAILED | INFORMATIONAL | UNIMPLEMENTED |",
             "|---|---|---|---|---|---|---|"]
    for sec in sorted(s, key=int):
        d = s[sec]
        lines.append(f"| {sec} | {sum(d.values())} | {d.get(OK, 0)} | {d.get(NON_STRICT, 0)} | {d.get(FAILED, 0)} "
                     f"| {d.get(INFORMATIONAL, 0)} | {d.get(UNIMPLEMENTED, 0)} |")
    lines.append("| 12, 13 | not run | | | | | |")
    noted = [r for r in results if r.get("note")]
    if noted:
        lines += ["", "Judged OK with a note: " + "; ".join(f"{r['id']} ({r['note']})" for r in noted[:3])
                  + (f"; and {len(noted) - 3} more" if len(noted) > 3 else "") + "."]
    bad = [r for r in results if r["verdict"] in (FAILED, NON_STRICT)]
    if bad:
        lines += ["", "| case | verdict | behaviour | closing behaviour |", "|---|---|---|---|"]
        for r in bad:
            lines.append(f"| {r['id']} | {r['verdict']} | {r['behavior']}: {r['result']} | "
                         f"{r['behaviorClose']}: {r['resultClose']} |".replace("\n", " "))
    return "\n".join(lines) + "\n"


def print_result(r, verbose=False):
    if r["verdict"] in (OK, INFORMATIONAL) and not verbose:
        return
    print(f"{r['id']:9} {r['verdict']:10} {r['behavior']}: {r['result']} / {r['behaviorClose']}: {r['resultClose']}",
          flush=True)
    if r["verdict"] in (FAILED, NON_STRICT):
        for e in r.get("received", []):
            print(f"{'':20} received {e}")
        for line in r.get("wirelog", [])[:30]:
            print(f"{'':20} {line}")


def exit_status(results):
    return 1 if any(r["verdict"] in (FAILED, NON_STRICT) for r in results) else 0
