#!/usr/bin/env python3
"""Fuzzing server: tests a WebSocket client with Autobahn's case catalogue
(our own implementation, Autobahn's case ids, verdicts and client protocol).

    fuzzingserver.py [--port 0] [--cases ...] [--exclude ...] [--no-slow] [--strict]
                     [--agent NAME] [--json FILE] [--markdown FILE] [--timeout S]
                     [-- TESTEE COMMAND ...]

The client under test speaks Autobahn's client protocol:
  GET /getCaseCount               -> one text message, the number of cases; then close
  GET /runCase?case=N&agent=A     -> case N (1-based) runs, we are the server side
  GET /updateReports?agent=A      -> reports are written; then close
  GET /getCaseInfo?case=N         -> {"id": ..., "description": ...}; then close
Prints "listening on 127.0.0.1:PORT". With a testee command (its arguments may
contain {url} and {agent}), starts it, waits for it (at most --timeout s),
judges every case for that agent (a case it never ran is FAILED) and exits 1 if
any case is FAILED or NON-STRICT. Without one, serves until interrupted.
"""
import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as catalogue  # noqa: E402
import fuzzer  # noqa: E402


class Command(catalogue.Case):
    """Not a test: a short exchange on the control paths (case count, info)."""

    def __init__(self, messages):
        def script(p, c):
            for m in messages:
                p.send_message(m)
            p.send_close(1000)
        super().__init__("control", "control connection", script, {}, fuzzer_close(), 1)
        self.received = []
        self.state = {}


def fuzzer_close():
    return {"closedByMe": True, "closeCode": [1000], "requireClean": False}


class Upgrade(asyncio.Protocol):
    """Reads the client's opening handshake, answers it, then hands the
    connection to a Fuzzer running whatever the path asks for."""

    def __init__(self, server):
        self.server = server
        self.buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.timeout = asyncio.get_running_loop().call_later(10, transport.abort)

    def data_received(self, data):
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 16384:
                self.refuse(431, "request head too large")
            return
        self.timeout.cancel()
        head, rest = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
            return self.refuse(400, f"bad request line {lines[0]!r}")
        hdrs = {}
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            if not sep:
                return self.refuse(400, f"bad header line {ln!r}")
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        key = hdrs.get("sec-websocket-key", [""])
        try:
            key_ok = len(key) == 1 and len(base64.b64decode(key[0], validate=True)) == 16
        except ValueError:
            key_ok = False
        conn_tokens = [t.strip().lower() for v in hdrs.get("connection", []) for t in v.split(",")]
        if ([v.lower() for v in hdrs.get("upgrade", [])] != ["websocket"] or "upgrade" not in conn_tokens
                or hdrs.get("sec-websocket-version") != ["13"] or not key_ok or "host" not in hdrs):
            return self.refuse(400, "not a valid WebSocket upgrade request (RFC 6455 4.1)")
        url = urllib.parse.urlsplit(parts[1])
        q = urllib.parse.parse_qs(url.query)
        route = self.server.route(url.path, q)
        if isinstance(route, str):
            return self.refuse(404, route)
        case, on_done = route
        self.transport.write((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Accept: {fuzzer.accept_key(key[0])}\r\n"
                              f"Server: wscore-conformance-fuzzingserver\r\n\r\n").encode())
        f = fuzzer.Fuzzer("server", case, asyncio.get_running_loop(), on_done)
        self.transport.set_protocol(f)
        f.connection_made(self.transport)
        f.start_open(rest)

    def refuse(self, status, why):
        print(f"refused a request: {status} {why}", file=sys.stderr, flush=True)
        body = why.encode()
        self.transport.write(f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                             + body)
        self.transport.close()

    def connection_lost(self, exc):
        if hasattr(self, "timeout"):
            self.timeout.cancel()


class FuzzingServer:
    def __init__(self, selected, strict, verbose):
        self.cases = selected
        self.strict = strict
        self.verbose = verbose
        self.results = {}           # agent -> {case id: result}
        self.reports_requested = asyncio.Event()

    def route(self, path, q):
        agent = q.get("agent", [None])[0]
        if path == "/getCaseCount":
            return Command([str(len(self.cases))]), lambda f: None
        if path in ("/runCase", "/getCaseInfo"):
            try:
                n = int(q.get("case", [""])[0])
            except ValueError:
                return "case must be a number"
            if not 1 <= n <= len(self.cases):
                return f"case {n} not found (1..{len(self.cases)})"
            tmpl = self.cases[n - 1]
            if path == "/getCaseInfo":
                return Command([json.dumps({"id": tmpl.id, "description": tmpl.description})]), lambda f: None
            if not agent:
                return "runCase needs an agent"
            c = tmpl.fresh()
            return c, lambda f: self.case_done(agent, c, f)
        if path == "/updateReports":
            if not agent:
                return "updateReports needs an agent"
            self.reports_requested.set()
            return Command([]), lambda f: None
        return f"unknown path {path}"

    def case_done(self, agent, c, f):
        r = fuzzer.judge(f, c, self.strict)
        self.results.setdefault(agent, {})[c.id] = r
        fuzzer.print_result(r, self.verbose)

    def results_for(self, agent):
        got = self.results.get(agent, {})
        out = []
        for c in self.cases:
            out.append(got.get(c.id) or {"id": c.id, "description": c.description, "verdict": fuzzer.FAILED,
                                         "behavior": fuzzer.FAILED, "behaviorClose": fuzzer.FAILED,
                                         "result": "the client never ran this case", "resultClose": ""})
        return out


async def serve(a, selected):
    loop = asyncio.get_running_loop()
    fs = FuzzingServer(selected, a.strict, a.verbose)
    tls = None
    if a.tls_cert:
        import ssl
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)
    server = await loop.create_server(lambda: Upgrade(fs), "127.0.0.1", a.port, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"
    print(f"listening on 127.0.0.1:{port}", flush=True)
    t0 = time.monotonic()
    if not a.testee:
        stop = loop.create_future()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
        await stop
        agents = sorted(fs.results)
    else:
        cmd = [x.replace("{url}", url).replace("{agent}", a.agent) for x in a.testee]
        proc = await asyncio.create_subprocess_exec(*cmd)
        try:
            rc = await asyncio.wait_for(proc.wait(), a.timeout)
        except asyncio.TimeoutError:
            print(f"the testee did not finish within {a.timeout} s: killed", file=sys.stderr)
            proc.kill()
            rc = await proc.wait()
        if rc != 0:
            print(f"the testee exited with status {rc}", file=sys.stderr)
        await asyncio.sleep(0.2)  # a last case's connection may still be ending
        agents = [a.agent]
    server.close()
    status = 0
    for agent in agents:
        results = fs.results_for(agent) if a.testee else list(fs.results[agent].values())
        print_summary(results, agent, time.monotonic() - t0)
        if a.json:
            fuzzer.write_json(a.json, agent, "client", results)
        if a.markdown:
            with open(a.markdown, "w", encoding="utf-8") as fh:
                fh.write(fuzzer.markdown(agent, "client", results))
        status |= fuzzer.exit_status(results)
    if a.testee and not fs.reports_requested.is_set():
        print("the testee never asked for /updateReports", file=sys.stderr)
        status = 1
    return status


def print_summary(results, agent, seconds):
    from fuzzingclient import print_summary as ps
    ps(results, agent, seconds)


def main():
    argv = sys.argv[1:]
    testee = []
    if "--" in argv:
        i = argv.index("--")
        argv, testee = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cases", default="*")
    ap.add_argument("--exclude", default="")
    ap.add_argument("--only-slow", action="store_true", help="only the long 9.x cases")
    ap.add_argument("--no-slow", action="store_true")
    ap.add_argument("--agent", default="client under test")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this certificate (and --tls-key)")
    ap.add_argument("--tls-key", metavar="FILE")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    a.testee = testee
    selected = catalogue.select(a.cases, a.exclude, not a.no_slow, a.only_slow)
    if not selected:
        print(f"no case matches {a.cases!r}", file=sys.stderr)
        return 2
    return asyncio.run(serve(a, selected))


if __name__ == "__main__":
    sys.exit(main())
