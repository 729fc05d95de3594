"""wss:// against a TLS stack nobody here wrote: Python's ssl module (OpenSSL
underneath, but its own configuration and handshake driving) inside the
`websockets` library, as server for our client and as client of our server.

Part of the `python` test (meson test -C build python); by hand:
WSCORE_LIBRARY=build/src/api/libwscore.so /usr/bin/python3 -m pytest -q tests/tls
(under an ASan build, also LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0)."""
import asyncio
import os
import ssl
import subprocess
import sys
import threading

import pytest
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bindings", "python"))
import wscore  # noqa: E402

PAYLOADS = ["hello", "naïve café ✓", "", "x" * 70000, b"", b"\x00\xff" * 40000]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["sh", os.path.join(HERE, "make_certs.sh"), str(d)], check=True, timeout=60)
    return lambda name: str(d / name)


class WebsocketsServer:
    """websockets' asyncio echo server with a Python ssl context, on its own thread."""

    def __init__(self, context):
        self.context = context

    def __enter__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def echo(ws, path=None):
            async for m in ws:
                await ws.send(m)

        async def main():
            self.server = await websockets.serve(echo, "127.0.0.1", 0, ssl=self.context, max_size=None)
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


def server_context(pki, cert="server"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki(cert + ".pem"), pki(cert + ".key"))
    return ctx


def test_our_client_against_python_ssl_server(pki):
    with WebsocketsServer(server_context(pki)) as srv:
        for host in ("localhost", "127.0.0.1"):
            with wscore.connect(f"wss://{host}:{srv.port}/", ssl={"cafile": pki("ca.pem")}) as ws:
                for p in PAYLOADS:
                    ws.send(p)
                    assert ws.recv() == p


def test_our_client_refuses_python_ssl_server_it_cannot_verify(pki):
    with WebsocketsServer(server_context(pki, "wrongname")) as srv:
        with pytest.raises(Exception, match="hostname mismatch"):
            wscore.connect(f"wss://localhost:{srv.port}/", ssl={"cafile": pki("ca.pem")})
        with pytest.raises(Exception, match="unable to get local issuer certificate"):
            wscore.connect(f"wss://localhost:{srv.port}/", ssl={"cafile": pki("other-ca.pem")})
        with wscore.connect(f"wss://localhost:{srv.port}/", ssl={"insecure": True}) as ws:
            ws.send("anyway")
            assert ws.recv() == "anyway"


def client_context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    if cert:
        ctx.load_cert_chain(pki(cert + ".pem"), pki(cert + ".key"))
    return ctx


async def python_client_echo(port, ctx, payloads):
    async with websockets.connect(f"wss://localhost:{port}/", ssl=ctx, max_size=None) as ws:
        out = []
        for p in payloads:
            await ws.send(p)
            out.append(await asyncio.wait_for(ws.recv(), 10))
        return out


def echo_handler(ws):
    for msg in ws:
        ws.send(msg)


def test_python_ssl_client_against_our_server(pki):
    with wscore.serve(echo_handler, "127.0.0.1", 0, ssl={"certfile": pki("server.pem"),
                                                         "keyfile": pki("server.key")}) as server:
        server.start()
        got = asyncio.run(python_client_echo(server.port, client_context(pki), PAYLOADS))
        assert got == PAYLOADS
        # Python's client checks our certificate and host name as strictly as we do.
        ctx = ssl.create_default_context(cafile=pki("other-ca.pem"))
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(python_client_echo(server.port, ctx, ["x"]))


def test_python_ssl_client_mutual_tls(pki):
    opts = {"certfile": pki("server.pem"), "keyfile": pki("server.key"),
            "cafile": pki("ca.pem"), "verify_client": True}
    with wscore.serve(echo_handler, "127.0.0.1", 0, ssl=opts) as server:
        server.start()
        assert asyncio.run(python_client_echo(server.port, client_context(pki, "client"), ["mtls"])) == ["mtls"]
        # Without a client certificate the TLS 1.3 handshake looks done to the
        # client; our server's "certificate required" alert ends the connection.
        with pytest.raises((ssl.SSLError, websockets.exceptions.WebSocketException, ConnectionError, EOFError)):
            asyncio.run(python_client_echo(server.port, client_context(pki), ["x"]))
