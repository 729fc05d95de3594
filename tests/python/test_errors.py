"""Every WS_E* code of the header maps to its own exception class, with the
code, the C name and the C text, and with the builtin base a Python user expects."""
import builtins
import os
import re

import pytest

import wscore
from wscore.errors import error_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER_CODES = re.findall(r'XX\((\w+), (-\d+), "([^"]+)"\)',
                          open(os.path.join(ROOT, "include", "wscore.h"), encoding="utf-8").read())

BUILTIN_BASE = {
    "EINVAL": ValueError, "EURL": ValueError, "EUTF8": ValueError, "ENOMEM": MemoryError,
    "ETIMEDOUT": builtins.TimeoutError, "EAGAIN": BlockingIOError, "ERESOLVE": ConnectionError,
    "ECONNREFUSED": ConnectionError, "ECONNECT": ConnectionError, "EIO": ConnectionError,
    "EADDRINUSE": OSError, "ESYS": OSError,
}


def test_header_lists_twenty_codes():
    assert len(HEADER_CODES) == 20


@pytest.mark.parametrize("name,value,text", HEADER_CODES)
def test_every_code_has_a_specific_class(name, value, text):
    e = error_for(int(value), "the detail")
    assert type(e) is not wscore.WebSocketError, f"WS_{name} falls back to the base class"
    assert isinstance(e, wscore.WebSocketError)
    assert (e.errno, e.name) == (int(value), f"WS_{name}")
    assert text in str(e) and "the detail" in str(e)
    if name in BUILTIN_BASE:
        assert isinstance(e, BUILTIN_BASE[name])


def test_classes_are_distinct_where_users_tell_them_apart():
    classes = {type(error_for(int(v))) for n, v, _ in HEADER_CODES}
    # ERESOLVE, ECONNREFUSED and ECONNECT share ConnectError (told apart by .name).
    assert len(classes) == len(HEADER_CODES) - 2


def test_unknown_code_is_the_base_class():
    e = error_for(-999)
    assert type(e) is wscore.WebSocketError and e.name == "WS_UNKNOWN"


def test_closed_hierarchy():
    assert issubclass(wscore.ConnectionClosedOK, wscore.ConnectionClosed)
    assert issubclass(wscore.ConnectionClosedError, wscore.ConnectionClosed)
    assert issubclass(wscore.TimeoutError, builtins.TimeoutError)
    h = error_for(-6)
    assert isinstance(h, wscore.HandshakeError) and h.status == 0 and dict(h.headers) == {}
