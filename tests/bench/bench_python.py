#!/usr/bin/env python3
"""The Python echo benchmark: wscore's Python binding (blocking API and asyncio
API) against the Python `websockets` library, on the same machine in the same run.

Server role: tests/bench/loadgen (C, pinned to CPU 0) drives a Python echo server
(pinned to CPU 1): wscore.asyncio.serve, wscore.serve (a thread per connection)
and websockets.serve. The headline is scenario b (64 connections x 16 messages in
flight, 64 B), ours (asyncio) against websockets.serve.

Client role: a Python client (pinned to CPU 1) drives the C echo server of the
wscore CLI (callback mode, pinned to CPU 0): wscore.connect (a thread per
connection), wscore.asyncio.connect and websockets.connect.

Every figure is the median of --runs runs of --seconds seconds; every echoed
message is compared with what was sent. CPU time per message is the utime+stime
of the measured Python process (all its threads, the library's loop thread
included) over the window, from /proc/PID/stat (server role) or getrusage
(client role).

    bench_python.py [--build build-rel] [--runs 3] [--seconds 3] [--write-docs]
    bench_python.py --smoke                 # a short sanity check of every path
    bench_python.py --calls                 # only the cffi call overhead (the full run measures it
                                            # too): ABI mode, and API mode when a compiler and
                                            # Python.h are at hand
Internal (run by the above): --serve KIND, --client KIND --port P ...

Run it with /usr/bin/python3 (Debian's cffi and websockets). The library is
WSCORE_LIBRARY when set, else BUILD/src/api/libwscore.so.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

SERVER_KINDS = ["wscore asyncio", "wscore blocking", "websockets"]
CLIENT_KINDS = ["wscore asyncio", "wscore blocking", "websockets"]

# name, conns, inflight, size
SERVER_SCENARIOS = [
    ("b: 64 conns x 16 in flight, 64 B", 64, 16, 64),
    ("a: 1 conn, 1 in flight, 64 B", 1, 1, 64),
    ("g: 4 conns x 4 in flight, 64 KiB", 4, 4, 65536),
]
CLIENT_SCENARIOS = SERVER_SCENARIOS


# ---------------------------------------------------------------- helpers

def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


BINDING = os.path.join(ROOT, "bindings", "python")  # --binding: another copy, to compare a change


def child_env(build):
    env = dict(os.environ)
    env.setdefault("WSCORE_LIBRARY", os.path.join(build, "src", "api", "libwscore.so"))
    env["PYTHONPATH"] = BINDING + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def proc_cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK  # utime + stime, every thread


class Proc:
    """A server process that prints 'listening on [HOST:]PORT' first; ended by its PID."""

    def __init__(self, argv, env, cpu=1):
        self.err = tempfile.TemporaryFile(mode="w+")  # a file, so that a chatty server never blocks on it
        self.p = subprocess.Popen(pin(cpu) + argv, stdout=subprocess.PIPE, stderr=self.err,
                                  text=True, env=env, preexec_fn=raise_nofile)
        line = self.p.stdout.readline()
        m = re.search(r"listening on (?:[\d.]+:)?(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{argv} did not start: {line!r} {self.stderr()}")
        self.port = int(m.group(1))
        threading.Thread(target=self.p.stdout.read, daemon=True).start()  # drain the rest

    def stderr(self):
        self.err.seek(0)
        return self.err.read()[-2000:]

    def cpu_seconds(self):
        return proc_cpu_seconds(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.err.close()


def loadgen(build, args, timeout):
    exe = os.path.join(build, "tests", "bench", "loadgen")
    r = subprocess.run(pin(0) + [exe] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, preexec_fn=raise_nofile)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen {args} failed: {r.stdout} {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- servers (child processes)

def serve(kind):
    if kind == "websockets":
        import websockets

        async def echo(ws, path=None):
            async for m in ws:
                await ws.send(m)

        async def main():
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            server = await websockets.serve(echo, "127.0.0.1", 0, max_size=None, compression=None,
                                            ping_interval=None)
            print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
            await stop.wait()
            server.close()
            await asyncio.wait_for(server.wait_closed(), 5)

        asyncio.run(main())
    elif kind == "wscore asyncio":
        import wscore.asyncio as wsa

        async def echo(ws):
            async for m in ws:
                await ws.send(m)

        async def main():
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            server = await wsa.serve(echo, "127.0.0.1", 0)
            print(f"listening on {server.port}", flush=True)
            await stop.wait()
            server.close()
            await asyncio.wait_for(server.wait_closed(), 5)

        asyncio.run(main())
    elif kind == "wscore blocking":
        import wscore

        def echo(ws):
            for m in ws:
                ws.send(m)

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        with wscore.serve(echo, "127.0.0.1", 0) as server:
            server.start()
            print(f"listening on {server.port}", flush=True)
            while not stop.wait(0.2):
                pass
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


# ---------------------------------------------------------------- clients (child processes)

def _cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def client(kind, port, conns, inflight, size, seconds):
    """Runs `conns` connections with `inflight` messages each in flight (a reply
    triggers the next message) for `seconds`; prints one JSON line."""
    url = f"ws://127.0.0.1:{port}/bench"
    payload = bytes((97 + i % 26) for i in range(size))
    if kind == "wscore blocking":
        import wscore
        socks = [wscore.connect(url) for _ in range(conns)]
        results = [None] * conns
        barrier = threading.Barrier(conns + 1)
        box = {}

        def run(i):
            ws = socks[i]
            barrier.wait()
            deadline = box["deadline"]
            n = bad = 0
            for _ in range(inflight):
                ws.send(payload)
            while True:
                if ws.recv(timeout=30) != payload:
                    bad += 1
                n += 1
                if time.monotonic() >= deadline:
                    break
                ws.send(payload)
            results[i] = (n, bad)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
        for t in threads:
            t.start()
        c0, t0 = _cpu_self(), time.monotonic()
        box["deadline"] = t0 + seconds
        barrier.wait()
        for t in threads:
            t.join(seconds + 60)
        el, cpu = time.monotonic() - t0, _cpu_self() - c0
        for ws in socks:
            ws.close()
            ws.release()
    else:
        if kind == "wscore asyncio":
            import wscore.asyncio as wsa
            opener = lambda: wsa.connect(url)  # noqa: E731
        elif kind == "websockets":
            import websockets
            opener = lambda: websockets.connect(url, max_size=None, compression=None,  # noqa: E731
                                                ping_interval=None)
        else:
            raise SystemExit(f"unknown client kind {kind!r}")

        async def drive(ws, deadline):
            n = bad = 0
            for _ in range(inflight):
                await ws.send(payload)
            while True:
                if await ws.recv() != payload:
                    bad += 1
                n += 1
                if time.monotonic() >= deadline:
                    return n, bad
                await ws.send(payload)

        async def main():
            socks = [await opener() for _ in range(conns)]
            c0, t0 = _cpu_self(), time.monotonic()
            res = await asyncio.wait_for(asyncio.gather(*(drive(ws, t0 + seconds) for ws in socks)),
                                         seconds + 60)
            el, cpu = time.monotonic() - t0, _cpu_self() - c0
            await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in socks)), 30)
            for ws in socks:
                getattr(ws, "release", lambda: None)()
            return res, el, cpu

        results, el, cpu = asyncio.run(main())
    n = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    print(json.dumps({"kind": kind, "conns": conns, "inflight": inflight, "size": size, "seconds": el,
                      "messages": n, "msgs_per_s": n / el, "MBps": n * size / el / 1e6,
                      "cpu_us_per_msg": cpu / max(n, 1) * 1e6, "errors": bad}), flush=True)


# ---------------------------------------------------------------- measuring (parent)

def measure_server(build, kind, conns, inflight, size, seconds):
    s = Proc([PY, os.path.abspath(__file__), "--serve", kind], child_env(build), cpu=1)
    try:
        c0 = s.cpu_seconds()
        r = loadgen(build, ["--port", s.port, "--mode", "ws", "--conns", conns, "--inflight", inflight,
                            "--size", size, "--seconds", seconds], timeout=seconds + 60)
        r["cpu_us_per_msg"] = (s.cpu_seconds() - c0) / max(r["messages"], 1) * 1e6
        if r["errors"]:
            raise EchoMismatch(f"{kind}: {r['errors']} echoes differed")
        return r
    finally:
        s.stop()


def measure_client(build, kind, conns, inflight, size, seconds):
    cli = os.path.join(build, "src", "cli", "wscore")
    s = Proc([cli, "echo", "--port", "0", "--mode", "callback"], child_env(build), cpu=0)
    try:
        r = subprocess.run(pin(1) + [PY, os.path.abspath(__file__), "--client", kind, "--port", str(s.port),
                                     "--conns", str(conns), "--inflight", str(inflight), "--size", str(size),
                                     "--seconds", str(seconds)],
                           capture_output=True, text=True, env=child_env(build), timeout=seconds + 120,
                           preexec_fn=raise_nofile)
        if r.returncode != 0:
            raise RuntimeError(f"client {kind} failed: {r.stdout} {r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        if res["errors"]:
            raise EchoMismatch(f"{kind}: {res['errors']} echoes differed")
        return res
    finally:
        s.stop()


class EchoMismatch(Exception):
    """An echo differed from what was sent: a bug, never retried."""


def retried(fn, *args, tries=3):
    """fn(*args), tried again when a run fails for a reason outside the measured code
    (this machine is shared: a peer process may be ended under it)."""
    for i in range(tries):
        try:
            return fn(*args)
        except EchoMismatch:
            raise
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            if i == tries - 1:
                raise
            print(f"run failed ({str(e).strip().splitlines()[-1][:200]}); running it again", file=sys.stderr,
                  flush=True)


def medians(runs):
    return {k: statistics.median(r[k] for r in runs) for k in ("msgs_per_s", "MBps", "cpu_us_per_msg")}


def smoke(build):
    for kind in SERVER_KINDS:
        r = measure_server(build, kind, 4, 4, 64, 1)
        assert r["messages"] > 100, (kind, r)
        print("server", kind, "ok", int(r["msgs_per_s"]), "msg/s", flush=True)
    for kind in CLIENT_KINDS:
        r = measure_client(build, kind, 2, 4, 1000, 1)
        assert r["messages"] > 100, (kind, r)
        print("client", kind, "ok", int(r["msgs_per_s"]), "msg/s", flush=True)
    print("bench_python smoke: ok")


# ---------------------------------------------------------------- cffi call overhead

def calls(build, n=200_000, reps=9):
    """ns per call of cheap functions through ABI mode (the binding's) and, when a C
    compiler and Python.h are present, through an out-of-line API-mode module built
    from the same cdef into a temporary directory. Both modes are timed in turns
    (best of `reps` batches of `n` calls, less the cost of calling a Python no-op
    the same way), pinned to CPU 1."""
    import tempfile
    if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    os.environ.setdefault("WSCORE_LIBRARY", os.path.join(build, "src", "api", "libwscore.so"))
    sys.path.insert(0, BINDING)
    from wscore import _lib

    modes = {"ABI mode (ffi.dlopen, the binding)": (_lib.lib, _lib.ffi)}
    tmp = tempfile.mkdtemp(prefix="wscore-cffi-api-")
    try:
        if shutil.which("cc") or shutil.which("gcc"):
            try:
                from cffi import FFI
                api = FFI()
                api.cdef(_lib.CDEF)
                real = os.path.realpath(os.environ["WSCORE_LIBRARY"])
                libdir = os.path.dirname(real)
                api.set_source("_wscore_api_bench", '#include "wscore.h"',
                               include_dirs=[os.path.join(ROOT, "include")], library_dirs=[libdir],
                               libraries=[":" + os.path.basename(real)], extra_link_args=[f"-Wl,-rpath,{libdir}"])
                api.compile(tmpdir=tmp, verbose=False)
                sys.path.insert(0, tmp)
                import _wscore_api_bench as m
                modes["API mode (out-of-line, compiled)"] = (m.lib, m.ffi)
            except Exception as e:  # no compiler / headers: ABI mode only
                print(f"API mode not measured: {e}", file=sys.stderr)
        handles, fns = [], {}
        for label, (lib, ffi) in modes.items():
            srv_out = ffi.new("ws_server **")
            assert lib.ws_listen(b"127.0.0.1", 0, ffi.NULL, srv_out) == 0
            conn_out = ffi.new("ws_conn **")
            url = f"ws://127.0.0.1:{lib.ws_server_port(srv_out[0])}/".encode()
            assert lib.ws_open(url, ffi.NULL, conn_out) == 0
            c, msg = conn_out[0], ffi.new("ws_message **")
            handles.append((lib, srv_out[0], c))
            buffered, state, receive = lib.ws_buffered_amount, lib.ws_state, lib.ws_receive
            fns[label] = {"ws_buffered_amount(c)": lambda f=buffered, c=c: f(c),
                          "ws_state(c)": lambda f=state, c=c: f(c),
                          "ws_receive(c, &m, 0) -> EAGAIN": lambda f=receive, c=c, m=msg: f(c, m, 0)}
        noop = lambda: None  # noqa: E731
        best = {(label, name): float("inf") for label in fns for name in fns[label]}
        base = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(n):
                noop()
            base = min(base, time.perf_counter() - t0)
            for label, named in fns.items():
                for name, f in named.items():
                    t0 = time.perf_counter()
                    for _ in range(n):
                        f()
                    best[(label, name)] = min(best[(label, name)], time.perf_counter() - t0)
        for lib, srv, c in handles:
            lib.ws_free(c)
            lib.ws_server_free(srv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {label: {name: (best[(label, name)] - base) / n * 1e9 for name in named} for label, named in fns.items()}
    for label, r in rows.items():
        print(label, json.dumps({k: round(v, 1) for k, v in r.items()}), flush=True)
    return rows


# ---------------------------------------------------------------- report

def render(srows, crows, a, calls_rows):
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    out = ["## Python binding", "",
           f"Command: `/usr/bin/python3 tests/bench/bench_python.py --build {a.build_rel} --runs {a.runs} "
           f"--seconds {a.seconds} --write-docs` (a release build of the library, "
           f"`meson setup build-rel --buildtype=release`; Python {platform.python_version()}, "
           f"cffi {_version('cffi')}, websockets {_version('websockets')}, default asyncio event loop). "
           f"Measured process pinned to CPU 1 and its load (tests/bench/loadgen, or the wscore CLI echo "
           f"server) to CPU 0; medians of {a.runs} runs of {a.seconds} s; every echo compared with what was "
           f"sent. CPU µs/msg: utime+stime of the Python process (every thread, the library's loop "
           f"thread included) over the window, per echoed message.", "",
           f"Measured {datetime.date.today()} on {os.cpu_count()} cores (`nproc`), kernel "
           f"{platform.release()}, load average {a.load_start} at the start and {load} at the end "
           f"(the machine is shared with other work).", ""]
    out += _tables("### Python echo server, driven by tests/bench/loadgen", SERVER_SCENARIOS, srows,
                   SERVER_KINDS, "server")
    out += _tables("### Python echo client, against the wscore CLI echo server (C, callback mode)",
                   CLIENT_SCENARIOS, crows, CLIENT_KINDS, "client")
    if calls_rows:
        out += ["### cffi call overhead (`bench_python.py --calls`)", "",
                "| mode | " + " | ".join(f"`{k}` ns" for k in next(iter(calls_rows.values()))) + " |",
                "|---|" + "---|" * len(next(iter(calls_rows.values())))]
        for label, r in calls_rows.items():
            out.append(f"| {label} | " + " | ".join(f"{v:.0f}" for v in r.values()) + " |")
        out.append("")
    return "\n".join(out)


def _tables(title, scenarios, rows, kinds, role):
    """One table per scenario: each kind's figures and its ratio to websockets'."""
    out = [title, ""]
    for name, *_ in scenarios:
        ref = rows.get((name, "websockets"))
        out += [f"#### {name}", "",
                f"| {role} | messages/s | MB/s | × websockets | {role} CPU µs/msg |", "|---|---|---|---|---|"]
        for kind in kinds:
            r = rows.get((name, kind))
            if r:
                ratio = f"{r['msgs_per_s'] / ref['msgs_per_s']:.2f}" if ref else "-"
                out.append(f"| {_label(kind, role)} | {r['msgs_per_s']:,.0f} | {r['MBps']:.1f} | {ratio} | "
                           f"{r['cpu_us_per_msg']:.1f} |")
        out.append("")
    return out


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:
        return "?"


def _label(kind, role):
    return {("wscore asyncio", "server"): "wscore.asyncio.serve",
            ("wscore blocking", "server"): "wscore.serve (thread per connection)",
            ("websockets", "server"): "websockets.serve",
            ("wscore asyncio", "client"): "wscore.asyncio.connect",
            ("wscore blocking", "client"): "wscore.connect (thread per connection)",
            ("websockets", "client"): "websockets.connect"}[(kind, role)]


def write_docs(section):
    path = os.path.join(ROOT, "docs", "performance.md")
    doc = open(path, encoding="utf-8").read()
    start = doc.index("## Python binding")
    nxt = doc.find("\n## ", start + 5)
    tail = doc[nxt + 1:] if nxt >= 0 else ""
    # Keep the hand-written notes that follow the generated tables ("### Notes" onwards).
    old = doc[start:nxt + 1 if nxt >= 0 else len(doc)]
    k = old.find("\n### Notes")
    notes = old[k + 1:] if k >= 0 else ""
    doc = doc[:start] + section.rstrip("\n") + "\n" + ("\n" + notes.rstrip("\n") + "\n" if notes else "") + \
        ("\n" + tail if tail else "")
    open(path, "w", encoding="utf-8").write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=None, help="build directory (default: build-rel, else build)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--calls", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--only", choices=["server", "client"], help="measure one role only")
    ap.add_argument("--scenario", action="append", help="a scenario letter (a, b, g); repeatable")
    ap.add_argument("--kind", action="append", choices=SERVER_KINDS, help="one implementation only; repeatable")
    ap.add_argument("--binding", help="the directory holding the wscore package to measure "
                    "(default: bindings/python of this tree)")
    ap.add_argument("--serve", metavar="KIND")
    ap.add_argument("--client", metavar="KIND")
    ap.add_argument("--port", type=int)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--inflight", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    global BINDING
    if a.binding:
        BINDING = os.path.abspath(a.binding)
    if a.serve:
        return serve(a.serve)
    if a.client:
        return client(a.client, a.port, a.conns, a.inflight, a.size, a.seconds)
    if a.build is None:
        rel = os.path.join(ROOT, "build-rel")
        a.build = rel if os.path.exists(os.path.join(rel, "tests", "bench", "loadgen")) else os.path.join(ROOT, "build")
    a.build_rel = os.path.relpath(a.build, ROOT)
    if a.smoke:
        return smoke(a.build)
    if a.calls:
        calls(a.build)
        return 0
    a.load_start = " ".join(open("/proc/loadavg").read().split()[:3])
    pick = lambda scen: [s for s in scen if not a.scenario or s[0][0] in a.scenario]  # noqa: E731
    def run_role(role, scenarios, all_kinds, measure):
        rows = {}
        for name, conns, inflight, size in pick(scenarios):
            kinds = [k for k in all_kinds if not a.kind or k in a.kind]
            # Interleaved (run 1 of each, run 2 of each, ...): drift in the machine's
            # load falls on every implementation alike.
            per = {k: [] for k in kinds}
            for _ in range(a.runs):
                for kind in kinds:
                    per[kind].append(retried(measure, a.build, kind, conns, inflight, size, a.seconds))
            for kind, runs in per.items():
                rows[(name, kind)] = medians(runs)
                print(role, name, kind, {k: round(v, 2) for k, v in rows[(name, kind)].items()},
                      "runs:", [int(r["msgs_per_s"]) for r in runs], flush=True)
        return rows

    srows = run_role("server", SERVER_SCENARIOS, SERVER_KINDS, measure_server) if a.only in (None, "server") else {}
    crows = run_role("client", CLIENT_SCENARIOS, CLIENT_KINDS, measure_client) if a.only in (None, "client") else {}
    calls_rows = calls(a.build) if a.only is None and not a.scenario and not a.kind else None
    report = render(srows, crows, a, calls_rows)
    print(report)
    if a.write_docs:
        write_docs(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
