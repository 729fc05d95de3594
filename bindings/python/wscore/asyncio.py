"""The asyncio API: the same handles, waited on with ``loop.add_reader`` on their
descriptors (no thread per connection, no blocking call on the event loop)::

    async with wscore.asyncio.connect("ws://127.0.0.1:9001/") as ws:
        await ws.send("hi")
        print(await ws.recv())

    server = await wscore.asyncio.serve(handler, "127.0.0.1", 0)
    ...
    server.close(); await server.wait_closed()

A connection's descriptor (``ws_fileno``) is readable exactly while ``ws_receive``
would not block: a message is waiting, the connection is closed, or the peer's
close is held until the messages before it are read. ``recv`` drains every
queued message without waiting on the loop and waits only when the library has
nothing left; the reader stays registered between waits (and is dropped after a
readiness nobody waits for), so a busy connection does not add and remove it for
every message.
"""
from __future__ import annotations

import asyncio as _asyncio
import logging
from typing import Awaitable, Callable, Iterable, List, Mapping, Optional, Sequence, Union

from . import _lib
from ._conn import (WebSocket as _SyncWebSocket, _check, _fragments, _MSG_PP, _new, _receive, _send, _take,
                    make_options, open_handle)
from ._lib import WS_BINARY, WS_EAGAIN, WS_ECLOSED, WS_TEXT, ffi, lib
from .errors import ConnectionClosed, ConnectionClosedOK, closed_error

Data = Union[str, bytes]

__all__ = ["connect", "serve", "WebSocket", "Server"]


class WebSocket:
    """An asyncio WebSocket over one wscore connection handle.

    ``await recv()``, ``await send(message)``, ``async for message in ws`` (ends on
    a normal close, raises ConnectionClosedError on an abnormal one),
    ``await close(code, reason)``; ``async with`` closes (1000, or 1011 on an
    exception) and releases. Use it from the event loop it was created on.
    """

    def __init__(self, sync: _SyncWebSocket):
        self._ws = sync
        self._fd = sync.fileno()
        self._out = _new(_MSG_PP)  # reused by every recv (the loop runs one at a time)
        self._loop: Optional[_asyncio.AbstractEventLoop] = None
        self._reading = False  # our reader is registered on self._fd
        self._waiters: List[_asyncio.Future] = []

    # Properties mirror the blocking object.
    close_code = property(lambda self: self._ws.close_code, doc="The peer's close code once closed, else None.")
    close_reason = property(lambda self: self._ws.close_reason, doc="The peer's close reason once closed.")
    subprotocol = property(lambda self: self._ws.subprotocol, doc="The negotiated subprotocol, or None.")
    request = property(lambda self: self._ws.request, doc="Server side: the upgrade request.")
    response_headers = property(lambda self: self._ws.response_headers, doc="Client side: the 101's headers.")
    remote_address = property(lambda self: self._ws.remote_address, doc="The peer's address.")
    closed = property(lambda self: self._ws.closed, doc="True once the connection is closed.")
    state = property(lambda self: self._ws.state, doc="WS_STATE_* (0 connecting .. 3 closed).")
    buffered_amount = property(lambda self: self._ws.buffered_amount, doc="Bytes queued, not yet written.")

    def release_handshake(self) -> None:
        """Frees the handshake the library keeps; ``request`` and ``response_headers`` keep a copy."""
        self._ws.release_handshake()

    def fileno(self) -> int:
        """The descriptor the loop watches (readable when there is something to take)."""
        return self._fd

    # -- readiness ----------------------------------------------------------
    def _on_readable(self) -> None:
        waiters = self._waiters
        if not waiters:
            # Readable and nobody waits (the application is busy elsewhere): stop
            # watching, or a level-triggered descriptor would wake the loop forever.
            self._loop.remove_reader(self._fd)
            self._reading = False
            return
        self._waiters = []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _wait_readable(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = _asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append(fut)
        if not self._reading:
            loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        try:
            await fut
        finally:
            if not fut.done():  # cancelled
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # -- messages -------------------------------------------------------------
    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary. Raises
        ConnectionClosedOK / ConnectionClosedError once closed (after every message
        received before the close). Cancelling it loses no message."""
        out = self._out
        while True:
            h = self._ws._h
            if h is None:
                raise closed_error(*self._ws._final)
            rc = _receive(h, out, 0)
            if rc == 0:
                return _take(out[0])
            if rc == WS_EAGAIN:
                await self._wait_readable()
            elif rc == WS_ECLOSED:
                raise closed_error(lib.ws_close_code(h) or 1006, _s(lib.ws_close_reason(h)))
            else:
                _check(rc)

    def __aiter__(self) -> "WebSocket":
        return self

    async def __anext__(self) -> Data:
        h = self._ws._h
        if h is not None:  # the fast path: a message is waiting
            out = self._out
            if _receive(h, out, 0) == 0:
                return _take(out[0])
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(self, message: Union[Data, Iterable[Data]]) -> None:
        """Sends ``str`` (text), bytes-like (binary) or an iterable of either (the
        fragments of one message). Never blocks the loop: while the send queue is
        full (``send_queue_limit``) it waits with ``asyncio.sleep`` and retries."""
        h = self._ws._h
        if h is not None:
            t = type(message)
            if t is bytes:
                rc = _send(h, message, len(message), WS_BINARY)
            elif t is str:
                b = message.encode("utf-8")
                rc = _send(h, b, len(b), WS_TEXT)
            else:
                rc = None
            if rc == 0:
                return
            if rc is not None and rc != WS_EAGAIN:
                self._ws._check(rc)
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            await self._retry(lambda: self._ws.send(message))
        elif hasattr(message, "__iter__"):
            for data, kind, fin in _fragments(message):
                await self._retry(lambda: self._ws._check(lib.ws_send_fragment(
                    self._ws._handle(), data, len(data), kind, fin)))
        else:
            self._ws.send(message)  # raises the TypeError

    @staticmethod
    async def _retry(call: Callable[[], None]) -> None:
        # Async connections are opened with send_timeout=0: a full queue answers
        # WS_EAGAIN (WouldBlock) at once instead of blocking the loop.
        delay = 0.0005
        while True:
            try:
                return call()
            except BlockingIOError:
                await _asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    async def ping(self, data: Union[str, bytes] = b"") -> None:
        """Sends a ping (at most 125 bytes); the pong is handled inside."""
        await self._retry(lambda: self._ws.ping(data))

    async def pong(self, data: Union[str, bytes] = b"") -> None:
        """Sends an unsolicited pong (at most 125 bytes)."""
        await self._retry(lambda: self._ws.pong(data))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The close handshake (see ``wscore.WebSocket.close``); its bounded wait
        for the peer runs in the default executor, off the loop."""
        if self._ws._h is None or self._ws.closed:
            return
        await _asyncio.get_running_loop().run_in_executor(None, self._ws.close, code, reason)

    def release(self) -> None:
        """Frees the handle (closing with 1001 if still open). Idempotent. Tasks
        waiting in ``recv`` get ConnectionClosed."""
        self._stop_reading()
        self._ws.release()

    async def __aenter__(self) -> "WebSocket":
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            await self.close(1000 if exc is None else 1011)
        finally:
            self.release()

    def __repr__(self) -> str:
        return repr(self._ws).replace("wscore.WebSocket", "wscore.asyncio.WebSocket")


def _s(p) -> str:
    return ffi.string(p).decode("utf-8", "replace") if p != ffi.NULL else ""


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
            send_queue_limit: Optional[int] = None, receive_queue_limit: Optional[int] = None,
            ping_interval: Optional[float] = None, ping_timeout: Optional[float] = None,
            deliver_control: bool = False) -> _Connect:
    """Opens a client connection to ``url`` (ws:// or wss://)::

        async with wscore.asyncio.connect("ws://127.0.0.1:9001/") as ws:
            await ws.send("hi")
            print(await ws.recv())

        ws = await wscore.asyncio.connect(url)   # without the context manager: ws.release() at the end

    The opening handshake runs in the default executor. Keyword arguments as for
    ``wscore.connect``; errors likewise (InvalidURL, ConnectError, TimeoutError,
    HandshakeError with ``.status``, TLSError)."""
    return _Connect(url, dict(headers=headers, subprotocols=subprotocols, ssl=ssl, timeout=timeout,
                              close_timeout=close_timeout, max_message_size=max_message_size,
                              send_queue_limit=send_queue_limit,
                              receive_queue_limit=receive_queue_limit, ping_interval=ping_interval,
                              ping_timeout=ping_timeout, deliver_control=deliver_control))


class Server:
    """An asyncio WebSocket server: one task per connection on the running loop.

    ``close()`` stops accepting and closes every connection with 1001;
    ``await wait_closed()`` then waits for the handlers. ``async with`` does both."""

    def __init__(self, handler: Callable[[WebSocket], Awaitable[None]], srv):
        self._handler = handler
        self._srv = srv
        self.port: int = lib.ws_server_port(srv)
        self._fd = _check(lib.ws_server_fileno(srv))
        self._tasks: set = set()
        self._closed = _asyncio.Event()
        self._accept_task = _asyncio.get_running_loop().create_task(self._accept_loop())

    def fileno(self) -> int:
        """The descriptor the loop watches (readable when there is something to take)."""
        return self._fd

    async def _accept_loop(self) -> None:
        loop = _asyncio.get_running_loop()
        out = ffi.new("ws_conn **")
        while True:
            rc = lib.ws_accept(self._srv, out, 0)
            if rc == 0:
                ws = WebSocket(_SyncWebSocket(out[0]))
                t = loop.create_task(self._run(ws))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            elif rc == _lib.WS_EAGAIN:
                fut = loop.create_future()
                loop.add_reader(self._fd, lambda: fut.done() or fut.set_result(None))
                try:
                    await fut
                finally:
                    loop.remove_reader(self._fd)
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
        """Stops accepting and closes every connection with 1001. Idempotent."""
        if self._srv is not None:
            lib.ws_server_close(self._srv)
        self._closed.set()

    async def wait_closed(self) -> None:
        """Waits for close() and then for every connection's handler to end."""
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
                max_message_size: Optional[int] = None, handshake_timeout: Optional[float] = None,
                close_timeout: Optional[float] = 5.0, send_queue_limit: Optional[int] = None,
                receive_queue_limit: Optional[int] = None, ping_interval: Optional[float] = None,
                ping_timeout: Optional[float] = None) -> Server:
    """Listens on host:port (0 picks a free port: ``server.port``) and runs
    ``await handler(ws)`` as a task per connection on the running loop::

        async def echo(ws):
            async for msg in ws:
                await ws.send(msg)

        server = await wscore.asyncio.serve(echo, "127.0.0.1", 9001)
        ...
        server.close()
        await server.wait_closed()

    The connection closes with 1000 when the handler returns, 1011 when it
    raises. Keyword arguments as for ``wscore.serve``."""
    opts = _async_options(subprotocols=subprotocols, origins=origins, headers=headers, ssl=ssl,
                          max_message_size=max_message_size, handshake_timeout=handshake_timeout,
                          close_timeout=close_timeout, send_queue_limit=send_queue_limit,
                          receive_queue_limit=receive_queue_limit,
                          ping_interval=ping_interval, ping_timeout=ping_timeout)
    out = ffi.new("ws_server **")
    _check(lib.ws_listen(host.encode(), int(port), opts, out), f"listen on {host}:{port}")
    return Server(handler, out[0])
