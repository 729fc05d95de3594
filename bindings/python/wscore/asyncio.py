"""The asyncio API: the same handles, waited on with ``loop.add_reader`` on their
descriptors (no thread per connection, no blocking call on the event loop).

    async with wscore.asyncio.connect("ws://127.0.0.1:9001/") as ws:
        await ws.send("hi")
        print(await ws.recv())

    server = await wscore.asyncio.serve(handler, "127.0.0.1", 0)
    ...
    server.close(); await server.wait_closed()
"""
from __future__ import annotations

import asyncio as _asyncio
import logging
from typing import Awaitable, Callable, Iterable, Mapping, Optional, Sequence, Union

from . import _lib
from ._conn import WebSocket as _SyncWebSocket, _check, _take, make_options, open_handle
from ._lib import ffi, lib
from .errors import ConnectionClosed, ConnectionClosedOK, closed_error

Data = Union[str, bytes]


async def _readable(fd: int) -> None:
    loop = _asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)


class WebSocket:
    """An asyncio WebSocket over one wscore connection handle."""

    def __init__(self, sync: _SyncWebSocket):
        self._ws = sync
        self._fd = sync.fileno()

    # Properties mirror the blocking object.
    close_code = property(lambda self: self._ws.close_code)
    close_reason = property(lambda self: self._ws.close_reason)
    subprotocol = property(lambda self: self._ws.subprotocol)
    request = property(lambda self: self._ws.request)
    response_headers = property(lambda self: self._ws.response_headers)
    remote_address = property(lambda self: self._ws.remote_address)
    closed = property(lambda self: self._ws.closed)
    state = property(lambda self: self._ws.state)

    async def recv(self) -> Data:
        """The next message (str or bytes); ConnectionClosed once closed."""
        h = self._ws._handle()
        out = ffi.new("ws_message **")
        while True:
            rc = lib.ws_receive(h, out, 0)
            if rc == 0:
                return _take(out[0])
            if rc == _lib.WS_ECLOSED:
                raise closed_error(lib.ws_close_code(h), ffi.string(lib.ws_close_reason(h)).decode())
            if rc != _lib.WS_EAGAIN:
                _check(rc)
            await _readable(self._fd)

    def __aiter__(self):
        return self

    async def __anext__(self) -> Data:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(self, message: Union[Data, Iterable[Data]]) -> None:
        """Sends str (text), bytes-like (binary) or an iterable of either (fragments).
        Waits without blocking the loop while the send queue is full."""
        delay = 0.0005
        while True:
            try:
                # The options of async connections make a full queue return WS_EAGAIN at once.
                self._ws.send(message)
                return
            except BlockingIOError:
                if not isinstance(message, (str, bytes, bytearray, memoryview)):
                    raise  # a half-sent fragmented message cannot be retried
                await _asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    async def ping(self, data: Union[str, bytes] = b"") -> None:
        self._ws.ping(data)

    async def pong(self, data: Union[str, bytes] = b"") -> None:
        self._ws.pong(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake; the bounded wait for the peer runs off the loop."""
        if self._ws._h is None or self._ws.closed:
            return
        await _asyncio.get_running_loop().run_in_executor(None, self._ws.close, code, reason)

    def release(self) -> None:
        self._ws.release()

    async def __aenter__(self) -> "WebSocket":
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            await self.close(1000 if exc is None else 1011)
        finally:
            self.release()


def _async_options(**kw):
    kw.setdefault("send_timeout", 0)
    return make_options(**kw)


class _Connect:
    """``await connect(...)`` or ``async with connect(...) as ws``."""

    def __init__(self, url: str, kw):
        self._url = url
        self._kw = kw
        self._ws: Optional[WebSocket] = None

    async def _open(self) -> WebSocket:
        opts = _async_options(**self._kw)
        loop = _asyncio.get_running_loop()
        h = await loop.run_in_executor(None, open_handle, self._url, opts)
        return WebSocket(_SyncWebSocket(h))

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc) -> None:
        await self._ws.__aexit__(*exc)


def connect(url: str, *, headers=None, subprotocols: Optional[Sequence[str]] = None,
            ssl: Optional[Mapping] = None, timeout: Optional[float] = 10.0,
            close_timeout: Optional[float] = 5.0, max_message_size: Optional[int] = None,
            send_queue_limit: Optional[int] = None, ping_interval: Optional[float] = None,
            ping_timeout: Optional[float] = None) -> _Connect:
    """Opens a client connection (the handshake runs in the default executor).
    Same keyword arguments as ``wscore.connect``."""
    return _Connect(url, dict(headers=headers, subprotocols=subprotocols, ssl=ssl, timeout=timeout,
                              close_timeout=close_timeout, max_message_size=max_message_size,
                              send_queue_limit=send_queue_limit, ping_interval=ping_interval,
                              ping_timeout=ping_timeout))


class Server:
    """An asyncio WebSocket server: one task per connection on the running loop."""

    def __init__(self, handler: Callable[[WebSocket], Awaitable[None]], srv):
        self._handler = handler
        self._srv = srv
        self.port: int = lib.ws_server_port(srv)
        self._fd = _check(lib.ws_server_fileno(srv))
        self._tasks: set = set()
        self._closed = _asyncio.Event()
        self._accept_task = _asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        out = ffi.new("ws_conn **")
        while True:
            rc = lib.ws_accept(self._srv, out, 0)
            if rc == 0:
                ws = WebSocket(_SyncWebSocket(out[0]))
                t = _asyncio.get_running_loop().create_task(self._run(ws))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            elif rc == _lib.WS_EAGAIN:
                await _readable(self._fd)
            else:
                break  # WS_ECANCELED: closed

    async def _run(self, ws: WebSocket) -> None:
        try:
            await self._handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logging.getLogger("wscore").exception("handler failed")
            await ws.close(1011, "internal error")
        else:
            await ws.close(1000)
        finally:
            ws.release()

    def close(self) -> None:
        """Stops accepting and closes every connection with 1001."""
        lib.ws_server_close(self._srv)
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()
        await _asyncio.gather(self._accept_task, *list(self._tasks), return_exceptions=True)

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()
        await self.wait_closed()

    def __del__(self):
        srv = getattr(self, "_srv", None)
        if srv is not None:
            lib.ws_server_free(srv)
            self._srv = None


async def serve(handler: Callable[[WebSocket], Awaitable[None]], host: str = "127.0.0.1",
                port: int = 0, *, subprotocols: Optional[Sequence[str]] = None,
                origins: Optional[Sequence[str]] = None, headers=None, ssl: Optional[Mapping] = None,
                max_message_size: Optional[int] = None, close_timeout: Optional[float] = 5.0,
                ping_interval: Optional[float] = None, ping_timeout: Optional[float] = None) -> Server:
    """Listens and runs ``await handler(ws)`` as a task per connection."""
    opts = _async_options(subprotocols=subprotocols, origins=origins, headers=headers, ssl=ssl,
                          max_message_size=max_message_size, close_timeout=close_timeout,
                          ping_interval=ping_interval, ping_timeout=ping_timeout)
    out = ffi.new("ws_server **")
    _check(lib.ws_listen(host.encode(), int(port), opts, out), f"listen on {host}:{port}")
    return Server(handler, out[0])
