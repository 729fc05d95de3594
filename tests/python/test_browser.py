"""Headless Chromium (Debian's `chromium`, driven by playwright-core from
tests/node_modules) as the client of our server: a page served over HTTP opens a
WebSocket, echoes text and binary through our server and closes; over ws:// and
over wss:// with a test CA that the browser trusts (NSS database, certutil)."""
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading

import pytest

import wscore
from conftest import NODE_MODULES, needs, peer_env

CHROMIUM = "/usr/bin/chromium"
HAVE_BROWSER = (os.path.exists(CHROMIUM) and shutil.which("node") is not None
                and shutil.which("certutil") is not None
                and os.path.isdir(os.path.join(NODE_MODULES, "playwright-core")))
need_browser = needs(HAVE_BROWSER, "Chromium (/usr/bin/chromium), certutil (libnss3-tools), node or "
                     "tests/node_modules/playwright-core")

# Runs the page's echo in the browser and prints one JSON line with what it saw.
DRIVER = r"""
const { chromium } = require('playwright-core');
const [pageUrl, wsUrl, userDir] = process.argv.slice(1);
(async () => {
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    await context.grantPermissions(['local-network-access']).catch(() => {});
    const page = context.pages()[0] || await context.newPage();
    await page.goto(pageUrl);
    const result = await page.evaluate((url) => window.runEcho(url), wsUrl);
    console.log(JSON.stringify(result));
  } finally {
    await context.close();
  }
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
setTimeout(() => { console.log(JSON.stringify({ error: 'driver timeout' })); process.exit(2); }, 60000).unref();
"""

PAGE = r"""<!doctype html><meta charset="utf-8"><title>wscore echo</title>
<script>
window.runEcho = (url) => new Promise((resolve) => {
  const out = { opened: false, echoes: [], protocol: null, close: null, errors: 0 };
  const big = new Uint8Array(200000); for (let i = 0; i < big.length; i++) big[i] = i * 7 & 255;
  const sent = ['hello from chromium ✓', '', new Uint8Array([0, 1, 2, 255]), big, 'last'];
  const ws = new WebSocket(url, ['chat']);
  ws.binaryType = 'arraybuffer';
  let i = 0;
  const same = (a, b) => {
    if (typeof b === 'string') return a === b;
    const x = new Uint8Array(a); if (x.length !== b.length) return false;
    for (let k = 0; k < x.length; k++) if (x[k] !== b[k]) return false; return true;
  };
  ws.onopen = () => { out.opened = true; out.protocol = ws.protocol; ws.send(sent[0]); };
  ws.onmessage = (ev) => {
    out.echoes.push({ kind: typeof ev.data === 'string' ? 'text' : 'binary', ok: same(ev.data, sent[i]) });
    i++;
    if (i < sent.length) ws.send(sent[i]); else ws.close(4001, 'browser done');
  };
  ws.onerror = () => { out.errors++; };
  ws.onclose = (ev) => { out.close = [ev.code, ev.reason, ev.wasClean]; resolve(out); };
});
</script>"""


class PageServer:
    """The page over plain HTTP on 127.0.0.1:0, so the browser sends a real Origin."""

    def __enter__(self):
        body = PAGE.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_browser(page_url, ws_url, trust_ca=None):
    """Runs the page's echo in a fresh Chromium; trust_ca: a CA (PEM) that this
    browser alone trusts, through an NSS database in a throwaway HOME."""
    with tempfile.TemporaryDirectory(prefix="wscore-chromium-") as home:
        user_dir = os.path.join(home, "profile")
        env = peer_env(HOME=home)
        if trust_ca:
            nssdb = "sql:" + os.path.join(home, ".pki", "nssdb")
            os.makedirs(os.path.join(home, ".pki", "nssdb"))
            subprocess.run(["certutil", "-d", nssdb, "-N", "--empty-password"], check=True, timeout=30)
            subprocess.run(["certutil", "-d", nssdb, "-A", "-t", "C,,", "-n", "wscore test CA", "-i", trust_ca],
                           check=True, timeout=30)
        p = subprocess.run(["node", "-e", DRIVER, page_url, ws_url, user_dir], capture_output=True, text=True,
                           timeout=90, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"driver said nothing: rc={p.returncode} {p.stdout!r} {p.stderr[-2000:]!r}"
    return json.loads(lines[-1])


def chromium_echo(scheme, ssl=None, trust_ca=None):
    seen = {}
    handled = threading.Event()

    def echo(ws):
        seen["origin"] = ws.request.headers.get("origin")
        seen["user_agent"] = ws.request.headers.get("user-agent", "")
        try:
            for msg in ws:
                ws.send(msg)
        except wscore.ConnectionClosedError as e:  # 4001 is no normal close: iteration raises
            seen["close"] = (e.code, e.reason)
        finally:
            handled.set()

    with PageServer() as page:
        with wscore.serve(echo, "127.0.0.1", 0, subprotocols=["chat"], origins=[page.origin], ssl=ssl) as srv:
            srv.start()
            result = run_browser(page.origin + "/", f"{scheme}://localhost:{srv.port}/echo", trust_ca)
            # The browser saw the close; the handler's loop ends once it read it.
            assert handled.wait(10), "the handler did not see the close"
    assert "error" not in result, result
    assert result["opened"] and result["protocol"] == "chat", result
    assert result["echoes"] == [{"kind": k, "ok": True} for k in ("text", "text", "binary", "binary", "text")]
    assert result["close"] == [4001, "browser done", True]
    assert result["errors"] == 0
    assert seen["origin"] == page.origin
    assert "Chrome" in seen["user_agent"]
    assert seen["close"] == (4001, "browser done")


@need_browser
def test_chromium_echo_through_our_server():
    chromium_echo("ws")


@need_browser
def test_chromium_echo_over_wss_trusting_the_test_ca(pki):
    chromium_echo("wss", ssl={"certfile": pki("server.pem"), "keyfile": pki("server.key")}, trust_ca=pki("ca.pem"))


@need_browser
def test_chromium_refuses_our_wss_server_without_the_ca(pki):
    # The same server, a browser that does not trust the test CA: no connection.
    with PageServer() as page:
        with wscore.serve(lambda ws: None, "127.0.0.1", 0, origins=[page.origin],
                          ssl={"certfile": pki("server.pem"), "keyfile": pki("server.key")}) as srv:
            srv.start()
            result = run_browser(page.origin + "/", f"wss://localhost:{srv.port}/echo")
    assert "error" not in result, result
    assert not result["opened"]
    assert result["close"][0] == 1006 and result["errors"] == 1


@need_browser
def test_chromium_from_a_refused_origin_gets_no_connection():
    accepted = []
    with PageServer() as page:
        with wscore.serve(lambda ws: accepted.append(ws.request.path), "127.0.0.1", 0,
                          origins=["http://allowed.example"]) as srv:
            srv.start()
            result = run_browser(page.origin + "/", f"ws://127.0.0.1:{srv.port}/echo")
    assert "error" not in result, result
    assert not result["opened"]
    assert result["close"][0] == 1006 and result["errors"] == 1
    assert accepted == []
