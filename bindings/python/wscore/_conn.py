"""The blocking API: connect(), serve(), and the WebSocket object."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _lib
from ._lib import ffi, lib
from .errors import (ConnectionClosed, HandshakeError, InvalidArgument, TLSError, WebSocketError, closed_error,
                     error_for)

Data = Union[str, bytes]
_MS_FOREVER = -1


def _ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return _MS_FOREVER
    if timeout < 0:
        raise ValueError("timeout must be None or >= 0")
    return int(timeout * 1000)


def _check(rc: int, detail: str = "") -> int:
    if rc < 0:
        raise error_for(rc, detail)
    return rc


def _s(p) -> str:
    return ffi.string(p).decode("utf-8", "replace") if p != ffi.NULL else ""


class Headers(Mapping[str, str]):
    """A case-insensitive, read-only view of HTTP headers (several of one name joined with ", ")."""

    def __init__(self, items: Sequence[Tuple[str, str]]):
        self._items = list(items)
        self._map = {}
        for k, v in self._items:
            lk = k.lower()
            self._map[lk] = f"{self._map[lk]}, {v}" if lk in self._map else v

    def __getitem__(self, key: str) -> str:
        return self._map[key.lower()]

    def __iter__(self):
        return iter(k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def raw_items(self) -> List[Tuple[str, str]]:
        """Headers in order, names as sent."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class Request:
    """The upgrade request a server-side connection was opened with."""

    target: str
    path: str
    query: str
    headers: Headers = field(repr=False)


def _headers_of(h) -> Headers:
    n = lib.ws_header_count(h)
    return Headers([(_s(lib.ws_header_name(h, i)), _s(lib.ws_header_value(h, i))) for i in range(max(n, 0))])


def make_options(*, headers=None, subprotocols=None, origins=None, timeout: Optional[float] = 10.0,
                 close_timeout: Optional[float] = 5.0, max_message_size: Optional[int] = None,
                 send_queue_limit: Optional[int] = None, send_timeout: Optional[float] = None,
                 handshake_timeout: Optional[float] = None, ping_interval: Optional[float] = None,
                 ping_timeout: Optional[float] = None, deliver_control: bool = False, ssl=None):
    """An owned ``ws_options*`` (freed by the garbage collector) from keyword arguments."""
    o = ffi.gc(lib.ws_options_new(), lib.ws_options_free)
    if o == ffi.NULL:
        raise MemoryError
    _check(lib.ws_options_set_connect_timeout(o, _ms(timeout)))
    _check(lib.ws_options_set_close_timeout(o, _ms(close_timeout)))
    if handshake_timeout is not None:
        _check(lib.ws_options_set_handshake_timeout(o, _ms(handshake_timeout)))
    if max_message_size is not None:
        _check(lib.ws_options_set_max_message_size(o, int(max_message_size)))
    if send_queue_limit is not None:
        _check(lib.ws_options_set_send_queue_limit(o, int(send_queue_limit)))
    if send_timeout is not None:
        _check(lib.ws_options_set_send_timeout(o, _ms(send_timeout)))
    if ping_interval:
        _check(lib.ws_options_set_keepalive(o, _ms(ping_interval), _ms(ping_timeout or ping_interval)))
    if deliver_control:
        _check(lib.ws_options_set_deliver_control(o, 1))
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for k, v in items:
        _check(lib.ws_options_add_header(o, k.encode(), v.encode()), f"header {k!r}")
    for p in subprotocols or []:
        _check(lib.ws_options_add_subprotocol(o, p.encode()), f"subprotocol {p!r}")
    for origin in origins or []:
        _check(lib.ws_options_add_origin(o, origin.encode()), f"origin {origin!r}")
    if ssl is not None:
        _apply_ssl(o, ssl)
    return o


def _apply_ssl(o, ssl) -> None:
    """``ssl``: a dict with any of cafile, capath, certfile, keyfile, insecure (client) /
    verify_client (server)."""
    if not isinstance(ssl, Mapping):
        raise TypeError("ssl must be a dict: {'cafile': ..., 'certfile': ..., 'keyfile': ...}")
    if "cafile" in ssl:
        _check(lib.ws_options_set_tls_ca_file(o, str(ssl["cafile"]).encode()))
    if "capath" in ssl:
        _check(lib.ws_options_set_tls_ca_dir(o, str(ssl["capath"]).encode()))
    if "certfile" in ssl:
        _check(lib.ws_options_set_tls_cert_file(o, str(ssl["certfile"]).encode()))
    if "keyfile" in ssl:
        _check(lib.ws_options_set_tls_key_file(o, str(ssl["keyfile"]).encode()))
    if ssl.get("insecure"):
        _check(lib.ws_options_set_tls_insecure_skip_verify(o, 1))
    if ssl.get("verify_client"):
        _check(lib.ws_options_set_tls_verify_client(o, 1))


class WebSocket:
    """One WebSocket connection (client or server side), usable from any thread.

    Messages: ``recv()`` returns ``str`` (text) or ``bytes`` (binary); ``send()``
    takes ``str``, a bytes-like object, or an iterable of either (sent as
    fragments of one message). Iterating yields messages until a normal close.
    """

    def __init__(self, handle, *, _owned: bool = True):
        self._h = handle
        self._lock = threading.Lock()
        self._final = (1006, "")  # close code and reason once released

    # -- lifecycle --------------------------------------------------------
    def _check(self, rc: int) -> int:
        """Raises for a negative code; WS_ECLOSED becomes ConnectionClosed with the peer's code."""
        if rc == _lib.WS_ECLOSED and self._h is not None:
            raise closed_error(lib.ws_close_code(self._h) or 1006, _s(lib.ws_close_reason(self._h)))
        return _check(rc)

    def _handle(self):
        h = self._h
        if h is None:
            raise closed_error(1006, "the WebSocket object was released")
        return h

    def release(self) -> None:
        """Frees the underlying handle (closing with 1001 if still open). Idempotent."""
        with self._lock:
            h, self._h = self._h, None
        if h is not None:
            code = lib.ws_close_code(h)
            # Keep what the peer said readable after the handle is gone.
            self._final = (code or 1006, _s(lib.ws_close_reason(h)) if code else "")
            lib.ws_free(h)

    def __enter__(self) -> "WebSocket":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.state == _lib.WS_STATE_OPEN:
                self.close(1000 if exc is None else 1011)
        finally:
            self.release()

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None:
            lib.ws_free(h)
            self._h = None

    # -- messages ---------------------------------------------------------
    def recv(self, timeout: Optional[float] = None) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary (pings answered inside).

        Raises ConnectionClosedOK / ConnectionClosedError once closed (after every
        message received before the close), TimeoutError after ``timeout`` seconds.
        """
        h = self._handle()
        out = ffi.new("ws_message **")
        rc = lib.ws_receive(h, out, _ms(timeout))
        if rc == _lib.WS_ECLOSED:
            raise closed_error(lib.ws_close_code(h), _s(lib.ws_close_reason(h)))
        _check(rc)
        return _take(out[0])

    def __iter__(self) -> Iterator[Data]:
        """Messages until the connection closes; ends quietly on a normal close."""
        from .errors import ConnectionClosedOK
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def send(self, message: Union[Data, Iterable[Data]]) -> None:
        """Sends a text (``str``) or binary (bytes-like) message, or an iterable of
        them as the fragments of one message (all of one type). Blocks only while
        the send queue is full."""
        h = self._handle()
        if isinstance(message, str):
            b = message.encode("utf-8")
            self._check(lib.ws_send(h, b, len(b), _lib.WS_TEXT))
        elif isinstance(message, (bytes, bytearray, memoryview)):
            buf = ffi.from_buffer(message)
            self._check(lib.ws_send(h, buf, len(buf), _lib.WS_BINARY))
        elif hasattr(message, "__iter__"):
            self._send_fragments(h, message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}: use str, bytes or an iterable of them")

    def _send_fragments(self, h, parts: Iterable[Data]) -> None:
        it = iter(parts)
        kind = None
        try:
            cur = next(it)
        except StopIteration:
            raise ValueError("an empty iterable is no message") from None
        while True:
            try:
                nxt = next(it)
                fin = 0
            except StopIteration:
                nxt, fin = None, 1
            t = _lib.WS_TEXT if isinstance(cur, str) else _lib.WS_BINARY
            if kind is None:
                kind = t
            elif t != kind:
                raise TypeError("all fragments of a message must be str or all bytes")
            data = cur.encode("utf-8") if isinstance(cur, str) else ffi.from_buffer(cur)
            self._check(lib.ws_send_fragment(h, data, len(data), kind, fin))
            if fin:
                return
            cur = nxt

    def ping(self, data: Union[str, bytes] = b"") -> None:
        """Sends a ping (at most 125 bytes). The pong is handled inside."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        self._check(lib.ws_ping(self._handle(), b, len(b)))

    def pong(self, data: Union[str, bytes] = b"") -> None:
        """Sends an unsolicited pong (at most 125 bytes)."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        self._check(lib.ws_pong(self._handle(), b, len(b)))

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Starts the close handshake and waits (bounded) for the peer's close.
        Returns True when the peer answered, False on timeout. Closing a closed
        connection does nothing."""
        h = self._handle()
        rc = lib.ws_close(h, int(code), reason.encode("utf-8"))
        if rc in (_lib.WS_OK,):
            return True
        if rc in (_lib.WS_ECLOSED,):
            return False
        if rc == _lib.WS_ETIMEDOUT:
            return False
        if rc == _lib.WS_EINVAL:
            raise InvalidArgument(rc, None, f"close code {code} / reason of {len(reason.encode())} bytes")
        _check(rc)
        return False

    # -- state --------------------------------------------------------------
    @property
    def state(self) -> int:
        h = self._h
        return _lib.WS_STATE_CLOSED if h is None else lib.ws_state(h)

    @property
    def closed(self) -> bool:
        return self.state == _lib.WS_STATE_CLOSED

    @property
    def close_code(self) -> Optional[int]:
        """The peer's close code once closed (1005: none given, 1006: dropped), else None."""
        h = self._h
        if h is None:
            return self._final[0]
        return lib.ws_close_code(h) or None

    @property
    def close_reason(self) -> Optional[str]:
        h = self._h
        if h is None:
            return self._final[1]
        if not lib.ws_close_code(h):
            return None
        return _s(lib.ws_close_reason(h))

    @property
    def subprotocol(self) -> Optional[str]:
        return _s(lib.ws_subprotocol(self._handle())) or None

    @property
    def request(self) -> Optional[Request]:
        """Server side: the upgrade request (target, path, query, headers)."""
        h = self._handle()
        if not lib.ws_is_server(h):
            return None
        return Request(_s(lib.ws_request_target(h)), _s(lib.ws_request_path(h)),
                       _s(lib.ws_request_query(h)), _headers_of(h))

    @property
    def response_headers(self) -> Optional[Headers]:
        """Client side: the headers of the 101 response."""
        h = self._handle()
        return None if lib.ws_is_server(h) else _headers_of(h)

    @property
    def remote_address(self) -> str:
        return _s(lib.ws_peer_address(self._handle()))

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for sending, not yet written to the socket."""
        return lib.ws_buffered_amount(self._handle())

    def fileno(self) -> int:
        """A descriptor readable exactly when ``recv(timeout=0)`` would not block."""
        return _check(lib.ws_fileno(self._handle()))

    def __repr__(self) -> str:
        states = {0: "CONNECTING", 1: "OPEN", 2: "CLOSING", 3: "CLOSED"}
        return f"<wscore.WebSocket {states.get(self.state, '?')} {self.remote_address if self._h else ''}>"


def _take(m) -> Data:
    try:
        n = lib.ws_message_size(m)
        data = ffi.unpack(ffi.cast("const char *", lib.ws_message_data(m)), n)
        if lib.ws_message_type(m) == _lib.WS_TEXT:
            return data.decode("utf-8")
        return data
    finally:
        lib.ws_message_free(m)


def open_handle(url: str, opts):
    out = ffi.new("ws_conn **")
    rc = lib.ws_open(url.encode("utf-8"), opts, out)
    h = out[0]
    if rc == 0:
        return h
    try:
        detail = _s(lib.ws_error_detail(h)) if h != ffi.NULL else ""
        if rc == _lib.WS_EHANDSHAKE and h != ffi.NULL:
            raise HandshakeError(rc, lib.ws_http_status(h), _headers_of(h), detail)
        if rc == _lib.WS_ETLS:
            raise TLSError(rc, None, detail)
        raise error_for(rc, detail or url)
    finally:
        if h != ffi.NULL:
            lib.ws_free(h)


def connect(url: str, *, headers: Union[Mapping[str, str], Sequence[Tuple[str, str]], None] = None,
            subprotocols: Optional[Sequence[str]] = None, ssl: Optional[Mapping] = None,
            timeout: Optional[float] = 10.0, close_timeout: Optional[float] = 5.0,
            max_message_size: Optional[int] = None, send_queue_limit: Optional[int] = None,
            send_timeout: Optional[float] = None, ping_interval: Optional[float] = None,
            ping_timeout: Optional[float] = None, deliver_control: bool = False) -> WebSocket:
    """Opens a client WebSocket to ``url`` (ws:// or wss://) and returns it.

    Use it as a context manager to close (1000) and free it at the end::

        with wscore.connect("ws://127.0.0.1:9001/chat", subprotocols=["chat"]) as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

    ``timeout`` bounds the whole opening (DNS, TCP, TLS, HTTP upgrade), in
    seconds. ``headers`` are extra request headers; ``ssl`` a dict (cafile,
    capath, certfile, keyfile, insecure). ``max_message_size`` bounds received
    messages (default 16 MiB; larger ones close with 1009). Raises
    InvalidURL, ConnectError, TimeoutError, HandshakeError (``.status``,
    ``.headers``), TLSError.
    """
    opts = make_options(headers=headers, subprotocols=subprotocols, timeout=timeout,
                        close_timeout=close_timeout, max_message_size=max_message_size,
                        send_queue_limit=send_queue_limit, send_timeout=send_timeout,
                        ping_interval=ping_interval, ping_timeout=ping_timeout,
                        deliver_control=deliver_control, ssl=ssl)
    return WebSocket(open_handle(url, opts))


class Server:
    """A listening WebSocket server running ``handler(ws)`` on a thread per connection.

    The connection is closed with 1000 when the handler returns and 1011 when it
    raises. Use as a context manager; ``serve_forever()`` blocks until
    ``shutdown()`` (from another thread or a handler)."""

    def __init__(self, handler: Callable[[WebSocket], None], host: str, port: int, opts):
        out = ffi.new("ws_server **")
        _check(lib.ws_listen(host.encode(), int(port), opts, out), f"listen on {host}:{port}")
        self._srv = out[0]
        self.handler = handler
        self.host = host
        self.port: int = lib.ws_server_port(self._srv)
        self._threads: List[threading.Thread] = []
        self._accepting: Optional[threading.Thread] = None
        self._closed = threading.Event()

    def fileno(self) -> int:
        return _check(lib.ws_server_fileno(self._srv))

    def accept(self, timeout: Optional[float] = None) -> WebSocket:
        """The next connection (pull mode), without running the handler."""
        out = ffi.new("ws_conn **")
        _check(lib.ws_accept(self._srv, out, _ms(timeout)))
        return WebSocket(out[0])

    def _run(self, ws: WebSocket) -> None:
        try:
            self.handler(ws)
        except ConnectionClosed:
            pass  # the peer went away: nothing to report
        except Exception:  # the handler's failure closes its connection, not the server
            import logging
            logging.getLogger("wscore").exception("handler failed")
            if ws.state == _lib.WS_STATE_OPEN:
                ws.close(1011, "internal error")
        else:
            if ws.state == _lib.WS_STATE_OPEN:
                ws.close(1000)
        finally:
            ws.release()

    def serve_forever(self) -> None:
        """Accepts connections and runs the handler for each until shutdown()."""
        out = ffi.new("ws_conn **")
        while not self._closed.is_set():
            rc = lib.ws_accept(self._srv, out, -1)
            if rc == _lib.WS_ECANCELED:
                break
            _check(rc)
            t = threading.Thread(target=self._run, args=(WebSocket(out[0]),), daemon=True,
                                 name=f"wscore-handler-{self.port}")
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def start(self) -> "Server":
        """Runs serve_forever() on a background thread."""
        if self._accepting is None:
            self._accepting = threading.Thread(target=self.serve_forever, daemon=True,
                                               name=f"wscore-accept-{self.port}")
            self._accepting.start()
        return self

    def shutdown(self, timeout: Optional[float] = 5.0) -> None:
        """Stops accepting, closes every connection with 1001 and waits (bounded)
        for the handlers."""
        if self._closed.is_set():
            return
        self._closed.set()
        lib.ws_server_close(self._srv)
        if self._accepting is not None and self._accepting is not threading.current_thread():
            self._accepting.join(timeout)
        for t in list(self._threads):
            if t is not threading.current_thread():
                t.join(timeout)

    close = shutdown

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __del__(self):
        srv = getattr(self, "_srv", None)
        if srv is not None:
            lib.ws_server_free(srv)
            self._srv = None


def serve(handler: Callable[[WebSocket], None], host: str = "127.0.0.1", port: int = 0, *,
          subprotocols: Optional[Sequence[str]] = None, origins: Optional[Sequence[str]] = None,
          headers=None, ssl: Optional[Mapping] = None, max_message_size: Optional[int] = None,
          handshake_timeout: Optional[float] = None, close_timeout: Optional[float] = 5.0,
          send_queue_limit: Optional[int] = None, send_timeout: Optional[float] = None,
          ping_interval: Optional[float] = None, ping_timeout: Optional[float] = None) -> Server:
    """Listens on host:port (0 picks a free port: see ``server.port``) and runs
    ``handler(ws)`` on a thread for each connection::

        def echo(ws):
            for msg in ws:
                ws.send(msg)

        with wscore.serve(echo, "127.0.0.1", 9001) as server:
            server.serve_forever()

    ``origins`` restricts browser Origins (403 otherwise); ``subprotocols`` are
    the ones the server speaks (the client's first match is chosen); ``headers``
    go into every 101 response; ``ssl`` = {'certfile', 'keyfile'} serves wss://.
    """
    opts = make_options(headers=headers, subprotocols=subprotocols, origins=origins, ssl=ssl,
                        max_message_size=max_message_size, handshake_timeout=handshake_timeout,
                        close_timeout=close_timeout, send_queue_limit=send_queue_limit,
                        send_timeout=send_timeout, ping_interval=ping_interval, ping_timeout=ping_timeout)
    return Server(handler, host, port, opts)
