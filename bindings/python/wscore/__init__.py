"""wscore: a fast, correct WebSocket library (RFC 6455) — the Python binding.

Blocking API (thread-friendly; the GIL is released during waits)::

    import wscore
    with wscore.connect("ws://127.0.0.1:9001/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

Server (a thread per connection)::

    def echo(ws):
        for msg in ws:
            ws.send(msg)

    with wscore.serve(echo, "127.0.0.1", 9001) as server:
        server.serve_forever()

asyncio API (no thread per connection): ``wscore.asyncio.connect`` /
``wscore.asyncio.serve``. Errors derive from ``wscore.WebSocketError``; see
``help(wscore.connect)`` and docs/python.md.
"""
from . import asyncio  # noqa: F401  (wscore.asyncio)
from ._conn import Headers, Request, Server, WebSocket, connect, serve
from ._lib import library_path, lib as _clib, ffi as _ffi
from .errors import (AddressInUse, Canceled, ConnectError, ConnectionClosed, ConnectionClosedError,
                     ConnectionClosedOK, ConnectionLost, HandshakeError, InvalidArgument, InvalidState,
                     InvalidURL, InvalidUTF8, MessageTooBig, NotSupported, OutOfMemory, ProtocolError,
                     SystemCallError, TimeoutError, TLSError, WebSocketError, WouldBlock)

__version__ = _ffi.string(_clib.ws_version()).decode()

__all__ = [
    "connect", "serve", "WebSocket", "Server", "Request", "Headers", "library_path",
    "WebSocketError", "ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError",
    "HandshakeError", "TLSError", "TimeoutError", "ConnectError", "InvalidURL", "InvalidUTF8",
    "InvalidArgument", "InvalidState", "ProtocolError", "MessageTooBig", "WouldBlock",
    "ConnectionLost", "AddressInUse", "SystemCallError", "NotSupported", "Canceled", "OutOfMemory",
]
