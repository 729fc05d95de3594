#!/usr/bin/env python3
"""A fuzzing client in the manner of the Autobahn testsuite: it connects to an
echo server, plays each case of Autobahn's catalogue byte for byte (our own
implementation of the case definitions, keeping their ids), records what the
server does, and gives Autobahn's verdicts:

  OK             the behaviour and the closing behaviour are as the case requires
  NON-STRICT     acceptable, but not the strict behaviour (e.g. a dropped TCP
                 connection instead of a close frame when failing)
  INFORMATIONAL  not judged (reported for information)
  UNIMPLEMENTED  a feature the server does not implement (compression sections)
  FAILED         anything else

Usage: fuzzingclient.py HOST PORT [--cases 1.*,6.4.*] [--json REPORT] [--markdown FILE]
Exit status 1 when any case is FAILED or NON-STRICT.
"""
import argparse
import base64
import fnmatch
import json
import os
import socket
import struct
import sys
import threading
import time

from cases import all_cases

FAIL_CODES = {"protocol": {1002}, "utf8": {1007}, "too_big": {1009}}


class Peer:
    """One connection to the server under test: raw frames out, a reader thread in."""

    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.sock.recv(1)
            if not b:
                raise ConnectionError("closed during the handshake")
            head += b
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:40]!r}")
        self.events = []        # (time, kind, opcode, payload) kind: frame | eof | bad
        self.closed_at = None
        self.lock = threading.Condition()
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _recv_exact(self, n, buf):
        while len(buf) < n:
            d = self.sock.recv(max(65536, n - len(buf)))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _read(self):
        buf = b""
        try:
            while True:
                buf = self._recv_exact(2, buf)
                b0, b1 = buf[0], buf[1]
                n, off = b1 & 0x7F, 2
                if n == 126:
                    buf = self._recv_exact(4, buf)
                    n, off = struct.unpack(">H", buf[2:4])[0], 4
                elif n == 127:
                    buf = self._recv_exact(10, buf)
                    n, off = struct.unpack(">Q", buf[2:10])[0], 10
                if b1 & 0x80:
                    self._event("bad", 0, b"masked frame from the server")
                    return
                buf = self._recv_exact(off + n, buf)
                payload, buf = buf[off:off + n], buf[off + n:]
                self._event("frame", b0, payload)
        except (EOFError, OSError):
            self._event("eof", 0, b"")

    def _event(self, kind, b0, payload):
        with self.lock:
            self.events.append((time.monotonic(), kind, b0, payload))
            self.lock.notify_all()

    def send(self, data, chop=None, delay=0.0):
        if chop:
            for i in range(0, len(data), chop):
                self._sendall(data[i:i + chop])
                if delay:
                    time.sleep(delay)
        else:
            self._sendall(data)

    def _sendall(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the server may already have failed the connection: that is judged later

    def wait(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.lock:
            while not pred(self.events):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        hdr = struct.pack(">BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack(">BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack(">BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if len(payload) < 4096 else _fast_mask(payload, key)
    return hdr + key + masked


def _fast_mask(payload, key):
    n = len(payload)
    k = int.from_bytes((key * ((n + 3) // 4))[:n], "little")
    return (int.from_bytes(payload, "little") ^ k).to_bytes(n, "little")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    return struct.pack(">H", code) + (reason.encode() if isinstance(reason, str) else reason)


def judge(case, peer, t_sent):
    """Compares what the server did with what the case expects."""
    exp = case.expect
    frames = [(k, b0, p) for _, k, b0, p in peer.events]
    got = [(b0 & 0x0F, p) for k, b0, p in frames if k == "frame" and (b0 & 0x0F) != 8]
    closes = [p for k, b0, p in frames if k == "frame" and (b0 & 0x0F) == 8]
    bad = [p for k, b0, p in frames if k == "bad"]
    eof = any(k == "eof" for k, _, _ in frames)
    if bad:
        return "FAILED", bad[0].decode()
    want = [(op, p.encode() if isinstance(p, str) else p) for op, p in exp.get("messages", [])]
    if exp.get("fail"):
        allowed = exp["fail"]
        prefix = want
        lenient = ""
        if got != prefix:
            # As Autobahn: a server that fails before echoing the valid messages
            # that preceded the error is NON-STRICT; anything else is FAILED.
            if got == prefix[: len(got)]:
                lenient = f"failed before echoing {summ(prefix[len(got):])}"
            else:
                return "FAILED", f"before failing, expected {summ(prefix)}, got {summ(got)}"
        if not eof:
            return "FAILED", "the server did not close the connection"
        if not closes:
            return "NON-STRICT", "the server dropped TCP without a close frame"
        code = struct.unpack(">H", closes[0][:2])[0] if len(closes[0]) >= 2 else None
        if code not in allowed:
            return "NON-STRICT" if code is not None else "NON-STRICT", f"close code {code}, expected one of {sorted(allowed)}"
        if exp.get("fail_fast") is not None:
            t_close = next(t for t, k, b0, p in peer.events if k == "frame" and (b0 & 0x0F) == 8)
            if t_close > exp["fail_fast"][0]:
                return "NON-STRICT", "failed, but not fast (only after the rest of the message)"
        if lenient:
            return "NON-STRICT", lenient
        return "OK", f"failed with {code}"
    if got != want:
        return "FAILED", f"expected {summ(want)}, got {summ(got)}"
    # Normal end: we sent a close; the server must answer it and close TCP.
    if not closes:
        return "FAILED", "no close frame from the server after ours"
    exp_close = exp.get("close_code", 1000)
    code = struct.unpack(">H", closes[0][:2])[0] if len(closes[0]) >= 2 else None
    if exp_close is not None and code != exp_close and not (exp_close == "empty" and code is None):
        return "FAILED", f"close code {code}, expected {exp_close}"
    if not eof:
        return "NON-STRICT", "the server did not close TCP after the close handshake"
    return "OK", ""


def summ(msgs):
    out = []
    for op, p in msgs[:6]:
        out.append(f"{op}:{len(p)}B")
    return "[" + ", ".join(out) + (" ..." if len(msgs) > 6 else "") + "]"


def run_case(case, host, port):
    try:
        peer = Peer(host, port)
    except Exception as e:  # noqa: BLE001 - any connection problem fails the case
        return "FAILED", f"could not connect: {e}", 0.0
    t0 = time.monotonic()
    try:
        marks = {}
        for act in case.actions:
            kind = act[0]
            if kind == "send":
                _, data, chop, delay = act
                peer.send(data, chop, delay)
            elif kind == "sleep":
                time.sleep(act[1])
            elif kind == "mark":
                marks[act[1]] = time.monotonic()
            elif kind == "wait_frames":
                peer.wait(lambda ev, n=act[1]: sum(1 for e in ev if e[1] == "frame") >= n or
                          any(e[1] == "eof" for e in ev), act[2])
        exp = case.expect
        if "fail_fast_mark" in exp:
            exp = dict(exp, fail_fast=(marks[exp["fail_fast_mark"]],))
            case.expect = exp
        if exp.get("fail"):
            peer.wait(lambda ev: any(e[1] == "eof" for e in ev), case.timeout)
        else:
            nwant = len(exp.get("messages", []))
            peer.wait(lambda ev: sum(1 for e in ev if e[1] == "frame" and (e[2] & 0x0F) != 8) >= nwant or
                      any(e[1] in ("eof", "bad") for e in ev), case.timeout)
            if not exp.get("no_client_close"):
                peer.send(frame(8, close_payload(1000)))
            peer.wait(lambda ev: any(e[1] == "eof" for e in ev), 3)
        verdict, why = judge(case, peer, t0)
    finally:
        peer.close()
    return verdict, why, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--cases", default="*")
    ap.add_argument("--exclude", default="")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--agent", default="server under test")
    a = ap.parse_args()
    pats = a.cases.split(",")
    excl = [p for p in a.exclude.split(",") if p]
    results = []
    for case in all_cases():
        if not any(fnmatch.fnmatch(case.id, p) for p in pats) or any(fnmatch.fnmatch(case.id, p) for p in excl):
            continue
        verdict, why, dt = run_case(case, a.host, a.port)
        results.append({"id": case.id, "description": case.description, "verdict": verdict, "detail": why,
                        "seconds": round(dt, 3)})
        if verdict not in ("OK", "INFORMATIONAL"):
            print(f"{case.id:10} {verdict:10} {case.description} -- {why}", flush=True)
    summary = {}
    for r in results:
        sec = r["id"].split(".")[0]
        summary.setdefault(sec, {}).setdefault(r["verdict"], 0)
        summary[sec][r["verdict"]] += 1
    total = {}
    for r in results:
        total[r["verdict"]] = total.get(r["verdict"], 0) + 1
    print(f"{len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"agent": a.agent, "results": results, "summary": summary}, f, indent=1)
    if a.markdown:
        write_markdown(a.markdown, a.agent, results, summary)
    bad = total.get("FAILED", 0) + total.get("NON-STRICT", 0)
    print(f"{len(results) - bad} passed, {bad} failed")
    return 1 if bad else 0


def write_markdown(path, agent, results, summary):
    lines = [f"### {agent}", "", "| section | cases | OK | NON-STRICT | FAILED | other |", "|---|---|---|---|---|---|"]
    for sec in sorted(summary, key=int):
        s = summary[sec]
        n = sum(s.values())
        other = n - s.get("OK", 0) - s.get("NON-STRICT", 0) - s.get("FAILED", 0)
        lines.append(f"| {sec} | {n} | {s.get('OK', 0)} | {s.get('NON-STRICT', 0)} | {s.get('FAILED', 0)} | {other} |")
    not_ok = [r for r in results if r["verdict"] != "OK"]
    if not_ok:
        lines += ["", "| case | verdict | detail |", "|---|---|---|"]
        lines += [f"| {r['id']} | {r['verdict']} | {r['detail']} |" for r in not_ok]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
