#!/usr/bin/env python3
"""Runs the fuzzing client (server role) against `wscore echo` and, with
--markdown, regenerates the results table of docs/conformance.md.

    run_server_role.py BUILDDIR [--cases PATTERNS] [--exclude PATTERNS] [--markdown]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--cases", default="*")
    ap.add_argument("--exclude", default="")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--mode", default="callback", choices=["callback", "blocking"])
    a = ap.parse_args()
    cli = os.path.join(a.build, "src", "cli", "wscore")
    srv = subprocess.Popen([cli, "echo", "--port", "0", "--mode", a.mode, "--max-message", str(64 << 20)],
                           stdout=subprocess.PIPE, text=True)
    try:
        m = re.search(r":(\d+)$", srv.stdout.readline().strip())
        assert m, "wscore echo did not start"
        args = [sys.executable, os.path.join(HERE, "fuzzingclient.py"), "127.0.0.1", m.group(1),
                "--cases", a.cases, "--agent", f"wscore echo --mode {a.mode}"]
        if a.exclude:
            args += ["--exclude", a.exclude]
        md = os.path.join(a.build, f"conformance-server-{a.mode}.md")
        if a.markdown:
            args += ["--markdown", md]
        rc = subprocess.call(args)
    finally:
        srv.terminate()
        srv.wait(10)
    if a.markdown:
        doc_path = os.path.join(ROOT, "docs", "conformance.md")
        doc = open(doc_path, encoding="utf-8").read()
        begin, end = f"<!-- results: server {a.mode} -->", f"<!-- end: server {a.mode} -->"
        table = open(md, encoding="utf-8").read()
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{table}{end}", doc, flags=re.S)
        open(doc_path, "w", encoding="utf-8").write(doc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
