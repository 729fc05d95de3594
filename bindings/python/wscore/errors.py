"""Exceptions: one class per C error code, in a small hierarchy."""
from __future__ import annotations

import builtins
from typing import Mapping, Optional

from ._lib import WS_ECLOSED, ffi, lib


class WebSocketError(Exception):
    """Base of every wscore error. ``errno`` is the negative WS_E* code, ``name`` its name."""

    def __init__(self, errno: int, message: Optional[str] = None, detail: str = ""):
        text = message or ffi.string(lib.ws_strerror(errno)).decode()
        if detail:
            text = f"{text}: {detail}"
        super().__init__(text)
        # After the base __init__: OSError's (for the subclasses that are also
        # OSErrors) resets errno to None.
        self.errno = errno
        self.name = ffi.string(lib.ws_err_name(errno)).decode()


class InvalidArgument(WebSocketError, ValueError):
    """WS_EINVAL: a bad argument (code, size, option value)."""


class InvalidURL(WebSocketError, ValueError):
    """WS_EURL: not a ws:// or wss:// URL."""


class InvalidUTF8(WebSocketError, ValueError):
    """WS_EUTF8: text that is not valid UTF-8."""


class InvalidState(WebSocketError):
    """WS_ESTATE: the operation does not fit the connection's state."""


class WouldBlock(WebSocketError, BlockingIOError):
    """WS_EAGAIN: a non-blocking call found nothing ready (or no room)."""


class TimeoutError(WebSocketError, builtins.TimeoutError):  # noqa: A001 - mirrors the builtin
    """WS_ETIMEDOUT. Also an instance of the builtin ``TimeoutError``."""


class ConnectError(WebSocketError, ConnectionError):
    """WS_ERESOLVE, WS_ECONNREFUSED, WS_ECONNECT: the TCP connection could not be made."""


class HandshakeError(WebSocketError):
    """WS_EHANDSHAKE: the server did not upgrade. ``status`` and ``headers`` tell what it said."""

    def __init__(self, errno: int, status: int = 0, headers: Optional[Mapping[str, str]] = None,
                 detail: str = ""):
        self.status = status  # 0 when no HTTP response came
        self.headers = headers if headers is not None else {}  # case-insensitive (wscore.Headers)
        super().__init__(errno, None, detail)


class TLSError(WebSocketError):
    """WS_ETLS: TLS failed (certificate verification, handshake)."""


class ProtocolError(WebSocketError):
    """WS_EPROTO: the peer broke RFC 6455."""


class MessageTooBig(WebSocketError):
    """WS_ETOOBIG: a message larger than max_message_size (the connection closes with 1009)."""


class ConnectionLost(WebSocketError, ConnectionError):
    """WS_EIO: the connection broke (reset, write error) outside a close handshake."""


class AddressInUse(WebSocketError, OSError):
    """WS_EADDRINUSE: the server's port is taken."""


class SystemCallError(WebSocketError, OSError):
    """WS_ESYS: the operating system refused (descriptors exhausted, ...); see the message."""


class NotSupported(WebSocketError):
    """WS_ENOTSUP: the operation does not exist in this mode."""


class Canceled(WebSocketError):
    """WS_ECANCELED: the server was closed while waiting for a connection."""


class OutOfMemory(WebSocketError, MemoryError):
    """WS_ENOMEM."""


class ConnectionClosed(WebSocketError):
    """The connection is closed. ``code`` and ``reason`` are the peer's (1006: dropped)."""

    def __init__(self, code: int, reason: str):
        self.code = code
        self.reason = reason
        WebSocketError.__init__(self, WS_ECLOSED, None, f"{code} {reason}".rstrip())


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000 normal, 1001 going away, 1005 no status)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or dropped (1006)."""


_BY_NAME = {
    "WS_EINVAL": InvalidArgument,
    "WS_EURL": InvalidURL,
    "WS_EUTF8": InvalidUTF8,
    "WS_ESTATE": InvalidState,
    "WS_EAGAIN": WouldBlock,
    "WS_ETIMEDOUT": TimeoutError,
    "WS_ERESOLVE": ConnectError,
    "WS_ECONNREFUSED": ConnectError,
    "WS_ECONNECT": ConnectError,
    "WS_ETLS": TLSError,
    "WS_EPROTO": ProtocolError,
    "WS_ETOOBIG": MessageTooBig,
    "WS_EIO": ConnectionLost,
    "WS_EADDRINUSE": AddressInUse,
    "WS_ESYS": SystemCallError,
    "WS_ENOTSUP": NotSupported,
    "WS_ECANCELED": Canceled,
    "WS_ENOMEM": OutOfMemory,
    # WS_ECLOSED becomes ConnectionClosed (with the peer's code) where a handle is at hand;
    # without one (error_for) it is a ConnectionClosedError with code 1006.
}

NORMAL_CLOSE_CODES = (1000, 1001, 1005)


def closed_error(code: int, reason: str) -> ConnectionClosed:
    cls = ConnectionClosedOK if code in NORMAL_CLOSE_CODES else ConnectionClosedError
    return cls(code, reason)


def error_for(rc: int, detail: str = "") -> WebSocketError:
    """The exception for a negative return code."""
    name = ffi.string(lib.ws_err_name(rc)).decode()
    if name == "WS_ECLOSED":
        return ConnectionClosedError(1006, detail)
    if name == "WS_EHANDSHAKE":
        return HandshakeError(rc, detail=detail)
    cls = _BY_NAME.get(name, WebSocketError)
    return cls(rc, None, detail)
