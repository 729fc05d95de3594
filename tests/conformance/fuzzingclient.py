#!/usr/bin/env python3
"""Fuzzing client: tests a WebSocket echo server with Autobahn's case
catalogue (our own implementation, Autobahn's case ids and verdicts).

    fuzzingclient.py HOST PORT [--cases 1.*,6.4] [--exclude 9.*] [--no-slow]
                     [--agent NAME] [--json FILE] [--markdown FILE] [--strict] [-v]

One TCP connection per case, upgraded by us, then the case's exact bytes.
Exit status 1 if any case is FAILED or NON-STRICT, 2 on bad usage.
"""
import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as catalogue  # noqa: E402
import fuzzer  # noqa: E402


async def run_case(host, port, template, strict, tls=None):
    loop = asyncio.get_running_loop()
    c = template.fresh()
    done = loop.create_future()
    f = fuzzer.Fuzzer("client", c, loop, lambda f: done.done() or done.set_result(None))
    try:
        await asyncio.wait_for(loop.create_connection(lambda: f, host, port, ssl=tls,
                                                      server_hostname=host if tls else None), 10)
    except (OSError, asyncio.TimeoutError) as e:
        return {"id": c.id, "description": c.description, "verdict": fuzzer.FAILED, "behavior": fuzzer.FAILED,
                "behaviorClose": fuzzer.FAILED, "result": f"could not connect: {e}", "resultClose": ""}

    def handshake_timeout():
        if f.state == fuzzer.CONNECTING:
            f._handshake_failed("no handshake response within 10 s")
    loop.call_later(10, handshake_timeout)
    try:
        # The case's own timers end it; the watchdog inside the fuzzer aborts a hung one.
        await asyncio.wait_for(done, c.watchdog + 15)
    except asyncio.TimeoutError:
        f.transport.abort()
        await asyncio.sleep(0)
    return fuzzer.judge(f, c, strict)


async def run_all(host, port, selected, strict, verbose, tls=None):
    results = []
    for c in selected:
        t = time.monotonic()
        r = await run_case(host, port, c, strict, tls)
        r.setdefault("duration_ms", int(1000 * (time.monotonic() - t)))
        results.append(r)
        fuzzer.print_result(r, verbose)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--cases", default="*", help="comma-separated case id patterns (default: all)")
    ap.add_argument("--exclude", default="")
    ap.add_argument("--only-slow", action="store_true", help="only the long 9.x cases")
    ap.add_argument("--no-slow", action="store_true", help="leave out the long 9.x cases")
    ap.add_argument("--agent", default="server under test")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--strict", action="store_true",
                    help="also require a close frame (not a bare TCP drop) when the peer fails the connection")
    ap.add_argument("--tls-ca", metavar="FILE", help="wss://: verify the server against this CA")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    tls = None
    if a.tls_ca:
        import ssl
        tls = ssl.create_default_context(cafile=a.tls_ca)
    selected = catalogue.select(a.cases, a.exclude, not a.no_slow, a.only_slow)
    if not selected:
        print(f"no case matches {a.cases!r}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    results = asyncio.run(run_all(a.host, a.port, selected, a.strict, a.verbose, tls))
    print_summary(results, a.agent, time.monotonic() - t0)
    if a.json:
        fuzzer.write_json(a.json, a.agent, "server", results)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as fh:
            fh.write(fuzzer.markdown(a.agent, "server", results))
    return fuzzer.exit_status(results)


def print_summary(results, agent, seconds):
    s = fuzzer.summarize(results)
    print(f"{agent}: {len(results)} cases in {seconds:.1f} s")
    for sec in sorted(s, key=int):
        print(f"  section {sec:>2}: " + ", ".join(f"{k} {v}" for k, v in sorted(s[sec].items())))
    total = {}
    for r in results:
        total[r["verdict"]] = total.get(r["verdict"], 0) + 1
    print("  total: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())) + "; sections 12, 13 not run")


if __name__ == "__main__":
    sys.exit(main())
