#!/usr/bin/env python3
"""The C library's behaviour that bindings/julia/src/WebSockets.jl relies on,
exercised with the binding's own call sequences (through cffi, since Julia
cannot run here): non-blocking receive/accept then a wait on the descriptor,
close-then-drain, the held answer to a peer's close (replies first), manual
upgrade for check_origin with the subprotocol chosen by the binding, wss://
with the binding's TLS options, the error codes the binding turns into
exceptions, and the close codes its tests expect. If the library changes one of these, the Julia
binding is wrong in a way no static check sees; this test says so.

Usage: test_c_contract.py  (WSCORE_LIBRARY names the library to test)
"""
import os
import select
import shutil
import subprocess
import sys
import tempfile
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
        elif isinstance(value, str):
            check(getattr(lib, "ws_options_set_" + name)(o, value.encode()) == 0, name)
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
    # The handler starts receiving at once: the state is OPEN from ws_upgrade_accept on.
    out = ffi.new("ws_message **")
    check(lib.ws_state(c) == C.WS_STATE_OPEN, "OPEN right after ws_upgrade_accept")
    check(lib.ws_receive(c, out, 0) == EAGAIN, "receive(0) right after ws_upgrade_accept is WS_EAGAIN, not WS_ESTATE")
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


def pair(**kw):
    """A server, one client and the server side of its connection."""
    srv, port = listen(**kw)
    t, box = in_thread(lambda: open_client(f"ws://127.0.0.1:{port}/"))
    rc, c = accept(srv)
    t.join(10)
    crc, cc = box["v"]
    assert rc == 0 and crc == 0, (rc, crc)
    return srv, c, cc


def test_held_close():
    """The peer's close behind unread messages (pull mode): the answer waits
    until the binding's receive has returned them and asks again, so replies
    go first; meanwhile the state stays OPEN; the descriptor wakes a waiting
    receive; a receive loop then sees WS_EAGAIN and, once closed, WS_ECLOSED."""
    srv, c, cc = pair()
    for m in (b"one", b"two"):
        lib.ws_send(cc, m, len(m), C.WS_TEXT)
    t, box = in_thread(lambda: lib.ws_close(cc, 4005, b"done"))   # close(ws) on the client
    time.sleep(0.3)
    check(lib.ws_state(c) == C.WS_STATE_OPEN, "held close: the server side stays OPEN while messages are unread")
    replies = []
    while True:
        rc, m = receive(c)
        if rc != 0:
            break
        replies.append(m)
        r = ("re:" + m).encode()
        check(lib.ws_send(c, r, len(r), C.WS_TEXT) == 0, f"a reply to {m!r} is accepted before the close")
    check(replies == ["one", "two"], f"held close: the messages before it are read first ({replies})")
    check(rc == ECLOSED and lib.ws_close_code(c) == 4005, f"then WS_ECLOSED with the peer's code ({rc})")
    t.join(10)
    check(box.get("v") == 0, f"the client's ws_close got the answer ({box.get('v')})")
    got = [receive(cc)[1] for _ in range(2)]
    check(got == ["re:one", "re:two"], f"the replies reached the client ahead of the close ({got})")
    check(receive(cc)[0] == ECLOSED, "then the client sees the close")
    lib.ws_free(cc)
    lib.ws_free(c)

    # The binding's close(ws) while the peer's close is held: answered at once, not after the close timeout.
    t, box = in_thread(lambda: open_client(f"ws://127.0.0.1:{lib.ws_server_port(srv)}/"))
    _, c = accept(srv)
    t.join(10)
    _, cc = box["v"]
    lib.ws_send(cc, b"x", 1, C.WS_TEXT)
    t, box = in_thread(lambda: lib.ws_close(cc, 1000, ffi.NULL))
    time.sleep(0.3)
    t0 = time.monotonic()
    rc = lib.ws_close(c, 1000, ffi.NULL)
    check(rc == 0 and time.monotonic() - t0 < 2, f"close while the peer's close is held: WS_OK at once ({rc})")
    check(receive(c) == (0, "x"), "the unread message stays readable after that close")
    check(receive(c)[0] == ECLOSED, "then WS_ECLOSED")
    t.join(10)
    lib.ws_free(cc)
    lib.ws_free(c)
    lib.ws_server_free(srv)


def test_send_while_closing():
    """send after our close started is WS_ESTATE with a state other than OPEN
    (the binding turns that into a WebSocketError), WS_ECLOSED once closed."""
    srv, c, cc = pair(close_timeout=500)
    # The server has not read "m", so it holds its answer to the client's close
    # (up to its close timeout): the client stays CLOSING meanwhile.
    lib.ws_send(cc, b"m", 1, C.WS_TEXT)
    t, box = in_thread(lambda: lib.ws_close(cc, 1000, ffi.NULL))
    time.sleep(0.15)
    rc = lib.ws_send(cc, b"late", 4, C.WS_TEXT)
    check(rc == C.WS_ESTATE and lib.ws_state(cc) == C.WS_STATE_CLOSING,
          f"send while closing: WS_ESTATE in state CLOSING ({rc}, {lib.ws_state(cc)})")
    check(lib.ws_close_code(cc) == 0, "no close code yet while closing (the binding then says 1006)")
    t.join(10)
    check(lib.ws_send(cc, b"late", 4, C.WS_TEXT) == ECLOSED, "send once closed: WS_ECLOSED")
    lib.ws_free(cc)
    lib.ws_free(c)
    lib.ws_server_free(srv)


def test_tls():
    """wss:// with the options the binding sets: server certfile/keyfile (and the
    PEM variants), client cafile, require_ssl_verification=false."""
    if shutil.which("openssl") is None:
        print("SKIP test_tls: no openssl to make test certificates")
        return
    d = tempfile.mkdtemp(prefix="wscore-julia-tls-")
    try:
        subprocess.run(["sh", os.path.join(HERE, "..", "tls", "make_certs.sh"), d], check=True)
        f = lambda n: os.path.join(d, n)  # noqa: E731
        for server_kw in ({"tls_cert_file": f("server.pem"), "tls_key_file": f("server.key")},
                          {"tls_cert_pem": open(f("server.pem")).read(), "tls_key_pem": open(f("server.key")).read()}):
            srv, port = listen(**server_kw)
            url = f"wss://127.0.0.1:{port}/"
            for client_kw, want in (({"tls_ca_file": f("ca.pem")}, 0), ({}, C.WS_ETLS),
                                    ({"tls_insecure_skip_verify": 1}, 0)):
                t, box = in_thread(lambda: open_client(url, **client_kw))
                if want == 0:
                    rc, c = accept(srv)
                t.join(10)
                crc, cc = box["v"]
                check(crc == want, f"wss client {sorted(client_kw)} with server {sorted(server_kw)}: {crc}, want {want}")
                if want == 0 and crc == 0:
                    check(lib.ws_is_tls(cc) == 1, "the client connection is TLS")
                    lib.ws_send(cc, b"sec", 3, C.WS_TEXT)
                    check(receive(c) == (0, "sec"), "a message crosses wss://")
                    lib.ws_free(c)
                lib.ws_free(cc)
            lib.ws_server_free(srv)
        o = lib.ws_options_new()
        check(lib.ws_options_set_tls_cert_file(o, f("server.pem").encode()) == 0, "cert set")
        out = ffi.new("ws_server **")
        check(lib.ws_listen(b"127.0.0.1", 0, o, out) == C.WS_ETLS, "a certificate without its key is WS_ETLS")
        lib.ws_options_free(o)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    for test in (test_manual_upgrade, test_close_keeps_messages_and_wakes_fileno, test_held_close,
                 test_send_while_closing, test_tls, test_codes_and_errors):
        try:
            test()
        except Exception as e:  # report and go on: each test is independent
            FAILS.append(f"{test.__name__}: {e!r}")
            print("FAIL:", test.__name__, repr(e))
    print(f"{PASSES} passed, {len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
