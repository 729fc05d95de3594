"""The blocking API: connect(), serve(), and the WebSocket object.

Every call into the library goes through cffi, which releases the GIL for the
duration of the C call: a thread blocked in ``recv()``, ``accept()`` or a
``send()`` waiting for room lets every other Python thread run.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _lib
from ._lib import WS_BINARY, WS_EAGAIN, WS_ECLOSED, WS_ETIMEDOUT, WS_TEXT, ffi, lib
from .errors import (ConnectionClosed, ConnectionClosedOK, HandshakeError, InvalidArgument, TLSError,
                     closed_error, error_for)

Data = Union[str, bytes]
_MS_FOREVER = -1

# The per-message path binds what it calls once (each attribute lookup on
# ``lib``/``ffi`` costs about as much as a cheap C call through cffi).
_receive = lib.ws_receive
_send = lib.ws_send
_msg_size = lib.ws_message_size
_msg_data = lib.ws_message_data
_msg_type = lib.ws_message_type
_msg_free = lib.ws_message_free
_buffer = ffi.buffer
_new = ffi.new
_MSG_PP = ffi.typeof("ws_message **")
_CONN_PP = ffi.typeof("ws_conn **")

# Waits of the main thread are cut into slices of this many milliseconds so that
# its signal handlers (Ctrl-C's KeyboardInterrupt) run meanwhile: a signal does
# not interrupt a wait inside the library.
_SLICE_MS = 200
_main_ident = threading.main_thread().ident


def _ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return _MS_FOREVER
    if timeout < 0:
        raise ValueError("timeout must be None or >= 0")
    return int(timeout * 1000)


def _sliced(call: Callable[[int], int], ms: int) -> int:
    """``call(timeout_ms)`` (a ws_receive/ws_accept closure) waiting up to ``ms``
    (-1: forever); on the main thread in slices, with Python code running between them."""
    if ms == 0 or threading.get_ident() != _main_ident:
        return call(ms)
    if ms < 0:
        while True:
            rc = call(_SLICE_MS)
            if rc != WS_ETIMEDOUT:
                return rc
    deadline = time.monotonic() + ms / 1000
    while True:
        left = int((deadline - time.monotonic()) * 1000)
        if left <= 0:
            rc = call(0)
            return WS_ETIMEDOUT if rc == WS_EAGAIN else rc
        rc = call(min(left, _SLICE_MS))
        if rc != WS_ETIMEDOUT or left <= _SLICE_MS:
            return rc


def _fragments(parts: Iterable[Data]) -> Iterator[Tuple[object, int, int]]:
    """(data, type, fin) for each element of an iterable message, all of one type.
    A list or tuple is checked whole before anything is sent; an iterator can only be
    checked as it goes (a bad element ends it half-sent)."""
    if isinstance(parts, (list, tuple)) and parts:
        text = isinstance(parts[0], str)
        for p in parts:
            if not isinstance(p, (str, bytes, bytearray, memoryview)) or isinstance(p, str) != text:
                raise TypeError("all fragments of a message must be str or all bytes-like")
    it = iter(parts)
    try:
        cur = next(it)
    except StopIteration:
        raise ValueError("an empty iterable is no message") from None
    kind = WS_TEXT if isinstance(cur, str) else WS_BINARY
    while True:
        try:
            nxt = next(it)
            fin = 0
        except StopIteration:
            nxt, fin = None, 1
        if isinstance(cur, str):
            if kind != WS_TEXT:
                raise TypeError("all fragments of a message must be str or all bytes-like")
            data = cur.encode("utf-8")
        elif isinstance(cur, (bytes, bytearray, memoryview)):
            if kind != WS_BINARY:
                raise TypeError("all fragments of a message must be str or all bytes-like")
            data = cur if type(cur) is bytes else ffi.from_buffer(cur)
        else:
            raise TypeError(f"cannot send a fragment of type {type(cur).__name__}: use str or bytes-like")
        yield data, kind, fin
        if fin:
            return
        cur = nxt


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
                 receive_queue_limit: Optional[int] = None,
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
    if receive_queue_limit is not None:
        _check(lib.ws_options_set_receive_queue_limit(o, int(receive_queue_limit)))
    if ping_interval:
        _check(lib.ws_options_set_keepalive(o, _ms(ping_interval), _ms(ping_timeout or ping_interval)))
    if deliver_control:
        _check(lib.ws_options_set_deliver_control(o, 1))
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for k, v in items:
        _check(lib.ws_options_add_header(o, k.encode(), v.encode()), f"header {k!r}")
    for name, value in (("subprotocols", subprotocols), ("origins", origins)):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be a list of str, not one string")
    for p in subprotocols or []:
        _check(lib.ws_options_add_subprotocol(o, p.encode()), f"subprotocol {p!r}")
    for origin in origins or []:
        _check(lib.ws_options_add_origin(o, origin.encode()), f"origin {origin!r}")
    if ssl is not None:
        _apply_ssl(o, ssl)
    return o


SSL_KEYS = ("cafile", "capath", "certfile", "keyfile", "insecure", "verify_client")


def _apply_ssl(o, ssl) -> None:
    """``ssl``: a dict with any of cafile, capath (trusted CAs, instead of the system
    store), certfile, keyfile (the server's certificate, or a client certificate),
    insecure (client: skip verification, tests only), verify_client (server: require
    a client certificate signed by cafile/capath)."""
    if not isinstance(ssl, Mapping):
        raise TypeError("ssl must be a dict with keys among " + ", ".join(SSL_KEYS)
                        + f" (not {type(ssl).__name__})")
    unknown = sorted(set(ssl) - set(SSL_KEYS))
    if unknown:
        raise TypeError(f"unknown ssl option(s) {', '.join(map(repr, unknown))}: use " + ", ".join(SSL_KEYS))
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
        self._head = None  # Request or Headers, copied by release_handshake

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
        out = _new(_MSG_PP)
        ms = _ms(timeout)
        rc = _receive(h, out, 0)  # the common case: a message is waiting
        if rc == WS_EAGAIN and ms != 0:
            rc = _sliced(lambda t: _receive(h, out, t), ms)
        if rc == 0:
            return _take(out[0])
        if rc == WS_ECLOSED:
            raise closed_error(lib.ws_close_code(h) or 1006, _s(lib.ws_close_reason(h)))
        _check(rc)
        raise AssertionError(rc)  # not reached

    def __iter__(self) -> Iterator[Data]:
        """Messages until the connection closes; ends quietly on a normal close
        (1000, 1001, 1005) and raises ConnectionClosedError on any other."""
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
        t = type(message)
        if t is bytes:
            rc = _send(h, message, len(message), WS_BINARY)
        elif t is str:
            b = message.encode("utf-8")
            rc = _send(h, b, len(b), WS_TEXT)
        else:
            rc = self._send_other(h, message)
        if rc:
            self._check(rc)

    def _send_other(self, h, message) -> int:
        if isinstance(message, str):  # a subclass
            b = message.encode("utf-8")
            return _send(h, b, len(b), WS_TEXT)
        if isinstance(message, (bytes, bytearray, memoryview)):
            buf = ffi.from_buffer(message)
            return _send(h, buf, len(buf), WS_BINARY)
        if hasattr(message, "__iter__"):
            for data, kind, fin in _fragments(message):
                self._check(lib.ws_send_fragment(h, data, len(data), kind, fin))
            return 0
        raise TypeError(f"cannot send {type(message).__name__}: use str, bytes-like or an iterable of them")

    def ping(self, data: Union[str, bytes] = b"") -> None:
        """Sends a ping (at most 125 bytes). The pong is handled inside."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        self._check(lib.ws_ping(self._handle(), b, len(b)))

    def pong(self, data: Union[str, bytes] = b"") -> None:
        """Sends an unsolicited pong (at most 125 bytes)."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        self._check(lib.ws_pong(self._handle(), b, len(b)))

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Starts the close handshake with ``code`` and ``reason`` (UTF-8, at most
        123 bytes), sends what was queued before it, and waits (bounded by the
        close timeout) for the peer's close. Returns True when the peer answered,
        False on timeout. Closing a closed (or released) connection does nothing
        and returns False. Raises InvalidArgument for a code that may not be sent
        (1005, 1006, 1015, < 1000, ...) or a reason too long."""
        h = self._h
        if h is None:
            return False
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
        """WS_STATE_CONNECTING (0), WS_STATE_OPEN (1), WS_STATE_CLOSING (2) or WS_STATE_CLOSED (3)."""
        h = self._h
        return _lib.WS_STATE_CLOSED if h is None else lib.ws_state(h)

    @property
    def closed(self) -> bool:
        """True once the connection is closed (or released)."""
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
        """The peer's close reason once closed ("" when it gave none), else None."""
        h = self._h
        if h is None:
            return self._final[1]
        if not lib.ws_close_code(h):
            return None
        return _s(lib.ws_close_reason(h))

    @property
    def subprotocol(self) -> Optional[str]:
        """The negotiated subprotocol, or None."""
        return _s(lib.ws_subprotocol(self._handle())) or None

    def _handshake_head_locked(self):
        """The Request (server side) or the response Headers (client side); under self._lock,
        so that release_handshake never frees what the library keeps while it is read."""
        if self._head is not None:
            return self._head
        h = self._handle()
        if lib.ws_is_server(h):
            return Request(_s(lib.ws_request_target(h)), _s(lib.ws_request_path(h)),
                           _s(lib.ws_request_query(h)), _headers_of(h))
        return _headers_of(h)

    def _handshake_head(self):
        with self._lock:
            return self._handshake_head_locked()

    @property
    def request(self) -> Optional[Request]:
        """Server side: the upgrade request (target, path, query, headers)."""
        head = self._handshake_head()
        return head if isinstance(head, Request) else None

    @property
    def response_headers(self) -> Optional[Headers]:
        """Client side: the headers of the 101 response."""
        head = self._handshake_head()
        return head if isinstance(head, Headers) else None

    def release_handshake(self) -> None:
        """Lets the library free the handshake it keeps (the request's target and
        headers, or the response's headers: a few hundred bytes a connection).

        ``request`` and ``response_headers`` keep working from a copy made here; the
        subprotocol and ``remote_address`` are unaffected. Worth it for servers that
        hold many connections open. Idempotent.
        """
        with self._lock:
            h = self._handle()  # ConnectionClosed once released
            self._head = self._handshake_head_locked()
            _check(lib.ws_release_handshake(h))

    @property
    def remote_address(self) -> str:
        """The peer's address: "1.2.3.4:port" or "[::1]:port"."""
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
    """The Python value of a received message (str for text, bytes otherwise); frees it."""
    try:
        buf = _buffer(_msg_data(m), _msg_size(m))
        if _msg_type(m) == WS_TEXT:
            return str(buf, "utf-8")  # the library validated it
        return buf[:]
    finally:
        _msg_free(m)


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
            send_timeout: Optional[float] = None, receive_queue_limit: Optional[int] = None,
            ping_interval: Optional[float] = None, ping_timeout: Optional[float] = None,
            deliver_control: bool = False) -> WebSocket:
    """Opens a client WebSocket to ``url`` (``ws://host[:port]/path?query`` or
    ``wss://...``; IPv6 as ``ws://[::1]:port/``) and returns it, open.

    Use it as a context manager to close (1000; 1011 on an exception) and free it::

        with wscore.connect("ws://127.0.0.1:9001/chat", subprotocols=["chat"]) as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

    Arguments (times in seconds, None for no limit):

    - ``headers``: extra request headers, a dict or (name, value) pairs (not Host,
      Upgrade, Connection or Sec-WebSocket-*).
    - ``subprotocols``: offered in order of preference; ``ws.subprotocol`` is the
      server's pick (None if none).
    - ``ssl``: a dict for wss:// — ``cafile``/``capath`` (CAs to trust instead of
      the system store), ``certfile``/``keyfile`` (a client certificate),
      ``insecure=True`` (no verification; tests only).
    - ``timeout``: bounds the whole opening: DNS, TCP, TLS, HTTP upgrade (default 10).
    - ``close_timeout``: how long ``close()`` waits for the peer's answer (default 5).
    - ``max_message_size``: largest message accepted (default 16 MiB; the
      connection closes with 1009 beyond).
    - ``send_queue_limit``, ``send_timeout``: bytes that may wait unsent before
      ``send()`` blocks (default 16 MiB), and for how long it blocks then
      (default None: until there is room; 0: WouldBlock at once).
    - ``receive_queue_limit``: bytes of received messages that may wait unread
      before the connection stops reading from the socket, so that TCP holds
      the peer back (default 16 MiB); reading resumes once ``recv()`` has
      taken them down to half.
    - ``ping_interval``, ``ping_timeout``: keepalive pings after that much silence;
      the connection drops (1006) when no pong comes within ``ping_timeout``.
    - ``deliver_control``: also return pings and pongs from ``recv()`` (as bytes).

    Raises InvalidURL, ConnectError (DNS, refused, unreachable), TimeoutError,
    HandshakeError (``.status``, ``.headers``: the server answered but did not
    upgrade), TLSError (``str(e)`` has OpenSSL's reason).
    """
    opts = make_options(headers=headers, subprotocols=subprotocols, timeout=timeout,
                        close_timeout=close_timeout, max_message_size=max_message_size,
                        send_queue_limit=send_queue_limit, send_timeout=send_timeout,
                        receive_queue_limit=receive_queue_limit,
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
        """A descriptor readable exactly when ``accept(timeout=0)`` would not block."""
        return _check(lib.ws_server_fileno(self._srv))

    def accept(self, timeout: Optional[float] = None) -> WebSocket:
        """The next connection (pull mode), without running the handler. Raises
        TimeoutError after ``timeout`` seconds, Canceled once the server is closed."""
        out = _new(_CONN_PP)
        srv = self._srv
        _check(_sliced(lambda t: lib.ws_accept(srv, out, t), _ms(timeout)))
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
        out = _new(_CONN_PP)
        srv = self._srv
        while not self._closed.is_set():
            rc = _sliced(lambda t: lib.ws_accept(srv, out, t), -1)
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
          receive_queue_limit: Optional[int] = None,
          ping_interval: Optional[float] = None, ping_timeout: Optional[float] = None) -> Server:
    """Listens on host:port (port 0 picks a free one: ``server.port``) and runs
    ``handler(ws)`` on a thread of its own for each connection::

        def echo(ws):
            print(ws.request.path, ws.request.headers.get("user-agent"))
            for msg in ws:
                ws.send(msg)

        with wscore.serve(echo, "127.0.0.1", 9001) as server:
            server.serve_forever()          # until server.shutdown() from elsewhere, or Ctrl-C

    ``server.start()`` runs the accept loop on a background thread instead. The
    connection closes with 1000 when the handler returns and 1011 when it raises;
    leaving the ``with`` block (or ``shutdown()``) stops accepting and closes every
    connection with 1001. ``handler=None`` leaves accepting to ``server.accept()``.

    Arguments (times in seconds):

    - ``subprotocols``: the ones the server speaks; the client's first offer among
      them is chosen.
    - ``origins``: browser Origins allowed (others get HTTP 403); default: any.
    - ``headers``: added to every 101 response.
    - ``ssl``: ``{"certfile": ..., "keyfile": ...}`` serves wss://; add ``cafile``
      and ``verify_client=True`` to require client certificates.
    - ``max_message_size``, ``send_queue_limit``, ``send_timeout``,
      ``receive_queue_limit``, ``close_timeout``, ``ping_interval``,
      ``ping_timeout``: as for ``connect``.
    - ``handshake_timeout``: time a new connection has to send its upgrade
      request (default 10).

    Raises AddressInUse, ConnectError (host not resolved), TLSError (bad
    certificate or key).
    """
    opts = make_options(headers=headers, subprotocols=subprotocols, origins=origins, ssl=ssl,
                        max_message_size=max_message_size, handshake_timeout=handshake_timeout,
                        close_timeout=close_timeout, send_queue_limit=send_queue_limit,
                        send_timeout=send_timeout, receive_queue_limit=receive_queue_limit,
                        ping_interval=ping_interval, ping_timeout=ping_timeout)
    return Server(handler, host, port, opts)
