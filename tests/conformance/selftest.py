#!/usr/bin/env python3
"""Checks the judge itself: a small echo server of ours, correct by default,
with one defect switched on at a time; each defect must turn the cases it
touches to the verdict Autobahn's rules give, and the correct server must
come out OK. Without this a suite that passes everything proves nothing.

    selftest.py        (exit status 0 when every expectation holds)
"""
import os
import socket
import struct
import subprocess
import sys
import threading
import json
import tempfile
import hashlib
import base64

HERE = os.path.dirname(os.path.abspath(__file__))


class EchoServer:
    """Blocking, thread per connection. Defects: 'no-utf8' (echoes invalid
    text), 'drop' (fails by closing TCP without a close frame), 'keep-tcp'
    (never closes TCP after the close handshake), 'close-1005' (answers a
    close with code 1005 on the wire), 'late-utf8' (checks text only when the
    message is complete), 'no-pong' (ignores pings)."""

    def __init__(self, defect=None):
        self.defect = defect
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            self._serve(c)
        except (OSError, EOFError):
            pass
        finally:
            c.close()

    def _serve(self, c):
        f = c.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            b = f.read(1)
            if not b:
                return
            head += b
        key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key:")][0]
        acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        msg_op, parts = None, []
        dec = None

        def send(op, payload):
            n = len(payload)
            hdr = bytes([0x80 | op, n]) if n < 126 else (struct.pack(">BBH", 0x80 | op, 126, n) if n < 65536
                                                          else struct.pack(">BBQ", 0x80 | op, 127, n))
            c.sendall(hdr + payload)

        def fail(code):
            if self.defect != "drop":
                send(8, struct.pack(">H", code))
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass

        def exact(n):
            d = f.read(n)
            if len(d) < n:
                raise EOFError
            return d
        while True:
            b0, b1 = exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", exact(8))[0]
            key = exact(4)
            data = exact(n)
            data = bytes(x ^ key[i % 4] for i, x in enumerate(data)) if n < 4096 else \
                (int.from_bytes(data, "little") ^ int.from_bytes((key * (n // 4 + 1))[:n], "little")).to_bytes(n, "little")
            fin, op = b0 & 0x80, b0 & 0x0F
            if b0 & 0x70 or op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15) or (op >= 8 and (not fin or n > 125)):
                return fail(1002)
            if op == 8:
                if len(data) == 1:
                    return fail(1002)
                reply = data[:2]
                if len(data) >= 2:
                    code = struct.unpack(">H", data[:2])[0]
                    if not (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999):
                        return fail(1002)
                    try:
                        data[2:].decode()
                    except UnicodeDecodeError:
                        return fail(1007)
                if self.defect == "close-1005":
                    reply = struct.pack(">H", 1005)
                send(8, reply)
                if self.defect == "keep-tcp":
                    threading.Event().wait(5)
                return
            if op == 9:
                if self.defect != "no-pong":
                    send(10, data)
                continue
            if op == 10:
                continue
            if (op == 0) == (msg_op is None):
                return fail(1002)
            if op:
                msg_op, parts = op, []
                import codecs
                dec = codecs.getincrementaldecoder("utf-8")()
            parts.append(data)
            if msg_op == 1 and self.defect not in ("no-utf8", "late-utf8"):
                try:
                    dec.decode(data, final=bool(fin))
                except UnicodeDecodeError:
                    return fail(1007)
            if fin:
                whole = b"".join(parts)
                if msg_op == 1 and self.defect == "late-utf8":
                    try:
                        whole.decode()
                    except UnicodeDecodeError:
                        return fail(1007)
                send(msg_op, whole)
                msg_op = None


# defect -> {case: verdict} (strict mode where a case id ends in '!')
EXPECT = {
    None: {"1.1.1": "OK", "2.1": "OK", "3.2": "OK", "5.15": "OK", "6.3.1": "OK", "6.4.1": "OK",
           # It checks UTF-8 per whole frame: not fast inside one frame.
           "6.4.3": "NON-STRICT",
           "7.7.1": "OK", "7.9.1": "OK", "7.5.1": "OK", "1.2.8": "OK", "3.1!": "OK"},
    "no-utf8": {"6.3.1": "FAILED", "6.8.1": "FAILED", "6.22.1": "OK", "6.2.1": "OK"},
    "late-utf8": {"6.4.1": "NON-STRICT", "6.4.3": "NON-STRICT", "6.3.1": "OK"},
    "drop": {"3.1": "OK", "3.1!": "NON-STRICT", "6.3.1!": "NON-STRICT"},
    "keep-tcp": {"1.1.1": "FAILED", "7.3.3": "FAILED"},
    "close-1005": {"1.1.1": "NON-STRICT", "7.7.1": "FAILED"},
    "no-pong": {"2.1": "FAILED", "2.10": "FAILED", "1.1.1": "OK"},
}


def main():
    bad = 0
    for defect, want in EXPECT.items():
        srv = EchoServer(defect)
        for strict in (False, True):
            ids = [k.rstrip("!") for k in want if k.endswith("!") == strict]
            if not ids:
                continue
            with tempfile.TemporaryDirectory() as d:
                js = os.path.join(d, "r.json")
                subprocess.run([sys.executable, os.path.join(HERE, "fuzzingclient.py"), "127.0.0.1", str(srv.port),
                                "--cases", ",".join(ids), "--json", js] + (["--strict"] if strict else []),
                               stdout=subprocess.DEVNULL, check=False)
                with open(js) as fh:
                    got = {r["id"]: r for r in json.load(fh)["results"]}
            for cid in ids:
                w = want[cid + ("!" if strict else "")]
                r = got.get(cid)
                v = r["verdict"] if r else "missing"
                ok = v == w
                bad += not ok
                print(f"{'ok  ' if ok else 'BAD '} defect={defect or 'none':10} {'strict ' if strict else ''}{cid:7} "
                      f"want {w:10} got {v}" + ("" if ok or not r else f" ({r['result']} / {r['resultClose']})"))
        srv.ls.close()
    print(f"{'all expectations hold' if not bad else f'{bad} expectations failed'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
