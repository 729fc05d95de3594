#!/usr/bin/env python3
"""Runs the conformance suite against one or more testees and, with
--markdown, regenerates the results in docs/conformance.md.

    run.py BUILDDIR --target NAME[,NAME...] | --all  [--no-slow | --only-slow] [--markdown]

Targets (server role: our fuzzing client against an echo server; client role:
our fuzzing server against a client speaking Autobahn's client protocol):
  echo-callback   wscore echo --mode callback          (server, strict)
  echo-blocking   wscore echo --mode blocking          (server, strict)
  echo-stream     wscore echo --mode stream            (server, strict; parts forwarded as fragments)
  client-cli      wscore autobahn-client URL --agent A (client, strict)
  client-python   tests/conformance/wscore_client.py   (client, strict; the Python binding)
  echo-tls, client-cli-tls, client-python-tls   the same over wss:// (a throwaway PKI made by tests/tls/make_certs.sh)
  websockets-server, websockets-client                 Python websockets (checks the suite)
  ws-server, ws-client                                 Node ws (checks the suite)
wscore targets are judged in strict mode (a failed connection must carry a
close frame, not a bare TCP drop); the peers by Autobahn's rules alone.
Reports: BUILDDIR/conformance/TARGET.json and .md. Exit status 1 if any case
of any target is FAILED or NON-STRICT (or a testee could not run).
"""
import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable
sys.path.insert(0, HERE)
import cases  # noqa: E402
import fuzzer  # noqa: E402
NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")


def targets(build):
    cli = os.path.join(build, "src", "cli", "wscore")
    peers = os.path.join(HERE, "peers")
    pki = os.path.join(build, "conformance", "pki")
    return {
        "echo-tls": ("server", "wscore echo over wss:// (callback mode)",
                     [cli, "echo", "--port", "0", "--cert", f"{pki}/server.pem", "--key", f"{pki}/server.key"], True),
        "client-cli-tls": ("client", "wscore autobahn-client over wss://",
                           [cli, "autobahn-client", "{url}", "--agent", "{agent}", "--cacert", f"{pki}/ca.pem"], True),
        "client-python-tls": ("client", "wscore Python binding over wss://",
                              [PY, os.path.join(HERE, "wscore_client.py"), "{url}", "{agent}", f"{pki}/ca.pem"], True),
        "echo-callback": ("server", "wscore echo --mode callback", [cli, "echo", "--port", "0", "--mode", "callback"], True),
        "echo-blocking": ("server", "wscore echo --mode blocking", [cli, "echo", "--port", "0", "--mode", "blocking"], True),
        "echo-stream": ("server", "wscore echo --mode stream", [cli, "echo", "--port", "0", "--mode", "stream"], True),
        "client-cli": ("client", "wscore autobahn-client", [cli, "autobahn-client", "{url}", "--agent", "{agent}"], True),
        "client-python": ("client", "wscore Python binding (blocking API)",
                          [PY, os.path.join(HERE, "wscore_client.py"), "{url}", "{agent}"], True),
        "websockets-server": ("server", "Python websockets (echo server)", [PY, os.path.join(peers, "websockets_server.py")], False),
        "websockets-client": ("client", "Python websockets (client)",
                              [PY, os.path.join(peers, "websockets_client.py"), "{url}", "{agent}"], False),
        "ws-server": ("server", "Node ws (echo server)", ["node", os.path.join(peers, "ws_server.js")], False),
        "ws-client": ("client", "Node ws (client)", ["node", os.path.join(peers, "ws_client.js"), "{url}", "{agent}"], False),
    }


def env_for(build):
    env = dict(os.environ)
    lib = os.path.join(build, "src", "api", "libwscore.so")
    if os.path.exists(lib) and "WSCORE_LIBRARY" not in env:
        env["WSCORE_LIBRARY"] = lib
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def report_suffix(sel):
    return "-fast" if "--no-slow" in sel else "-slow" if "--only-slow" in sel else ""


def run_target(name, spec, build, outdir, sel):
    role, agent, cmd, strict = spec
    base = os.path.join(outdir, name + report_suffix(sel))
    js, md = base + ".json", base + ".md"
    for p in (js, md):
        if os.path.exists(p):
            os.remove(p)
    # The target's name is the agent: it travels in URLs (runCase?agent=...).
    common = sel + ["--agent", name, "--json", js, "--markdown", md] + (["--strict"] if strict else [])
    env = env_for(build)
    print(f"== {name}: {agent} ({role} role)", flush=True)
    if name.startswith("client-python") and env.get("CONFORMANCE_PYTHON_PRELOAD"):
        # An ASan build's library inside an uninstrumented interpreter: the
        # runtime must load first; the interpreter's exit-time allocations are
        # not ours to report.
        env["LD_PRELOAD"] = env["CONFORMANCE_PYTHON_PRELOAD"]
        env["ASAN_OPTIONS"] = ":".join(x for x in [env.get("ASAN_OPTIONS", ""), "detect_leaks=0"] if x)
    if name.endswith("-tls"):
        # A throwaway PKI made at run time (tests/tls/make_certs.sh): no key is committed.
        pki = os.path.join(outdir, "pki")
        # Several TLS targets may run at once (meson test in parallel): one makes
        # the PKI, under a lock, the others wait for it.
        with open(os.path.join(outdir, "pki.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(pki, "done")):
                subprocess.run(["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), pki], check=True,
                               stdout=subprocess.DEVNULL)
                open(os.path.join(pki, "done"), "w").close()
        common += (["--tls-cert", f"{pki}/server.pem", "--tls-key", f"{pki}/server.key"] if role == "client"
                   else ["--tls-ca", f"{pki}/ca.pem"])
    if role == "client":
        return subprocess.call([PY, os.path.join(HERE, "fuzzingserver.py")] + common + ["--"] + cmd, env=env)
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = srv.stdout.readline().strip()
        m = re.search(r"listening on \[?([0-9a-fA-F.:]+?)\]?:(\d+)$", line)
        if not m:
            print(f"{name}: the server did not print 'listening on HOST:PORT' (got {line!r})", flush=True)
            return 1
        return subprocess.call([PY, os.path.join(HERE, "fuzzingclient.py"), m.group(1), m.group(2)] + common, env=env)
    finally:
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--target", default="")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--cases", default="*")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--no-slow", action="store_true", help="leave out the long 9.x cases")
    g.add_argument("--only-slow", action="store_true", help="only the long 9.x cases")
    ap.add_argument("--markdown", action="store_true", help="regenerate the results in docs/conformance.md")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: regenerate docs/conformance.md from the reports of an earlier run")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    all_t = targets(build)
    names = list(all_t) if a.all else [n for n in a.target.split(",") if n]
    unknown = [n for n in names if n not in all_t]
    if not names or unknown:
        print(f"unknown or no target {unknown}; targets: {', '.join(all_t)}", file=sys.stderr)
        return 2
    outdir = os.path.join(build, "conformance")
    os.makedirs(outdir, exist_ok=True)
    sel = ["--cases", a.cases] + (["--no-slow"] if a.no_slow else []) + (["--only-slow"] if a.only_slow else [])
    status = 0
    t0 = time.monotonic()
    for n in ([] if a.report_only else names):
        rc = run_target(n, all_t[n], build, outdir, sel)
        print(f"== {n}: {'ok' if rc == 0 else 'FAILED (exit status %d)' % rc}", flush=True)
        status |= 1 if rc else 0
    print(f"== {len(names)} targets in {time.monotonic() - t0:.0f} s", flush=True)
    if a.markdown or a.report_only:
        regenerate_doc(all_t, outdir, names)
    return status


def load_results(outdir, name):
    """A full run's results, else a fast run's merged with a slow run's (the
    same cases as a full run), else a fast run's alone (noted)."""
    def load(suffix):
        path = os.path.join(outdir, name + suffix + ".json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)["results"]
    full, fast, slow = load(""), load("-fast"), load("-slow")
    if full is not None:
        return full, ""
    if fast is not None and slow is not None:
        order = {c.id: i for i, c in enumerate(cases.CASES)}
        return sorted(fast + slow, key=lambda r: order.get(r["id"], 1 << 30)), ""
    if fast is not None:
        return fast, " (without the long 9.x cases)"
    return None, ""


def regenerate_doc(all_t, outdir, names):
    rows = ["| testee | role | cases | OK | NON-STRICT | FAILED | INFORMATIONAL |", "|---|---|---|---|---|---|---|"]
    details = []
    for n in names:
        role, agent, _, strict = all_t[n]
        results, note = load_results(outdir, n)
        if results is None:
            rows.append(f"| {agent} | {role} | not run | | | | |")
            continue
        tot = {}
        for r in results:
            tot[r["verdict"]] = tot.get(r["verdict"], 0) + 1
        rows.append(f"| {agent}{' (strict)' if strict else ''} | {role} | {len(results)}{note} | {tot.get('OK', 0)} | "
                    f"{tot.get('NON-STRICT', 0)} | {tot.get('FAILED', 0)} | {tot.get('INFORMATIONAL', 0)} |")
        details.append(fuzzer.markdown(f"{n}: {agent}", role, results))
    stamp = time.strftime("%Y-%m-%d")
    block = (f"Last regenerated {stamp}. Sections 12 and 13 (permessage-deflate) are not run: wscore does not "
             f"implement compression yet; they are not counted as passed.\n\n" + "\n".join(rows) + "\n\n"
             + "\n".join(details))
    doc_path = os.path.join(ROOT, "docs", "conformance.md")
    with open(doc_path, encoding="utf-8") as fh:
        doc = fh.read()
    begin, end = "<!-- results: generated by tests/conformance/run.py -->", "<!-- end of results -->"
    if begin not in doc:
        doc += f"\n## Results\n\n{begin}\n{end}\n"
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{block}{end}", doc, flags=re.S)
    with open(doc_path, "w", encoding="utf-8") as fh:
        fh.write(doc)
    print(f"regenerated the results in {doc_path}")


if __name__ == "__main__":
    sys.exit(main())
