"""The `wscore` CLI and the docs/examples programs, run as a user would:
servers on a free port, clients against them, stdin piped, signals to stop.
Peers are raw sockets (so the wire is checked byte for byte) and Python
websockets (an independent implementation)."""
import asyncio
import base64
import hashlib
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
import websockets

BUILD = os.environ.get("WSCORE_BUILD_DIR") or pytest.fail("run through meson test (WSCORE_BUILD_DIR)")
CLI = os.path.join(BUILD, "src", "cli", "wscore")
EXAMPLES = os.path.join(BUILD, "docs", "examples")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODES = ["callback", "blocking"]


# ------------------------------------------------------------------ helpers

class Proc:
    """A server process that announced 'listening on [HOST:]PORT' on its first line."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first = self.p.stdout.readline()
        m = re.search(r"listening on (?:\S+:)?(\d+)$", self.first.strip())
        if not m:
            self.p.kill()
            out, err = self.p.communicate()
            pytest.fail(f"{argv} did not start: {self.first!r} {err!r}")
        self.port = int(m.group(1))
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, pattern, timeout=10):
        """The first stdout line matching `pattern` (fails after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout} s")
            if line is None:
                pytest.fail(f"the server exited without a line matching {pattern!r}")
            if re.search(pattern, line):
                return line

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.p.send_signal(sig)
        self.p.wait(timeout)
        err = self.p.stderr.read()
        out = []
        while (line := self.lines.get(timeout=5)) is not None:
            out.append(line)
        return self.p.returncode, self.first + "".join(out), err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
        self.p.stderr.close()


def run(argv, stdin="", timeout=20):
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


class RawWS:
    """A minimal client on a plain socket: the wire bytes are ours to check."""

    def __init__(self, port, path="/"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            assert chunk, f"connection closed during the handshake: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        assert {k.strip().lower(): v.strip() for k, v in fields.items()}[b"sec-websocket-accept"] == accept

    def send(self, opcode, payload=b"", fin=True):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def recv(self):
        """(opcode, payload) of the next frame; server frames must be unmasked and final here."""
        b0, b1 = self._read(2)
        assert b1 & 0x80 == 0, "a server frame was masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n), bool(b0 & 0x80)

    def close(self):
        self.s.close()


class PyServer:
    """A Python websockets server on its own thread; `handler(ws)` is a coroutine."""

    def __init__(self, handler, **kw):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main():
            self.server = await websockets.serve(handler, "127.0.0.1", 0, **kw)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.wait_closed()

        self.t = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.t.start()
        assert ready.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.server.close)
        self.t.join(10)


# ------------------------------------------------------------------ docs/examples

@pytest.mark.parametrize("server", ["echo_server", "callback_echo_server"])
def test_example_client_against_example_servers(server):
    with Proc([os.path.join(EXAMPLES, server), "0", "20"]) as srv:
        r = run([os.path.join(EXAMPLES, "client"), f"ws://127.0.0.1:{srv.port}/"])
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["text: hello, wscore ✓", "binary: 4 bytes",
                                         "closed: the server answered, code 1000"]
        # The servers report each closed connection with the client's code.
        srv.expect(r"closed: 1000 bye$")


def test_example_client_reports_a_refused_connection():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = run([os.path.join(EXAMPLES, "client"), f"ws://127.0.0.1:{port}/"])
    assert r.returncode == 1 and "open: connection refused" in r.stderr


@pytest.mark.parametrize("server", ["echo_server", "callback_echo_server"])
def test_example_servers_echo_types_on_the_wire(server):
    with Proc([os.path.join(EXAMPLES, server), "0", "20"]) as srv:
        ws = RawWS(srv.port)
        ws.send(1, "ü".encode())
        assert ws.recv() == (1, "ü".encode(), True)
        ws.send(2, bytes(range(256)) * 300)
        assert ws.recv() == (2, bytes(range(256)) * 300, True)
        ws.send(8, struct.pack("!H", 4001) + b"bye")
        assert ws.recv() == (8, struct.pack("!H", 4001) + b"bye", True)
        ws.close()


# ------------------------------------------------------------------ wscore echo + connect

@pytest.mark.parametrize("mode", MODES)
def test_echo_and_connect_round_trip(mode):
    with Proc([CLI, "echo", "--port", "0", "--mode", mode]) as srv:
        assert srv.first == "listening on 127.0.0.1:%d\n" % srv.port
        r = run([CLI, "connect", f"ws://127.0.0.1:{srv.port}/"], "first line\n\nsecond ✓\nno newline at the end")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["< first line", "< ", "< second ✓", "< no newline at the end"]
        assert r.stderr.splitlines()[-1] == "closed: 1000 "
        r = run([CLI, "connect", "--binary", f"ws://127.0.0.1:{srv.port}/"], "AB\n" + "x" * 100 + "\n")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["< [binary, 2 bytes] 41 42", "< [binary, 100 bytes]" + " 78" * 64 + " ..."]
        rc, out, err = srv.stop()
        assert rc == 0, err


@pytest.mark.parametrize("mode", MODES)
def test_echo_keeps_types_fragments_pings_and_close_codes(mode):
    with Proc([CLI, "echo", "--port", "0", "--mode", mode]) as srv:
        ws = RawWS(srv.port)
        ws.send(1, b"caf", fin=False)
        ws.send(0, "é".encode(), fin=True)  # a message in two fragments comes back whole
        assert ws.recv() == (1, "café".encode(), True)
        ws.send(9, b"are you there")
        assert ws.recv() == (10, b"are you there", True)
        ws.send(2, b"")
        assert ws.recv() == (2, b"", True)
        big = os.urandom(3 << 20)
        ws.send(2, big)
        assert ws.recv() == (2, big, True)
        ws.send(8, struct.pack("!H", 4321) + "fin ✓".encode())
        assert ws.recv() == (8, struct.pack("!H", 4321) + "fin ✓".encode(), True)
        ws.close()
        rc, out, err = srv.stop()
        assert rc == 0 and err == "", err


@pytest.mark.parametrize("mode", MODES)
def test_echo_refuses_invalid_text_with_1007(mode):
    with Proc([CLI, "echo", "--port", "0", "--mode", mode]) as srv:
        ws = RawWS(srv.port)
        ws.send(1, b"\xc3\x28")
        op, payload, _ = ws.recv()
        assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1007
        ws.close()


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_closes_connections_with_1001_and_exits_0(mode):
    with Proc([CLI, "echo", "--port", "0", "--mode", mode]) as srv:
        clients = [RawWS(srv.port) for _ in range(3)]
        for i, ws in enumerate(clients):
            ws.send(1, b"%d" % i)
            assert ws.recv() == (1, b"%d" % i, True)
        srv.p.send_signal(signal.SIGTERM)
        for ws in clients:
            op, payload, _ = ws.recv()
            assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1001
            ws.send(8, payload[:2])  # answer the close, as a client does
        rc, out, err = srv.stop(signal.SIGTERM)
        assert rc == 0, err
        for ws in clients:
            ws.close()


def test_echo_on_two_threads_and_ipv6():
    with Proc([CLI, "echo", "--port", "0", "--threads", "2"]) as srv:
        for i in range(6):
            r = run([CLI, "connect", f"ws://127.0.0.1:{srv.port}/{i}"], f"n{i}\n")
            assert r.returncode == 0 and r.stdout == f"< n{i}\n", r.stderr
    if not socket.has_ipv6:
        return
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        return  # no IPv6 loopback on this machine
    with Proc([CLI, "echo", "--port", "0", "--host", "::1"]) as srv:
        assert srv.first.startswith("listening on [::1]:")
        r = run([CLI, "connect", f"ws://[::1]:{srv.port}/"], "six\n")
        assert r.returncode == 0 and r.stdout == "< six\n", r.stderr


def test_connect_refuses_invalid_text_lines_but_sends_the_rest():
    with Proc([CLI, "echo", "--port", "0"]) as srv:
        p = subprocess.run([CLI, "connect", f"ws://127.0.0.1:{srv.port}/"], input=b"ok\n\xff\xfe\nstill ok\n",
                           capture_output=True, timeout=20)
        assert p.returncode == 0
        assert p.stdout.decode().splitlines() == ["< ok", "< still ok"]
        assert "line not sent: it is not valid UTF-8 (use --binary)" in p.stderr.decode()


def test_connect_headers_subprotocol_and_a_server_close():
    seen = {}

    async def handler(ws):
        seen["x-test"] = ws.request_headers.get("X-Test")
        seen["path"] = ws.path
        await ws.send("hello from python")
        await ws.send(b"\x00\xff")
        await ws.close(4000, "done here")

    with PyServer(handler, subprotocols=["chat"]) as srv:
        p = subprocess.Popen([CLI, "connect", f"ws://127.0.0.1:{srv.port}/room?x=1", "-H", "X-Test:  yes",
                              "--subprotocol", "other", "--subprotocol", "chat"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # stdin stays open: the server's close ends the client
        watchdog = threading.Timer(20, p.kill)
        watchdog.start()
        out, err = p.stdout.read(), p.stderr.read()
        watchdog.cancel()
        p.wait(5)
        p.stdin.close()
    assert seen == {"x-test": "yes", "path": "/room?x=1"}
    assert out.splitlines() == ["< hello from python", "< [binary, 2 bytes] 00 ff"]
    assert "subprotocol chat" in err
    assert err.splitlines()[-1] == "closed by the server: 4000 done here"
    assert p.returncode == 1  # 4000 is not a normal close


def test_connect_waits_at_eof_for_the_replies_of_a_server_that_answers_a_close_at_once():
    # Python websockets answers a close as soon as it reads it, so an echo
    # handler's replies to lines sent just before it would be lost: at EOF the
    # client waits (bounded by --linger) until a reply came for each line.
    async def slow_echo(ws):
        async for msg in ws:
            await asyncio.sleep(0.05)
            await ws.send(msg.upper())

    with PyServer(slow_echo) as srv:
        r = run([CLI, "connect", f"ws://127.0.0.1:{srv.port}/"], "one\ntwo\nthree\n")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["< ONE", "< TWO", "< THREE"]
        assert r.stderr.splitlines()[-1] == "closed: 1000 "


def test_connect_linger_bounds_the_wait_for_replies_that_never_come():
    async def silent(ws):
        async for _ in ws:
            pass

    with PyServer(silent) as srv:
        t0 = time.monotonic()
        r = run([CLI, "connect", "--linger", "300", f"ws://127.0.0.1:{srv.port}/"], "nobody answers\n")
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert r.stdout == ""
        assert r.stderr.splitlines()[-1] == "closed: 1000 "
        assert 0.25 <= took < 5
        r = run([CLI, "connect", "--linger", "-1", f"ws://127.0.0.1:{srv.port}/"])
        assert r.returncode == 2 and "--linger" in r.stderr


def test_connect_sigint_closes_with_1000():
    codes = []

    async def handler(ws):
        async for _ in ws:
            pass
        codes.append(ws.close_code)

    with PyServer(handler) as srv:
        p = subprocess.Popen([CLI, "connect", f"ws://127.0.0.1:{srv.port}/"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stderr.readline().startswith("connected to")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert "closed: 1000" in err
    assert codes == [1000]


def test_wss_echo_and_connect(tmp_path):
    pki = str(tmp_path / "pki")
    subprocess.run(["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), pki], check=True,
                   capture_output=True, timeout=60)
    with Proc([CLI, "echo", "--port", "0", "--cert", f"{pki}/server.pem", "--key", f"{pki}/server.key"]) as srv:
        url = f"wss://127.0.0.1:{srv.port}/"
        r = run([CLI, "connect", url, "--cacert", f"{pki}/ca.pem"], "secret\n")
        assert r.returncode == 0 and r.stdout == "< secret\n", r.stderr
        r = run([CLI, "connect", url], "x\n")  # the test CA is not in the system store
        assert r.returncode == 1 and "TLS error" in r.stderr and "certificate" in r.stderr, r.stderr
        r = run([CLI, "connect", url, "--insecure"], "y\n")
        assert r.returncode == 0 and r.stdout == "< y\n" and "NOT verified" in r.stderr
    r = run([CLI, "echo", "--port", "0", "--cert", f"{pki}/server.pem", "--key", f"{pki}/other-ca.key"])
    assert r.returncode == 1 and "TLS error" in r.stderr


def test_serve_demo_prints_instructions_and_stops_on_sigint():
    with Proc([CLI, "serve", "--port", "0"]) as srv:
        r = run([CLI, "connect", f"ws://127.0.0.1:{srv.port}/"], "demo\n")
        assert r.stdout == "< demo\n"
        rc, out, err = srv.stop(signal.SIGINT)
    assert rc == 0
    assert f"wscore connect ws://127.0.0.1:{srv.port}/" in out and "new WebSocket(" in out


# ------------------------------------------------------------------ autobahn-client

def fuzzing_server(count_text, record):
    """Autobahn's client protocol, in miniature: each case sends a text and a
    binary message and checks that both come back with their types."""

    async def handler(ws):
        path = ws.path
        if path == "/getCaseCount":
            await ws.send(count_text)
            await ws.wait_closed()
        elif path.startswith("/runCase?"):
            n = int(re.search(r"case=(\d+)", path).group(1))
            record.append(("case", n, re.search(r"agent=([^&]*)", path).group(1)))
            await ws.send(f"case {n} ✓")
            await ws.send(bytes([n, 0, 255]) * 1000)
            got = [await ws.recv(), await ws.recv()]
            record.append(("echo", n, got == [f"case {n} ✓", bytes([n, 0, 255]) * 1000]))
            await ws.close(1000)
        elif path.startswith("/updateReports?"):
            record.append(("reports", path))
            await ws.close(1000)

    return PyServer(handler, max_size=None)


def test_autobahn_client_runs_every_case():
    record = []
    with fuzzing_server("3", record) as srv:
        r = run([CLI, "autobahn-client", f"ws://127.0.0.1:{srv.port}/", "--agent", "my agent/1", "-v"])
    assert r.returncode == 0, r.stderr
    agent = "my%20agent%2F1"
    assert record == [("case", 1, agent), ("echo", 1, True), ("case", 2, agent), ("echo", 2, True),
                      ("case", 3, agent), ("echo", 3, True), ("reports", f"/updateReports?agent={agent}")]
    assert r.stdout.splitlines() == ["case 1/3: closed 1000 ", "case 2/3: closed 1000 ", "case 3/3: closed 1000 ",
                                     "ran 3 of 3 cases as agent 'my agent/1'"]


def test_autobahn_client_refuses_a_bad_case_count():
    record = []
    with fuzzing_server("many", record) as srv:
        r = run([CLI, "autobahn-client", f"ws://127.0.0.1:{srv.port}", "--agent", "a"])
    assert r.returncode == 1 and "getCaseCount sent 'many', not a case count" in r.stderr
    assert record == []


# ------------------------------------------------------------------ usage

def test_help_and_usage_errors():
    for sub in ("connect", "echo", "serve", "autobahn-client"):
        r = run([CLI, sub, "--help"])
        assert r.returncode == 0 and r.stdout.startswith("usage: wscore " + sub), r.stdout
    assert run([CLI, "version"]).stdout.startswith("wscore 0.")
    bad = {
        ("echo", "--port", "70000"): "--port takes a whole number from 0 to 65535, not '70000'",
        ("echo", "--port", "12x"): "--port takes a whole number from 0 to 65535, not '12x'",
        ("echo", "--threads", "0"): "--threads takes a whole number from 1 to 256",
        ("echo", "--mode", "fast"): "--mode is callback, stream or blocking, not 'fast'",
        ("echo", "--cert", "a.pem"): "--cert and --key go together",
        ("echo", "--port"): "--port needs a value",
        ("connect",): "a URL is needed",
        ("connect", "ws://h/", "-H", "novalue"): "a header is 'Name: value', not 'novalue'",
        ("connect", "ws://h/", "-H", "Upgrade: h2c"): "header 'Upgrade' refused: invalid argument",
        ("connect", "ws://h/", "--frobnicate"): "unknown argument '--frobnicate'",
        ("autobahn-client", "ws://h/"): "--agent NAME is needed",
    }
    for argv, msg in bad.items():
        r = run([CLI] + list(argv))
        assert r.returncode == 2 and msg in r.stderr, (argv, r.stderr)
    r = run([CLI, "connect", "http://example.invalid/"])
    assert r.returncode == 1 and "invalid URL" in r.stderr
    r = run([CLI, "bogus"])
    assert r.returncode == 2 and "unknown command 'bogus'" in r.stderr
    with Proc([CLI, "echo", "--port", "0"]) as srv:  # a port in use is reported, not a crash
        r = run([CLI, "echo", "--port", str(srv.port)])
        assert r.returncode == 1 and "address already in use" in r.stderr
