"""Exceptions: one class per C error code, in a small hierarchy."""
from __future__ import annotations

import builtins
from typing import Mapping, Optional

from ._lib import WS_ECLOSED, ffi, lib


class WebSocketError(Exception):
    """Base of every wscore error. ``errno`` is the negative WS_E* code, ``name`` its name."""

    def __init__(self, errno: int, message: Optional[str] = None, detail: str = ""):
        self.errno = errno
        self.name = ffi.string(lib.ws_err_name(errno)).decode()
        text = message or ffi.string(lib.ws_strerror(errno)).decode()
        if detail:
            text = f"{text}: {detail}"
        super().__init__(text)


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

    def __init__(self, errno: int, status: int, headers: Mapping[str, str], detail: str = ""):
        self.status = status
        self.headers = headers  # case-insensitive (wscore.Headers)
        super().__init__(errno, None, detail)


class TLSError(WebSocketError):
    """WS_ETLS: TLS failed (certificate verification, handshake)."""


class ProtocolError(WebSocketError):
    """WS_EPROTO: the peer broke RFC 6455."""


class MessageTooBig(WebSocketError):
    """WS_ETOOBIG."""


class ConnectionClosed(WebSocketError):
    """The connection is closed. ``code`` and ``reason`` are the peer's (1006: dropped)."""

    def __init__(self, code: int, reason: str):
        self.code = code
        self.reason = reason
        WebSocketError.__init__(self, WS_ECLOSED, f"connection closed: {code} {reason}".rstrip())


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
}

NORMAL_CLOSE_CODES = (1000, 1001, 1005)


def closed_error(code: int, reason: str) -> ConnectionClosed:
    cls = ConnectionClosedOK if code in NORMAL_CLOSE_CODES else ConnectionClosedError
    return cls(code, reason)


def error_for(rc: int, detail: str = "") -> WebSocketError:
    """The exception for a negative return code."""
    name = ffi.string(lib.ws_err_name(rc)).decode()
    cls = _BY_NAME.get(name, WebSocketError)
    return cls(rc, None, detail)
