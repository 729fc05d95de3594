#!/usr/bin/python3
"""The echo benchmark: runs tests/bench/loadgen against each echo server, the
server pinned to CPU 1 and the load generator to CPU 0, and reports medians
over several runs with ratios to the raw TCP echo of the same run and to the
best peer (the best server that is neither wscore nor the raw echo), the
server's CPU time per message (from /proc/PID/stat over the window), the
handshake rate and the memory per idle connection, over ws:// and wss://.

    run_echo.py BUILDDIR [--runs 3] [--seconds 3] [--write-docs]   # the full benchmark
    run_echo.py BUILDDIR --smoke                                    # a ~3 s sanity check (meson test bench_smoke)
    run_echo.py BUILDDIR --runs 1 --seconds 1 --only a,e --servers raw,wscore,Node   # a quick trial
    run_echo.py BUILDDIR --render BUILDDIR/echo-bench.json --write-docs              # re-render a saved run

The full run builds the peer servers it needs (ninja targets of BUILDDIR) and
says which are missing and why; every server missing, failed or unable to
hold the idle connections is reported as such in the tables.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")
NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")
BENCH = os.path.join(ROOT, "tests", "bench")

# key, title, connections, in flight per connection, message size, TLS
SCENARIOS = [
    ("a", "1 connection, 1 in flight, 64 B", 1, 1, 64, False),
    ("b", "64 connections x 16 in flight, 64 B", 64, 16, 64, False),
    ("c", "16 connections x 4 in flight, 16 KiB", 16, 4, 16384, False),
    ("d", "4 connections x 1 in flight, 1 MiB", 4, 1, 1 << 20, False),
    ("c-wss", "wss://, 16 connections x 4 in flight, 16 KiB", 16, 4, 16384, True),
    ("d-wss", "wss://, 4 connections x 1 in flight, 1 MiB", 4, 1, 1 << 20, True),
]
HANDSHAKE_CONNS = 8  # (e): handshakes in progress at a time

RAW = "raw TCP echo"
CALLBACK = "wscore (callback)"
STREAM = "wscore (callback, parts)"
BLOCKING = "wscore (blocking API, poll)"
NODE = "Node ws"
ORDER = [RAW, CALLBACK, STREAM, BLOCKING, NODE, "Bun", "Boost.Beast", "websocketpp", "libwebsockets"]
COLORS = {RAW: "#7f7f7f", CALLBACK: "#d62728", STREAM: "#e377c2", BLOCKING: "#ff9896", NODE: "#1f77b4", "Bun": "#ffbb78",
          "Boost.Beast": "#2ca02c", "websocketpp": "#9467bd", "libwebsockets": "#8c564b"}


def is_peer(name):
    return name != RAW and not name.startswith("wscore")


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def exe(build, *parts):
    return os.path.join(build, *parts)


# ---------------------------------------------------------------- servers


class Spec:
    """A server under test: argv for ws://, argv for wss:// (or None), and
    argv for the handshake scenario when it differs (the raw echo)."""

    def __init__(self, name, plain, tls=None, handshake=None):
        self.name, self.plain, self.tls, self.handshake = name, plain, tls, handshake or plain


def bun_binary():
    for p in (os.path.join(NODE_MODULES, ".bin", "bun"), os.path.join(NODE_MODULES, "bun", "bin", "bun"),
              os.path.join(NODE_MODULES, "bun", "bin", "bun.exe")):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def build_targets(build, targets):
    """ninja -C build TARGET for each; returns {target: None or why it failed}."""
    out = {}
    for t in targets:
        r = subprocess.run(["ninja", "-C", build, t], capture_output=True, text=True, timeout=900)
        out[t] = None if r.returncode == 0 else (r.stdout + r.stderr).strip().splitlines()[-1:]
    return out


PEER_BUILDS = [
    # name, ninja target, header that must be installed, Debian package
    ("Boost.Beast", "tests/bench/echo_beast", "/usr/include/boost/beast/websocket.hpp", "libboost-dev"),
    ("websocketpp", "tests/bench/echo_wspp", "/usr/include/websocketpp/server.hpp", "libwebsocketpp-dev"),
    ("libwebsockets", "tests/bench/echo_lws", "/usr/include/libwebsockets.h", "libwebsockets-dev"),
]


def discover(build, pki, do_build):
    """The servers of this run, and {name: why it is missing}."""
    cli = exe(build, "src", "cli", "wscore")
    missing = {}
    if do_build:
        base = build_targets(build, ["tests/bench/loadgen", "tests/bench/echo_raw", "src/cli/wscore"])
        bad = {t: w for t, w in base.items() if w}
        if bad:
            sys.exit(f"run_echo: cannot build {', '.join(bad)} in {build}: {bad}")
    tls = lambda *argv: list(argv) + ["--cert", os.path.join(pki, "server.pem"), "--key", os.path.join(pki, "server.key")]
    tls_args = ["--tls", os.path.join(pki, "server.pem"), os.path.join(pki, "server.key")]
    specs = {
        RAW: Spec(RAW, [exe(build, "tests", "bench", "echo_raw"), "0"],
                  handshake=[exe(build, "tests", "bench", "echo_raw"), "0", "--handshake"]),
        CALLBACK: Spec(CALLBACK, [cli, "echo", "--port", "0", "--mode", "callback"],
                       tls(cli, "echo", "--port", "0", "--mode", "callback")),
        STREAM: Spec(STREAM, [cli, "echo", "--port", "0", "--mode", "stream"],
                     tls(cli, "echo", "--port", "0", "--mode", "stream")),
        BLOCKING: Spec(BLOCKING, [cli, "echo", "--port", "0", "--mode", "blocking"],
                       tls(cli, "echo", "--port", "0", "--mode", "blocking")),
    }
    if not shutil.which("node"):
        missing[NODE] = "node is not installed (bash .ci/install-deps)"
    elif not os.path.isdir(os.path.join(NODE_MODULES, "ws")):
        missing[NODE] = "tests/node_modules/ws is missing (cd tests && npm install)"
    else:
        js = os.path.join(BENCH, "echo_ws.js")
        specs[NODE] = Spec(NODE, ["node", js], ["node", js] + tls_args)
    bun = bun_binary()
    if not bun:
        missing["Bun"] = "the npm package bun is not installed (cd tests && npm install)"
    else:
        js = os.path.join(BENCH, "echo_bun.js")
        specs["Bun"] = Spec("Bun", [bun, js], [bun, js] + tls_args)
    for name, target, header, pkg in PEER_BUILDS:
        path = exe(build, *target.split("/"))
        if do_build:
            why = build_targets(build, [target])[target]
            if why:
                if not os.path.exists(header):
                    missing[name] = f"not built: {pkg} is not installed (apt-get install {pkg}, then " \
                                    f"meson setup --reconfigure {build})"
                else:
                    missing[name] = f"ninja -C {build} {target} failed ({' '.join(why)}); if {pkg} was " \
                                    f"installed after {build} was configured: meson setup --reconfigure {build}"
                continue
        if not os.path.exists(path):
            missing[name] = f"{path} is not built (ninja -C {build} {target})"
            continue
        specs[name] = Spec(name, [path], [path] + tls_args if name == "libwebsockets" else None)
    ordered = {n: specs[n] for n in ORDER if n in specs}
    return ordered, missing


class Server:
    def __init__(self, argv):
        env = dict(os.environ, NODE_PATH=NODE_MODULES)
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(pin(1) + argv, stdout=subprocess.PIPE, stderr=self.err, text=True, env=env,
                                  preexec_fn=raise_nofile)
        line = ""
        if select.select([self.p.stdout], [], [], 30)[0]:
            line = self.p.stdout.readline()
        if "listening on" not in line:
            self.stop()
            self.err.seek(0)
            raise RuntimeError(f"{os.path.basename(argv[0])} did not start: {line.strip()!r} "
                               f"{self.err.read()[-300:].strip()}")
        self.port = int(line.strip().rsplit(":", 1)[-1].split()[-1])

    def cpu_seconds(self):
        f = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK  # utime + stime, all threads

    def rss_kib(self):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()


# ---------------------------------------------------------------- measurements

LOAD_SAMPLES = []
OTHERS = []  # CPU (in cores) used by everything but the server and loadgen, per measurement window


def sample_load():
    LOAD_SAMPLES.append(float(open("/proc/loadavg").read().split()[0]))


class Window:
    """Measures, over a load generator run, the CPU time of the machine (user,
    nice, system, irq and softirq of all CPUs: tick-based accounting charges
    the softirq time of our loopback traffic to the server and loadgen too)
    minus the server's and loadgen's: other processes' share, which is what
    makes a run noisy. The benchmark's own two busy processes keep the load
    average near 2 by themselves, so the load average cannot tell that."""

    def __init__(self, server):
        self.server = server
        self.t0, self.busy0, self.srv0, self.kids0 = time.time(), self.busy(), server.cpu_seconds(), self.kids()

    @staticmethod
    def busy():
        f = open("/proc/stat").readline().split()
        return (int(f[1]) + int(f[2]) + int(f[3]) + int(f[6]) + int(f[7])) / TICK

    @staticmethod
    def kids():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def close(self):
        el = time.time() - self.t0
        if el > 0.2:
            other = (self.busy() - self.busy0) - (self.server.cpu_seconds() - self.srv0) - (self.kids() - self.kids0)
            OTHERS.append(max(other, 0) / el)


def loadgen(build, args, timeout):
    r = subprocess.run(pin(0) + [exe(build, "tests", "bench", "loadgen")] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout, preexec_fn=raise_nofile)
    lines = r.stdout.strip().splitlines()
    res = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if r.returncode != 0 or res is None:
        raise RuntimeError(f"loadgen failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-300:]} "
                           f"{'errors: ' + str(res['errors']) if res else ''}")
    return res


def measure(build, argv, mode, conns, inflight, size, seconds, tls=False, cdf=None):
    s = Server(argv)
    try:
        c0 = s.cpu_seconds()
        args = ["--port", s.port, "--mode", mode, "--conns", conns, "--inflight", inflight, "--size", size,
                "--seconds", seconds] + (["--tls"] if tls else []) + (["--cdf", cdf] if cdf else [])
        w = Window(s)
        res = loadgen(build, args, timeout=seconds + 60)
        w.close()
        if not res["messages"]:
            raise RuntimeError(f"no echo completed in {seconds} s")
        res["cpu_us_per_msg"] = (s.cpu_seconds() - c0) / max(res["messages"], 1) * 1e6
        return res
    finally:
        s.stop()
        sample_load()


def handshakes(build, argv, seconds, conns=HANDSHAKE_CONNS):
    s = Server(argv)
    try:
        c0 = s.cpu_seconds()
        w = Window(s)
        res = loadgen(build, ["--port", s.port, "--handshakes", "--conns", conns, "--seconds", seconds],
                      timeout=seconds + 60)
        w.close()
        if not res["handshakes"]:
            raise RuntimeError(f"no handshake completed in {seconds} s")
        res["cpu_us_per_hs"] = (s.cpu_seconds() - c0) / max(res["handshakes"], 1) * 1e6
        return res
    finally:
        s.stop()
        sample_load()


def idle_memory(build, argv, mode, n, tls):
    """VmRSS growth per connection while n idle connections are open; None when
    the server cannot hold them."""
    s = Server(argv)
    try:
        def idle(k, hold):
            return subprocess.Popen(pin(0) + [exe(build, "tests", "bench", "loadgen"), "--port", str(s.port),
                                              "--mode", mode, "--idle", str(k), "--hold", str(hold)]
                                    + (["--tls"] if tls else []),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    preexec_fn=raise_nofile)
        # One connection opened and closed before the baseline: the first
        # handshake faults in code and tables once per process (libcrypto's
        # SHA-1 and its provider set up, 1.5 MiB of file-backed pages for
        # wscore, a JIT's first code for Node), which is not memory per
        # connection. Its own memory is freed again before the N are opened.
        w = idle(1, 0)
        w.communicate(timeout=30)
        if w.returncode != 0:
            return None
        time.sleep(0.3)
        before = s.rss_kib()
        p = idle(n, 3)
        line = ""
        if select.select([p.stdout], [], [], 120)[0]:
            line = p.stdout.readline()
        if not line.startswith("READY"):
            p.kill()
            p.wait()
            return None
        time.sleep(1.0)
        after = s.rss_kib()
        p.wait(60)
        return (after - before) * 1024 / n
    finally:
        s.stop()
        sample_load()


def attempt(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
        return {"error": str(e)[:300]}


def median_of(runs, keys):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    out = {k: statistics.median(r[k] for r in ok) for k in keys if k in ok[0]}
    out["runs"] = len(ok)
    out["of"] = len(runs)
    if len(ok) < len(runs):
        out["failed_runs"] = [r["error"] for r in runs if "error" in r]
    return out


ECHO_KEYS = ["msgs_per_s", "MBps", "p50_us", "p99_us", "p999_us", "max_us", "cpu_us_per_msg"]
HS_KEYS = ["per_s", "p50_us", "p99_us", "cpu_us_per_hs"]


def run_all(build, specs, a, pki):
    res = {"echo": {}, "handshakes": {}, "idle": {}, "cdf": {}}
    only = set(a.only.split(",")) if a.only else None
    tmp = tempfile.mkdtemp(prefix="wscore-bench-")
    for key, title, conns, inflight, size, tls in SCENARIOS:
        if only and key not in only:
            continue
        names = [n for n, s in specs.items() if (s.tls if tls else s.plain)]
        runs = {n: [] for n in names}
        cdfs = {n: [] for n in names}
        for i in range(a.runs):  # runs interleaved: noise spreads over all servers
            for n in names:
                spec = specs[n]
                cdf = os.path.join(tmp, f"cdf-{key}-{i}-{ORDER.index(n)}.txt") if key == "a" else None
                r = attempt(measure, build, spec.tls if tls else spec.plain, "raw" if n == RAW else "ws", conns,
                            inflight, size, a.seconds, tls=tls, cdf=cdf)
                runs[n].append(r)
                if cdf and "error" not in r and os.path.exists(cdf):
                    cdfs[n].append((r["p99_us"], [tuple(map(float, l.split())) for l in open(cdf)]))
                print(f"  {key} run {i + 1} {n}: " + (r["error"] if "error" in r else
                      f"{r['msgs_per_s']:,.0f} msg/s {r['MBps']:.1f} MB/s p50 {r['p50_us']:.0f} p99 {r['p99_us']:.0f} "
                      f"p99.9 {r['p999_us']:.0f} us cpu {r['cpu_us_per_msg']:.2f} us/msg"), flush=True)
        for n in names:
            res["echo"][f"{key}|{n}"] = median_of(runs[n], ECHO_KEYS)
            if cdfs[n]:  # the distribution of the run with the median p99
                res["cdf"][n] = sorted(cdfs[n], key=lambda c: c[0])[len(cdfs[n]) // 2][1]
    if not only or "e" in only:
        runs = {n: [] for n in specs}
        for i in range(a.runs):
            for n, spec in specs.items():
                r = attempt(handshakes, build, spec.handshake, a.seconds)
                runs[n].append(r)
                print(f"  e run {i + 1} {n}: " + (r["error"] if "error" in r else
                      f"{r['per_s']:,.0f}/s p50 {r['p50_us']:.0f} us cpu {r['cpu_us_per_hs']:.1f} us"), flush=True)
        for n in specs:
            res["handshakes"][n] = median_of(runs[n], HS_KEYS)
    if not only or "f" in only:
        for tls in (False, True):
            for n, spec in specs.items():
                argv = spec.tls if tls else spec.plain
                if not argv:
                    continue
                r = attempt(idle_memory, build, argv, "raw" if n == RAW else "ws", a.idle, tls)
                res["idle"][f"{'wss' if tls else 'ws'}|{n}"] = r
                print(f"  f {'wss' if tls else 'ws'} {n}: {r}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return res


# ---------------------------------------------------------------- report


def lib_mtime(build):
    p = exe(build, "src", "api", "libwscore.so")
    return os.path.getmtime(p) if os.path.exists(p) else None


def library_stamp(build, mtime0):
    """The commit the library was built from, whether src/ had changes, and
    whether it was rebuilt while the benchmark ran (others work on it)."""
    def git(*args):
        r = subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_modified": bool(git("status", "--porcelain", "src")),
            "rebuilt_during_run": mtime0 is not None and lib_mtime(build) != mtime0}


def machine():
    model, cores = "unknown CPU", os.cpu_count()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu": model, "cores": cores, "kernel": platform.release()}


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def best_peer(rows, field, higher=True):
    peers = [(n, r[field]) for n, r in rows.items() if is_peer(n) and "error" not in r]
    if not peers:
        return None, None
    return (max if higher else min)(peers, key=lambda p: p[1])


def cell_error(r, what="failed"):
    e = r.get("error", "")
    return f"{what}: {e[:120]}" if e else what


def measured_line(meta):
    m, loads, lib = meta["machine"], meta["load"], meta.get("library") or {}
    line = (f"Measured {meta['date']} on {m['cores']} cores of an {m['cpu']}, kernel {m['kernel']}"
            + (f", library at commit {lib['commit']}" + (" with uncommitted changes in src/" if lib.get("src_modified")
                                                        else "") if lib.get("commit") else "")
            + f"; {meta['duration_min']:.0f} min. Load average {loads['start']:.2f} before the run, at most "
              f"{loads['max']:.2f} during it (the benchmark's own server and load generator count about 2)")
    om = loads.get("others_mean")
    if om is None:
        line += "."
    else:
        busy = om > 0.25 or loads["start"] > 1.5
        line += (f"; other processes used {om * 100:.0f} % of a core on average during the measurement windows "
                 f"(at most {loads['others_max'] * 100:.0f} %)"
                 + (" — other work shared the cores, so the figures are noisier than usual." if busy else "."))
    if lib.get("rebuilt_during_run"):
        line += " The library was rebuilt while the benchmark ran: rows measured before and after differ in code."
    return line


def table_rows(rows, columns, fmt):
    """The table lines of the servers in `rows`, in ORDER: fmt(name, result), or
    the error in the first of `columns` cells."""
    out = []
    for n in ORDER:
        if n not in rows:
            continue
        r = rows[n]
        out.append(f"| {n} | {cell_error(r)} |" + " |" * (columns - 1) if "error" in r else fmt(n, r))
    return out


def render(res, meta, plot_rel):
    runs_note = f"medians of {meta['runs']} runs of {meta['seconds']} s"
    out = ["## Echo benchmark", "",
           f"Command: `tests/bench/run_echo.py build-rel --runs {meta['runs']} --seconds {meta['seconds']} --write-docs` "
           "(a release build: `meson setup build-rel --buildtype=release`; the peers: `WSCORE_BENCH=1 bash "
           ".ci/install-deps`, which adds libboost-dev, libwebsocketpp-dev, libwebsockets-dev and the npm package "
           "bun; the plot needs python3-matplotlib). The runner builds the peer servers "
           "(`ninja -C build-rel tests/bench/echo_beast tests/bench/echo_wspp tests/bench/echo_lws`) and names any "
           "it cannot run.", "",
           f"Every server runs single-threaded, pinned to CPU 1 (`taskset`); `tests/bench/loadgen` (C, epoll, one "
           f"thread, pre-built masked frames, every echoed byte verified) is pinned to CPU 0. {runs_note.capitalize()}, the "
           "runs interleaved across servers. RTT is from handing a frame to `write()` to its verified echo. "
           "Server CPU is user + system time from `/proc/PID/stat` over the window, per message. "
           "\"× raw\" is the ratio to the raw TCP echo (`tests/bench/echo_raw`, no protocol) of the same run; "
           "\"× best peer\" to the best server in that table that is neither wscore nor raw. "
           "wss:// rows use a throwaway certificate made at run time (`tests/tls/make_certs.sh`); "
           "their \"× raw\" is to the plain raw TCP echo of the same message size. The raw echo has no framing: "
           "the frames due on a connection leave the load generator in one write and come back as one chunk "
           "(16 × 64 B = 1 KiB in (b)), so it is the floor of system calls and copies, not a WebSocket server.", "",
           measured_line(meta), ""]
    if meta["missing"]:
        out += ["Not in this run:", ""] + [f"- {n}: {why}" for n, why in meta["missing"].items()] + [""]
    if plot_rel:
        out += [f"![throughput per scenario, the RTT distribution of (a), idle memory]({plot_rel})", "",
                f"Plot: [{os.path.basename(plot_rel)}]({plot_rel}) — throughput per scenario with the ratio to raw TCP, the "
                "RTT distribution of (a) (the fraction of messages slower than x, from the run with the median "
                "p99) and the memory per idle connection.", ""]
    elif plot_rel is not None:
        out += ["(No plot in this run: python3-matplotlib is not installed; `apt-get install python3-matplotlib`.)", ""]
    out += render_targets(res) + [""]
    for key, title, conns, inflight, size, tls in SCENARIOS:
        rows = {n.split("|", 1)[1]: r for n, r in res["echo"].items() if n.split("|", 1)[0] == key}
        if not rows:
            continue
        raw_key = key.split("-")[0] + "|" + RAW
        raw = res["echo"].get(raw_key, {})
        raw_ok = "error" not in raw and raw
        bp_name, bp = best_peer(rows, "msgs_per_s")
        unit = "MB/s" if size >= 16384 else "messages/s"
        out += [f"### {key}: {title}", "",
                "| server | messages/s | MB/s | × raw | × best peer | RTT p50 µs | p99 µs | p99.9 µs | "
                "server CPU µs/msg | CPU × raw |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        def echo_row(n, r):
            partial = f" ({r['runs']} of {r['of']} runs)" if r["runs"] < r["of"] else ""
            return (f"| {n}{partial} | {r['msgs_per_s']:,.0f} | {r['MBps']:,.1f} | "
                    f"{fmt_ratio(ratio(r['msgs_per_s'], raw['msgs_per_s']) if raw_ok else None)} | "
                    f"{fmt_ratio(ratio(r['msgs_per_s'], bp))} | {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | "
                    f"{r['p999_us']:,.0f} | {r['cpu_us_per_msg']:.2f} | "
                    f"{fmt_ratio(ratio(r['cpu_us_per_msg'], raw['cpu_us_per_msg']) if raw_ok else None)} |")

        out += table_rows(rows, 9, echo_row)
        if bp_name:
            out.append(f"\nBest peer: {bp_name}. The {unit} figure is the one to compare here.")
        out.append("")
    hs = res["handshakes"]
    if hs:
        raw = hs.get(RAW, {})
        raw_ok = raw and "error" not in raw
        bp_name, bp = best_peer(hs, "per_s")
        out += [f"### e: handshakes per second (connect, upgrade, close; {HANDSHAKE_CONNS} in progress at a time)", "",
                "The raw row is `echo_raw --handshake`: the same bytes each way (the upgrade request, a 101 head of "
                "the usual size, a close frame each way, the server closes TCP first) with no parsing, hashing or "
                "unmasking.", "",
                "| server | handshakes/s | × raw | × best peer | latency p50 µs | p99 µs | server CPU µs/handshake |",
                "|---|---|---|---|---|---|---|"]
        out += table_rows(hs, 6, lambda n, r: (
            f"| {n} | {r['per_s']:,.0f} | {fmt_ratio(ratio(r['per_s'], raw['per_s']) if raw_ok else None)} | "
            f"{fmt_ratio(ratio(r['per_s'], bp))} | {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | "
            f"{r['cpu_us_per_hs']:.1f} |"))
        if bp_name:
            out.append(f"\nBest peer: {bp_name}.")
        out.append("")
    idle = res["idle"]
    if idle:
        n_idle = meta["idle"]
        out += [f"### f: server memory per idle connection ({n_idle:,} connections, VmRSS delta / N)", "",
                "The baseline is taken after one connection was opened and closed (the first handshake's one-time "
                "page faults, such as a TLS library's code, are not memory per connection); the N connections "
                "are `loadgen --idle N` (five request headers). The wscore echo server frees the handshake head "
                "on open (`ws_release_handshake`), as an application that has read what it needs does; "
                "a connection that keeps it holds about 200 B more.", "",
                "| server | ws:// bytes per connection | wss:// bytes per connection |", "|---|---|---|"]

        def cell(v):
            if v is None:
                return f"could not hold {n_idle:,} connections"
            if isinstance(v, dict):
                return cell_error(v)
            return f"{v:,.0f}"

        for n in ORDER:
            w, s = idle.get(f"ws|{n}", "—"), idle.get(f"wss|{n}", "—")
            if w == "—" and s == "—":
                continue
            out.append(f"| {n} | {cell(w) if w != '—' else '—'} | {cell(s) if s != '—' else '— (no TLS here)'} |")
        if any(v is None for k, v in idle.items() if k.endswith(BLOCKING)):
            out.append(f"\nThe blocking API uses two descriptors per connection (the socket and an eventfd), so "
                       f"{n_idle:,} connections need more than the hard limit of 20,000 open files per process.")
        out.append("")
    return "\n".join(out)


TARGETS = [
    # label, scenario, field, kind (ratio to raw | absolute), limit, higher is better
    ("(a) RTT p50 ≤ 1.00× raw", "a", "p50_us", "ratio", 1.00, False),
    ("(a) RTT p99 ≤ 1.05× raw", "a", "p99_us", "ratio", 1.05, False),
    ("(b) messages/s ≥ 0.95× raw", "b", "msgs_per_s", "ratio", 0.95, True),
    ("(b) server CPU/msg ≤ 1.1× raw", "b", "cpu_us_per_msg", "ratio", 1.10, False),
    ("(c) 16 KiB MB/s ≥ 0.80× raw", "c", "MBps", "ratio", 0.80, True),
    ("(d) 1 MiB MB/s ≥ 0.95× raw", "d", "MBps", "ratio", 0.95, True),
    ("(e) handshakes/s ≥ 0.85× raw", "e", "per_s", "ratio", 0.85, True),
    ("(f) ≤ 256 B per idle ws:// connection", "f-ws", None, "abs", 256, False),
    ("(f) ≤ 4 KiB per idle wss:// connection", "f-wss", None, "abs", 4096, False),
]


def target_value(res, scen, field, server):
    if scen == "e":
        r, raw = res["handshakes"].get(server), res["handshakes"].get(RAW)
    elif scen.startswith("f-"):
        v = res["idle"].get(f"{scen[2:]}|{server}", "missing")
        return v, None
    else:
        r, raw = res["echo"].get(f"{scen}|{server}"), res["echo"].get(f"{scen}|{RAW}")
    if not r or "error" in r or not raw or "error" in raw:
        return "missing", None
    return r[field], raw[field]


def judge(v, limit, higher):
    ok = v >= limit if higher else v <= limit
    if ok:
        return "✓"
    miss = (limit - v) / limit if higher else (v - limit) / limit
    return f"✗ missed by {miss * 100:.1f} %" if miss < 0.1 else f"✗ missed by {miss * 100:.0f} %"


def render_targets(res):
    out = ["### Targets (wscore against the raw TCP echo of the same run)", "",
           f"| target | {CALLBACK} | {STREAM} | {BLOCKING} |", "|---|---|---|---|"]
    for label, scen, field, kind, limit, higher in TARGETS:
        cells = []
        for server in (CALLBACK, STREAM, BLOCKING):
            v, raw = target_value(res, scen, field, server)
            if v == "missing" or (kind == "ratio" and not raw):
                cells.append("not measured")
            elif v is None:
                cells.append("could not hold the connections")
            elif isinstance(v, dict):
                cells.append("failed")
            elif kind == "ratio":
                x = v / raw
                cells.append(f"{x:.2f}× {judge(x, limit, higher)}")
            else:
                cells.append(f"{v:,.0f} B {judge(v, limit, higher)}")
        out.append(f"| {label} | {' | '.join(cells)} |")
    # The ratio rows the issues ask for.
    out += ["", "| comparison | ratio |", "|---|---|"]

    def echo(scen, server, field):
        r = res["echo"].get(f"{scen}|{server}")
        return None if not r or "error" in r else r[field]

    rows = [("blocking C API ÷ callback mode, (b) messages/s", echo("b", BLOCKING, "msgs_per_s"), echo("b", CALLBACK, "msgs_per_s")),
            ("blocking C API ÷ callback mode, (b) server CPU/msg", echo("b", BLOCKING, "cpu_us_per_msg"), echo("b", CALLBACK, "cpu_us_per_msg")),
            ("blocking C API ÷ callback mode, (b) RTT p99", echo("b", BLOCKING, "p99_us"), echo("b", CALLBACK, "p99_us")),
            ("wscore (callback) ÷ Node ws over TLS, 16 KiB MB/s", echo("c-wss", CALLBACK, "MBps"), echo("c-wss", NODE, "MBps")),
            ("wscore (callback) ÷ Node ws over TLS, 1 MiB MB/s", echo("d-wss", CALLBACK, "MBps"), echo("d-wss", NODE, "MBps")),
            ("wscore (callback) wss ÷ ws, 16 KiB MB/s", echo("c-wss", CALLBACK, "MBps"), echo("c", CALLBACK, "MBps")),
            ("wscore (callback) wss ÷ ws, 1 MiB MB/s", echo("d-wss", CALLBACK, "MBps"), echo("d", CALLBACK, "MBps"))]
    for label, x, y in rows:
        out.append(f"| {label} | {fmt_ratio(ratio(x, y)) if x is not None and y else 'not measured'} |")
    return out


def plot(res, meta, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("run_echo: no plot: python3-matplotlib is not installed (apt-get install python3-matplotlib)")
        return False
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "wscore", "font.size": 8})
    panels = [(k, t, "MB/s" if size >= 16384 else "messages/s") for k, t, _, _, size, _ in SCENARIOS
              if any(n.startswith(k + "|") for n in res["echo"])]
    extra = (1 if res["handshakes"] else 0) + (1 if res["idle"] else 0) + (1 if res["cdf"] else 0)
    total = len(panels) + extra
    cols = 3
    rows = (total + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.3 * rows), squeeze=False)
    axes = [ax for row in axes for ax in row]

    def bars(ax, title, names, values, unit, raw=None):
        ax.barh(range(len(names)), values, color=[COLORS.get(n, "#333") for n in names])
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(values + [1]) * 1.45)  # room for the labels
        for i, v in enumerate(values):
            label = f" {v:,.0f}" if v >= 10 else f" {v:.1f}"
            if raw:
                label += f"  {v / raw:.2f}×"
            ax.text(v, i, label, va="center", fontsize=7)

    short = {k: f"{c} × {f}, {size_label(n)}" + (", wss://" if t else "") for k, _, c, f, n, t in SCENARIOS}
    i = 0
    for key, title, unit in panels:
        field = "MBps" if unit == "MB/s" else "msgs_per_s"
        names = [n for n in ORDER if "error" not in res["echo"].get(f"{key}|{n}", {"error": 1})]
        raw = res["echo"].get(f"{key.split('-')[0]}|{RAW}", {}).get(field)
        bars(axes[i], f"{key}: {short[key]}", names, [res["echo"][f"{key}|{n}"][field] for n in names],
             unit + (" (× raw TCP)" if raw else ""), raw)
        i += 1
    if res["handshakes"]:
        names = [n for n in ORDER if "error" not in res["handshakes"].get(n, {"error": 1})]
        raw = res["handshakes"].get(RAW, {}).get("per_s")
        bars(axes[i], f"e: handshakes per second ({HANDSHAKE_CONNS} at a time)", names,
             [res["handshakes"][n]["per_s"] for n in names], "handshakes/s" + (" (× raw TCP)" if raw else ""), raw)
        i += 1
    if res["cdf"]:
        ax = axes[i]
        for n in ORDER:
            if n in res["cdf"]:
                pts = [(us, 1 - q) for q, us in res["cdf"][n] if q < 1]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=n, color=COLORS.get(n, "#333"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("RTT µs")
        ax.set_ylabel("fraction of messages slower")
        ax.set_title("a: RTT distribution (1 connection, 64 B)", fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(True, which="both", alpha=0.3)
        i += 1
    if res["idle"]:
        ax = axes[i]
        labels, values, colors = [], [], []
        for n in ORDER:
            for proto in ("ws", "wss"):
                v = res["idle"].get(f"{proto}|{n}")
                if isinstance(v, (int, float)) and v > 0:
                    labels.append(f"{n} {proto}")
                    values.append(v)
                    colors.append(COLORS.get(n, "#333"))
        ax.barh(range(len(labels)), values, color=colors)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(right=max(values + [1]) * 8)
        ax.set_xlabel("bytes per idle connection")
        ax.set_title(f"f: memory per idle connection ({meta['idle']:,})", fontsize=9)
        for j, v in enumerate(values):
            ax.text(v, j, f" {v:,.0f}", va="center", fontsize=7)
        i += 1
    for ax in axes[i:]:
        ax.axis("off")
    fig.suptitle(f"wscore echo benchmark, {meta['date']}, {meta['machine']['cores']} cores "
                 f"({meta['machine']['cpu']}), load ≤ {meta['load']['max']:.1f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    return True


def size_label(n):
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1024 else f"{n} B"


def write_docs(report):
    path = os.path.join(ROOT, "docs", "performance.md")
    doc = open(path, encoding="utf-8").read()
    start = doc.index("## Echo benchmark")
    nxt = doc.find("\n## ", start + 5)  # the next section (the Python binding's) stays as it is
    doc = doc[:start] + report.rstrip("\n") + "\n" + (doc[nxt:] if nxt >= 0 else "")
    open(path, "w", encoding="utf-8").write(doc)
    print(f"run_echo: wrote the Echo benchmark section of {path}")


# ---------------------------------------------------------------- smoke


def smoke(build):
    """A ~3 s sanity check of the harness: ws, raw, handshakes (ws and raw) and --tls."""
    pki = tempfile.mkdtemp(prefix="wscore-bench-pki-")
    try:
        certs = subprocess.Popen(["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), pki])
        specs, _ = discover(build, pki, do_build=False)
        r = measure(build, specs[CALLBACK].plain, "ws", 4, 4, 64, 0.5)
        assert r["errors"] == 0 and r["messages"] > 100 and r["p999_us"] > 0, r
        r = measure(build, specs[RAW].plain, "raw", 2, 2, 1024, 0.4)
        assert r["errors"] == 0 and r["messages"] > 100, r
        h = handshakes(build, specs[CALLBACK].plain, 0.4, conns=2)
        assert h["errors"] == 0 and h["handshakes"] > 10, h
        h = handshakes(build, specs[RAW].handshake, 0.2, conns=2)
        assert h["errors"] == 0 and h["handshakes"] > 10, h
        assert certs.wait(60) == 0, "make_certs.sh failed"
        r = measure(build, specs[CALLBACK].tls, "ws", 2, 2, 1024, 0.5, tls=True)
        assert r["errors"] == 0 and r["messages"] > 50 and r["tls"] == 1, r
    finally:
        shutil.rmtree(pki, ignore_errors=True)
    print("bench smoke: ok (ws, raw, handshakes, raw handshakes, wss)")
    print("1 passed, 0 failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for (f) (default 10,000)")
    ap.add_argument("--only", help="scenarios, comma-separated: a,b,c,d,c-wss,d-wss,e,f (default all)")
    ap.add_argument("--servers", help="only servers whose names contain one of these, comma-separated "
                                      "(the raw echo always runs)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--write-docs", action="store_true",
                    help="rewrite the Echo benchmark section of docs/performance.md and docs/perf-echo.svg")
    ap.add_argument("--json", help="where to save the results (default BUILD/echo-bench.json)")
    ap.add_argument("--render", metavar="JSON", help="render a saved run instead of measuring")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    if a.smoke:
        return smoke(a.build)
    if a.seconds > 60 or a.runs > 20 or a.idle > 15000:
        sys.exit("run_echo: at most 20 runs of 60 s and 15,000 idle connections")
    if a.render:
        saved = json.load(open(a.render))
        res, meta = saved["results"], saved["meta"]
    else:
        t0 = time.time()
        load_start = float(open("/proc/loadavg").read().split()[0])
        lib_mtime0 = lib_mtime(a.build)
        pki = tempfile.mkdtemp(prefix="wscore-bench-pki-")
        try:
            subprocess.run(["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), pki], check=True, timeout=60)
            specs, missing = discover(a.build, pki, do_build=True)
            if a.servers:
                want = [w.strip().lower() for w in a.servers.split(",")]
                specs = {n: s for n, s in specs.items() if n == RAW or any(w in n.lower() for w in want)}
                missing = {n: w for n, w in missing.items() if any(x in n.lower() for x in want)}
            for n, why in missing.items():
                print(f"run_echo: MISSING {n}: {why}", flush=True)
            print(f"run_echo: servers: {', '.join(specs)}", flush=True)
            res = run_all(a.build, specs, a, pki)
        finally:
            shutil.rmtree(pki, ignore_errors=True)
        load_end = float(open("/proc/loadavg").read().split()[0])
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                "runs": a.runs, "seconds": a.seconds if a.seconds != int(a.seconds) else int(a.seconds),
                "idle": a.idle, "missing": missing, "duration_min": (time.time() - t0) / 60,
                "load": {"start": load_start, "end": load_end, "max": max(LOAD_SAMPLES + [load_start, load_end]),
                         "others_mean": statistics.mean(OTHERS) if OTHERS else None,
                         "others_max": max(OTHERS) if OTHERS else None},
                "library": library_stamp(a.build, lib_mtime0)}
        path = a.json or os.path.join(a.build, "echo-bench.json")
        json.dump({"meta": meta, "results": res}, open(path, "w"), indent=1)
        print(f"run_echo: results saved in {path} (re-render: --render {path})")
    plot_rel = None  # None: no plot asked for; "": none possible
    if a.write_docs:
        plot_rel = "perf-echo.svg" if plot(res, meta, os.path.join(ROOT, "docs", "perf-echo.svg")) else ""
    report = render(res, meta, plot_rel if a.write_docs else None)
    print(report)
    if a.write_docs:
        write_docs(report)


if __name__ == "__main__":
    sys.exit(main())
