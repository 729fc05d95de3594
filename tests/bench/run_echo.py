#!/usr/bin/env python3
"""The echo benchmark: runs tests/bench/loadgen against each echo server, the
server pinned to CPU 1 and the load generator to CPU 0, and reports medians
over several runs with ratios to the raw TCP echo of the same run, plus the
server's CPU time per message (from /proc/PID/stat over the window) and memory
per idle connection.

    run_echo.py BUILDDIR [--runs 3] [--seconds 3] [--write-docs]   # the full benchmark
    run_echo.py BUILDDIR --smoke                                    # a 1 s sanity check
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")

SCENARIOS = [
    # name, conns, inflight, size
    ("a: 1 conn, 1 in flight, 64 B", 1, 1, 64),
    ("b: 64 conns x 16 in flight, 64 B", 64, 16, 64),
    ("c: 16 conns x 4, 16 KiB", 16, 4, 16384),
    ("d: 4 conns x 1, 1 MiB", 4, 1, 1 << 20),
]


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def servers(build):
    cli = os.path.join(build, "src", "cli", "wscore")
    out = {
        "raw TCP echo": [os.path.join(build, "tests", "bench", "echo_raw"), "0"],
        "wscore (callback)": [cli, "echo", "--port", "0", "--mode", "callback"],
        "wscore (blocking API, poll)": [cli, "echo", "--port", "0", "--mode", "blocking"],
    }
    node_modules = os.path.join(ROOT, "tests", "node_modules")
    if shutil.which("node") and os.path.isdir(os.path.join(node_modules, "ws")):
        out["Node ws"] = ["node", os.path.join(ROOT, "tests", "bench", "echo_ws.js")]
    return out


class Server:
    def __init__(self, argv):
        env = dict(os.environ, NODE_PATH=os.path.join(ROOT, "tests", "node_modules"))
        self.p = subprocess.Popen(pin(1) + argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=env, preexec_fn=raise_nofile)
        line = self.p.stdout.readline()
        m = re.search(r"listening on (?:[\d.]+:)?(\d+)", line)
        if not m:
            self.p.kill()
            raise RuntimeError(f"{argv[0]} did not start: {line!r}")
        self.port = int(m.group(1))

    def cpu_seconds(self):
        f = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK  # utime + stime, all threads

    def rss_kib(self):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def loadgen(build, args, timeout=120):
    exe = os.path.join(build, "tests", "bench", "loadgen")
    r = subprocess.run(pin(0) + [exe] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, preexec_fn=raise_nofile)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen {args} failed: {r.stdout} {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(build, argv, mode, conns, inflight, size, seconds):
    s = Server(argv)
    try:
        c0 = s.cpu_seconds()
        res = loadgen(build, ["--port", s.port, "--mode", mode, "--conns", conns, "--inflight", inflight,
                              "--size", size, "--seconds", seconds])
        res["cpu_us_per_msg"] = (s.cpu_seconds() - c0) / max(res["messages"], 1) * 1e6
        return res
    finally:
        s.stop()


def handshakes(build, argv, seconds):
    s = Server(argv)
    try:
        return loadgen(build, ["--port", s.port, "--handshakes", "--seconds", seconds])
    finally:
        s.stop()


def idle_memory(build, argv, mode, n):
    s = Server(argv)
    try:
        time.sleep(0.3)
        before = s.rss_kib()
        exe = os.path.join(build, "tests", "bench", "loadgen")
        p = subprocess.Popen(pin(0) + [exe, "--port", str(s.port), "--mode", mode, "--idle", str(n), "--hold", "4"],
                             stdout=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
        line = p.stdout.readline()
        if not line.startswith("READY"):
            p.kill()
            p.wait()
            return None  # the server could not hold that many (reported as such)
        time.sleep(1.0)
        after = s.rss_kib()
        p.wait(30)
        return (after - before) * 1024 / n
    finally:
        s.stop()


def smoke(build):
    srv = servers(build)
    r = measure(build, srv["wscore (callback)"], "ws", 4, 4, 64, 1)
    assert r["errors"] == 0 and r["messages"] > 100, r
    r = measure(build, srv["raw TCP echo"], "raw", 2, 2, 1024, 1)
    assert r["errors"] == 0 and r["messages"] > 100, r
    h = handshakes(build, srv["wscore (callback)"], 1)
    assert h["errors"] == 0 and h["handshakes"] > 10, h
    print("bench smoke: ok")
    print("1 passed, 0 failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        return smoke(a.build)
    srv = servers(a.build)
    rows = {}
    for name, conns, inflight, size in SCENARIOS:
        for sname, argv in srv.items():
            mode = "raw" if sname.startswith("raw") else "ws"
            runs = [measure(a.build, argv, mode, conns, inflight, size, a.seconds) for _ in range(a.runs)]
            rows[(name, sname)] = {
                "msgs_per_s": statistics.median(r["msgs_per_s"] for r in runs),
                "MBps": statistics.median(r["MBps"] for r in runs),
                "p50_us": statistics.median(r["p50_us"] for r in runs),
                "p99_us": statistics.median(r["p99_us"] for r in runs),
                "cpu_us_per_msg": statistics.median(r["cpu_us_per_msg"] for r in runs),
            }
            print(name, sname, rows[(name, sname)], flush=True)
    hs = {}
    for sname, argv in srv.items():
        if sname.startswith("raw"):
            continue
        hs[sname] = statistics.median(handshakes(a.build, argv, a.seconds)["per_s"] for _ in range(a.runs))
        print("handshakes", sname, hs[sname], flush=True)
    mem = {}
    for sname, argv in srv.items():
        mode = "raw" if sname.startswith("raw") else "ws"
        mem[sname] = idle_memory(a.build, argv, mode, a.idle)
        print("idle memory", sname, mem[sname], flush=True)
    report = render(rows, hs, mem, a)
    print(report)
    if a.write_docs:
        path = os.path.join(ROOT, "docs", "performance.md")
        doc = open(path, encoding="utf-8").read()
        start = doc.index("## Echo benchmark")
        nxt = doc.find("\n## ", start + 5)
        doc = doc[:start] + report + ("\n" + doc[nxt + 1:] if nxt >= 0 else "")
        open(path, "w", encoding="utf-8").write(doc)


def render(rows, hs, mem, a):
    load = open("/proc/loadavg").read().split()[:3]
    out = ["## Echo benchmark", "",
           f"Command: `tests/bench/run_echo.py build-rel --runs {a.runs} --seconds {a.seconds} --write-docs` "
           f"(a release build: `meson setup build-rel --buildtype=release`). Server pinned to CPU 1, "
           f"`tests/bench/loadgen` to CPU 0; medians of {a.runs} runs of {a.seconds} s; every echoed byte "
           f"verified. Ratios are to the raw TCP echo of the same run.",
           "",
           f"Measured {datetime.date.today()} on {os.cpu_count()} cores, kernel {platform.release()}, "
           f"load average {' '.join(load)} at the end.", ""]
    for name, _, _, size in SCENARIOS:
        raw = rows[(name, "raw TCP echo")]
        out += [f"### {name}", "",
                "| server | messages/s | MB/s | × raw | RTT p50 µs | RTT p99 µs | server CPU µs/msg |",
                "|---|---|---|---|---|---|---|"]
        for (n, sname), r in rows.items():
            if n != name:
                continue
            out.append(f"| {sname} | {r['msgs_per_s']:,.0f} | {r['MBps']:.1f} | "
                       f"{r['msgs_per_s'] / raw['msgs_per_s']:.2f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | "
                       f"{r['cpu_us_per_msg']:.2f} |")
        out.append("")
    out += ["### e: handshakes per second (connect, upgrade, close; one at a time)", "",
            "| server | handshakes/s |", "|---|---|"]
    out += [f"| {s} | {v:,.0f} |" for s, v in hs.items()]
    out += ["", f"### f: server memory per idle connection ({a.idle:,} connections, VmRSS delta / N)", "",
            "| server | bytes per connection |", "|---|---|"]
    out += [f"| {s} | {v:,.0f} |" if v is not None else f"| {s} | could not hold {a.idle:,} connections |"
            for s, v in mem.items()]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
