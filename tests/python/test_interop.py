"""Interop with peers nobody here wrote: the Python `websockets` library and
Node `ws`, each as server for our client and as client of our server, over
ws:// and (Node, with its own TLS stack) wss://."""
import asyncio
import os
import threading

import pytest
import websockets

import wscore
from conftest import NodeProcess, echo_handler, needs, node_available

PAYLOADS = ["hello", "naïve café ✓ 😀", "", "x" * 70000, b"", b"\x00\xff" * 40000]


# ---- Python websockets ----

class WebsocketsEchoServer:
    """websockets' asyncio echo server on a thread with its own loop."""

    def __enter__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def echo(ws, path=None):
            async for m in ws:
                await ws.send(m)

        async def main():
            self.server = await websockets.serve(echo, "127.0.0.1", 0, max_size=None,
                                                 subprotocols=["chat"])
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.wait_closed()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(10)


def test_our_client_against_websockets_server():
    with WebsocketsEchoServer() as srv:
        with wscore.connect(f"ws://127.0.0.1:{srv.port}/", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            for p in PAYLOADS:
                ws.send(p)
                assert ws.recv(timeout=10) == p
            ws.send(["frag", "mented"])
            assert ws.recv(timeout=10) == "fragmented"
            assert ws.close(1000, "bye")
            assert ws.close_code == 1000


def test_websockets_client_against_our_server(echo_server):
    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{echo_server.port}/x", max_size=None,
                                      subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            for p in PAYLOADS:
                await ws.send(p)
                assert await ws.recv() == p
            pong = await ws.ping(b"are you alive")
            await asyncio.wait_for(pong, 5)
            await ws.close(4004, "client done")
            assert ws.close_code == 4004

    asyncio.run(asyncio.wait_for(main(), 60))


# ---- Node ws ----

NODE_ECHO_SERVER = r"""
const { WebSocketServer } = require('ws');
const [cert, key] = process.argv.slice(1);
let wss, server;
if (cert) {  // wss:// on Node's own TLS (https.Server)
  const fs = require('fs');
  server = require('https').createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  wss = new WebSocketServer({ server, maxPayload: 64 << 20 });
  server.listen(0, '127.0.0.1', () => console.log('READY ' + server.address().port));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 << 20 });
  wss.on('listening', () => console.log('READY ' + wss.address().port));
}
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => {
    console.log('CLOSE ' + code + ' ' + reason);
    wss.close();
    if (server) server.close();
  });
});
setTimeout(() => process.exit(3), 20000).unref();
"""

NODE_CLIENT = r"""
const WebSocket = require('ws');
const [url, ca] = process.argv.slice(1);
const ws = new WebSocket(url, ca ? { ca: require('fs').readFileSync(ca) } : {});
const sent = ['hello', 'naïve café ✓', 'x'.repeat(70000), Buffer.from([0, 1, 2, 255])];
let i = 0;
ws.on('open', () => { console.log('OPEN'); ws.send(sent[0]); });
ws.on('message', (data, isBinary) => {
  const want = sent[i];
  const ok = isBinary ? Buffer.compare(data, want) === 0 : data.toString() === want;
  if (!ok) { console.log('MISMATCH ' + i); process.exit(1); }
  i++;
  if (i < sent.length) ws.send(sent[i]); else ws.close(1000, 'node done');
});
ws.on('close', (code, reason) => { console.log('CLOSED ' + code + ' ' + reason); process.exit(i === sent.length ? 0 : 2); });
ws.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(4); });
setTimeout(() => process.exit(5), 20000);
"""

need_node = needs(node_available(), "Node ws (node and tests/node_modules/ws)")


@need_node
def test_our_client_against_node_ws_server():
    node = NodeProcess(NODE_ECHO_SERVER)
    try:
        assert node.first_line.startswith("READY "), node.first_line
        port = int(node.first_line.split()[1])
        with wscore.connect(f"ws://127.0.0.1:{port}/") as ws:
            for p in PAYLOADS:
                ws.send(p)
                assert ws.recv(timeout=10) == p
            ws.send([b"a", b"b", b"c"])
            assert ws.recv(timeout=10) == b"abc"
            ws.close(1000, "from wscore")
        rc, out, err = node.finish()
        assert rc == 0, err
        assert "CLOSE 1000 from wscore" in out
    finally:
        node.kill()


@need_node
def test_node_ws_client_against_our_server(echo_server):
    node = NodeProcess(NODE_CLIENT, f"ws://127.0.0.1:{echo_server.port}/node")
    try:
        assert node.first_line == "OPEN"
        rc, out, err = node.finish()
        assert rc == 0, (out, err)
        assert "CLOSED 1000 node done" in out  # our server echoes the code and the reason
    finally:
        node.kill()


@need_node
def test_our_client_against_node_ws_wss_server(pki):
    node = NodeProcess(NODE_ECHO_SERVER, pki("server.pem"), pki("server.key"))
    try:
        assert node.first_line.startswith("READY "), (node.first_line, node.proc.stderr.read())
        port = int(node.first_line.split()[1])
        with wscore.connect(f"wss://localhost:{port}/", ssl={"cafile": pki("ca.pem")}) as ws:
            for p in PAYLOADS:
                ws.send(p)
                assert ws.recv(timeout=10) == p
            ws.close(1000, "from wscore over tls")
        rc, out, err = node.finish()
        assert rc == 0, err
        assert "CLOSE 1000 from wscore over tls" in out
    finally:
        node.kill()


@need_node
def test_our_client_verifies_node_ws_wss_server(pki):
    node = NodeProcess(NODE_ECHO_SERVER, pki("wrongname.pem"), pki("wrongname.key"))
    try:
        port = int(node.first_line.split()[1])
        with pytest.raises(wscore.TLSError, match="hostname mismatch"):
            wscore.connect(f"wss://localhost:{port}/", ssl={"cafile": pki("ca.pem")})
    finally:
        node.kill()


@need_node
def test_node_ws_wss_client_against_our_server(pki):
    tls = {"certfile": pki("server.pem"), "keyfile": pki("server.key")}
    with wscore.serve(echo_handler, "127.0.0.1", 0, ssl=tls) as server:
        server.start()
        node = NodeProcess(NODE_CLIENT, f"wss://localhost:{server.port}/node", pki("ca.pem"))
        try:
            assert node.first_line == "OPEN", (node.first_line, node.proc.stderr.read())
            rc, out, err = node.finish()
            assert rc == 0, (out, err)
            assert "CLOSED 1000 node done" in out
        finally:
            node.kill()
        # Node checks our certificate against its CA list: without the test CA it refuses.
        node = NodeProcess(NODE_CLIENT, f"wss://localhost:{server.port}/node")
        try:
            assert node.first_line.startswith("ERROR ") and "certificate" in node.first_line, node.first_line
        finally:
            node.kill()
