"""Interop with peers nobody here wrote: the Python `websockets` library and
Node `ws`, each as server for our client and as client of our server."""
import asyncio
import os
import threading

import pytest
import websockets

import wscore
from conftest import NodeProcess, node_available

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
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 << 20 });
wss.on('listening', () => console.log('READY ' + wss.address().port));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => { console.log('CLOSE ' + code + ' ' + reason); wss.close(); });
});
setTimeout(() => process.exit(3), 20000).unref();
"""

NODE_CLIENT = r"""
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1]);
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

need_node = pytest.mark.skipif(not node_available(), reason="Node ws is not installed: run .ci/install-deps")


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
