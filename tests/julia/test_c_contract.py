#!/usr/bin/env python3
"""The C library's behaviour that bindings/julia/src/WebSockets.jl relies on,
exercised with the binding's own call sequences (through cffi, since Julia
cannot run here): non-blocking receive/accept then a wait on the descriptor,
close-then-drain, manual upgrade for check_origin with the subprotocol chosen
by the binding, the error codes the binding turns into exceptions, and the
close codes its tests expect. If the library changes one of these, the Julia
binding is wrong in a way no static check sees; this test says so.

Usage: test_c_contract.py  (WSCORE_LIBRARY names the library to test)
"""
import os
import select
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))
sys.path.insert(0, HERE)
from wscore._lib import ffi, lib  # noqa: E402
from check_ccalls import header_constants  # noqa: E402


class C:
    """The header's constants (the cffi declarations carry only functions)."""


for _name, _value in header_constants(os.path.join(HERE, "..", "..", "include", "wscore.h")).items():
    setattr(C, _name, _value)
EAGAIN, ECLOSED, EINVAL, EHANDSHAKE = C.WS_EAGAIN, C.WS_ECLOSED, C.WS_EINVAL, C.WS_EHANDSHAKE
FAILS = []
PASSES = 0


def check(cond, what):
    global PASSES
    if cond:
        PASSES += 1
    else:
        FAILS.append(what)
        print("FAIL:", what)


def readable(fd, timeout_s):
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(int(timeout_s * 1000)))


def receive(ws, timeout_s=5.0):
    """WebSockets.receive: ws_receive(0), else wait on ws_fileno; (rc, data)."""
    out = ffi.new("ws_message **")
    deadline = time.monotonic() + timeout_s
    while True:
        rc = lib.ws_receive(ws, out, 0)
        if rc == 0:
            m = out[0]
            data = bytes(ffi.buffer(lib.ws_message_data(m), lib.ws_message_size(m)))
            kind = lib.ws_message_type(m)
            lib.ws_message_free(m)
            return 0, (data.decode() if kind == C.WS_TEXT else data)
        if rc != EAGAIN:
            return rc, None
        left = deadline - time.monotonic()
        if left <= 0 or not readable(lib.ws_fileno(ws), left):
            return EAGAIN, None


def accept(srv, timeout_s=5.0):
    """The accept loop: ws_accept(0), else wait on ws_server_fileno."""
    out = ffi.new("ws_conn **")
    deadline = time.monotonic() + timeout_s
    while True:
        rc = lib.ws_accept(srv, out, 0)
        if rc != EAGAIN:
            return rc, (out[0] if rc == 0 else None)
        left = deadline - time.monotonic()
        if left <= 0 or not readable(lib.ws_server_fileno(srv), left):
            return EAGAIN, None


def options(**kw):
    o = lib.ws_options_new()
    check(lib.ws_options_set_send_timeout(o, 0) == 0, "send timeout 0 accepted")
    for name, value in kw.items():
        if name == "subprotocols":
            for s in value:
                check(lib.ws_options_add_subprotocol(o, s.encode()) == 0, f"subprotocol {s}")
        elif name == "headers":
            for k, v in value:
                check(lib.ws_options_add_header(o, k.encode(), v.encode()) == 0, f"header {k}")
        else:
            check(getattr(lib, "ws_options_set_" + name)(o, value) == 0, name)
    return o


def listen(**kw):
    o = options(**kw)
    out = ffi.new("ws_server **")
    rc = lib.ws_listen(b"127.0.0.1", 0, o, out)
    lib.ws_options_free(o)
    assert rc == 0, rc
    return out[0], lib.ws_server_port(out[0])


def open_client(url, **kw):
    o = options(**kw)
    out = ffi.new("ws_conn **")
    rc = lib.ws_open(url.encode(), o, out)
    lib.ws_options_free(o)
    return rc, out[0]


def in_thread(f):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("v", f()), daemon=True)
    t.start()
    return t, box


def s(p):
    return "" if p == ffi.NULL else ffi.string(p).decode()


def test_manual_upgrade():
    """check_origin: the state is CONNECTING, the request readable, reject answers 403,
    accept with the client's spelling of a subprotocol it offered."""
    srv, port = listen(manual_upgrade=1, subprotocols=["chat"])
    url = f"ws://127.0.0.1:{port}/"
    t, box = in_thread(lambda: open_client(url, headers=[("Origin", "http://evil.example")]))
    rc, c = accept(srv)
    check(rc == 0 and lib.ws_state(c) == C.WS_STATE_CONNECTING, "manual upgrade: accept gives CONNECTING")
    check(s(lib.ws_request_header(c, b"origin")) == "http://evil.example", "manual upgrade: Origin readable")
    body = b"origin not allowed"
    check(lib.ws_upgrade_reject(c, 403, body, len(body)) == 0, "reject 403")
    t.join(10)
    crc, cc = box["v"]
    check(crc == EHANDSHAKE and lib.ws_http_status(cc) == 403, f"client sees 403 (rc {crc})")
    lib.ws_free(cc)
    lib.ws_free(c)

    t, box = in_thread(lambda: open_client(url, subprotocols=["nope", "chat"]))
    rc, c = accept(srv)
    offered = s(lib.ws_request_header(c, b"Sec-WebSocket-Protocol"))
    check([x.strip() for x in offered.split(",")] == ["nope", "chat"], f"offers readable: {offered!r}")
    check(lib.ws_upgrade_accept(c, b"chat") == 0, "upgrade_accept with a subprotocol")
    t.join(10)
    crc, cc = box["v"]
    check(crc == 0 and s(lib.ws_subprotocol(cc)) == "chat", "client sees the chosen subprotocol")
    check(lib.ws_send(c, b"hi", 2, C.WS_TEXT) == 0, "send after a manual accept")
    check(receive(cc) == (0, "hi"), "client receives after a manual accept")
    lib.ws_free(cc)
    lib.ws_free(c)
    lib.ws_server_free(srv)


def test_close_keeps_messages_and_wakes_fileno():
    """close(ws): ws_close, then ws_receive(0) drains what arrived, then WS_ECLOSED;
    the descriptor is readable once closed; the code is the peer's (echoed)."""
    srv, port = listen()
    t, box = in_thread(lambda: open_client(f"ws://127.0.0.1:{port}/"))
    rc, c = accept(srv)
    t.join(10)
    crc, cc = box["v"]
    check(receive(cc, 0.05)[0] == EAGAIN, "receive(0) on a quiet connection is WS_EAGAIN")
    check(not readable(lib.ws_fileno(cc), 0), "fileno not readable while nothing waits")
    for m in (b"one", b"two"):
        lib.ws_send(c, m, len(m), C.WS_TEXT)
    time.sleep(0.2)
    check(readable(lib.ws_fileno(cc), 1), "fileno readable once a message waits")
    rc = lib.ws_close(cc, 4001, b"custom")
    check(rc == 0, f"ws_close answered (rc {rc})")
    check(readable(lib.ws_fileno(cc), 0), "fileno readable once closed")
    check(receive(cc) == (0, "one") and receive(cc) == (0, "two"), "messages before the close stay readable")
    check(receive(cc)[0] == ECLOSED, "then WS_ECLOSED")
    check(lib.ws_close_code(cc) == 4001 and s(lib.ws_close_reason(cc)) == "custom",
          "the peer echoes the code and reason")
    check(lib.ws_state(cc) == C.WS_STATE_CLOSED, "state CLOSED")
    check(lib.ws_close(cc, 1000, ffi.NULL) == ECLOSED, "closing twice is WS_ECLOSED")
    # The server side saw the client's code.
    rc, _ = receive(c)
    check(rc == ECLOSED and lib.ws_close_code(c) == 4001, "server sees 4001")
    lib.ws_free(cc)
    lib.ws_free(c)
    lib.ws_server_free(srv)


def test_codes_and_errors():
    """The codes the Julia tests expect: 1005 for a close without code, 1009 over the
    limit, 1001 for the idle timeout and for a server shutdown, EINVAL for headers
    wscore writes itself, EURL and ECONNREFUSED."""
    srv, port = listen(max_message_size=1000, idle_timeout=300)
    url = f"ws://127.0.0.1:{port}/"

    t, box = in_thread(lambda: open_client(url))
    _, c = accept(srv)
    t.join(10)
    _, cc = box["v"]
    lib.ws_close(cc, 0, ffi.NULL)   # close(ws, CloseFrameBody(1005, "")) sends no code
    rc, _ = receive(c)
    check(rc == ECLOSED and lib.ws_close_code(c) == 1005, f"no code reads as 1005 ({lib.ws_close_code(c)})")
    lib.ws_free(cc)
    lib.ws_free(c)

    t, box = in_thread(lambda: open_client(url))
    _, c = accept(srv)
    t.join(10)
    _, cc = box["v"]
    big = b"y" * 1001
    lib.ws_send(cc, big, len(big), C.WS_TEXT)
    rc, _ = receive(cc)
    check(rc == ECLOSED and lib.ws_close_code(cc) == 1009, f"over the limit: 1009 ({lib.ws_close_code(cc)})")
    lib.ws_free(cc)
    lib.ws_free(c)

    t, box = in_thread(lambda: open_client(url))
    _, c = accept(srv)
    t.join(10)
    _, cc = box["v"]
    t0 = time.monotonic()
    rc, _ = receive(cc, 5)
    check(rc == ECLOSED and lib.ws_close_code(cc) == 1001 and 0.2 < time.monotonic() - t0 < 5,
          f"idle timeout: 1001 ({lib.ws_close_code(cc)})")
    lib.ws_free(cc)
    lib.ws_free(c)

    t, box = in_thread(lambda: open_client(url))
    _, c = accept(srv)
    t.join(10)
    _, cc = box["v"]
    lib.ws_server_close(srv)
    rc, _ = accept(srv)
    check(rc == C.WS_ECANCELED, "accept after ws_server_close is WS_ECANCELED")
    check(readable(lib.ws_server_fileno(srv), 0), "server fileno readable once closed")
    rc, _ = receive(cc)
    check(rc == ECLOSED and lib.ws_close_code(cc) == 1001, "server shutdown: clients see 1001")
    rc, _ = receive(c)
    check(rc == ECLOSED, "server shutdown: the server side is closed too")
    lib.ws_free(cc)
    lib.ws_free(c)
    lib.ws_server_free(srv)

    o = lib.ws_options_new()
    check(lib.ws_options_add_header(o, b"Sec-WebSocket-Key", b"x") == EINVAL, "Sec-WebSocket-* header refused")
    check(lib.ws_options_add_header(o, b"Origin", b"http://a.example") == 0, "Origin header allowed")
    check(lib.ws_options_set_max_message_size(o, 0) == EINVAL, "max message size 0 refused")
    lib.ws_options_free(o)
    rc, cc = open_client("ws://")
    check(rc == C.WS_EURL and ffi.string(lib.ws_err_name(rc)) == b"WS_EURL", f"ws:// is WS_EURL ({rc})")
    lib.ws_free(cc)
    rc, cc = open_client(f"ws://127.0.0.1:{port}/")   # the server is gone
    check(rc == C.WS_ECONNREFUSED, f"closed port is WS_ECONNREFUSED ({rc})")
    lib.ws_free(cc)


def main():
    for test in (test_manual_upgrade, test_close_keeps_messages_and_wakes_fileno, test_codes_and_errors):
        try:
            test()
        except Exception as e:  # report and go on: each test is independent
            FAILS.append(f"{test.__name__}: {e!r}")
            print("FAIL:", test.__name__, repr(e))
    print(f"{PASSES} passed, {len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
