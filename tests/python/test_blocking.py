"""The blocking API end to end: every C ABI function through the binding."""
import os
import select
import socket
import threading
import time

import pytest

import wscore
from wscore import _lib


def test_text_binary_empty_and_sizes(url):
    with wscore.connect(url) as ws:
        for n in (0, 1, 125, 126, 65535, 65536):
            data = os.urandom(n)
            ws.send(data)
            assert ws.recv(timeout=5) == data
            text = "é" * (n // 2)
            ws.send(text)
            assert ws.recv(timeout=5) == text
        assert ws.recv.__doc__


def test_16_mib_message(url):
    big = os.urandom(16 << 20)
    with wscore.connect(url, max_message_size=32 << 20) as ws:
        ws.send(big)
        assert ws.recv(timeout=30) == big


def test_fragments_from_iterables(url):
    with wscore.connect(url) as ws:
        ws.send(["frag", "ment", "ed ✓"])
        assert ws.recv(timeout=5) == "fragmented ✓"
        ws.send(iter([b"\x00", bytearray(b"\x01"), memoryview(b"\x02")]))
        assert ws.recv(timeout=5) == b"\x00\x01\x02"
        with pytest.raises(TypeError):
            ws.send(["text", b"bytes"])
        with pytest.raises(ValueError):
            ws.send([])
        with pytest.raises(TypeError):
            ws.send(12)
        # A list is checked before its first fragment goes out: the connection is fine.
        ws.send("after the refusals")
        assert ws.recv(timeout=5) == "after the refusals"


def test_ping_pong_and_control_delivery(echo_server):
    url = f"ws://127.0.0.1:{echo_server.port}/"
    with wscore.connect(url, deliver_control=True) as ws:
        ws.ping(b"hello?")
        assert ws.recv(timeout=5) == b"hello?"  # the pong's payload
        ws.pong("unsolicited")
        ws.send("still fine")
        assert ws.recv(timeout=5) == "still fine"
        with pytest.raises(wscore.InvalidArgument):
            ws.ping(b"x" * 126)


def test_close_paths_client_initiated(url):
    ws = wscore.connect(url)
    assert ws.close(4000, "bye") is True
    assert ws.close_code == 4000
    assert ws.closed
    with pytest.raises(wscore.ConnectionClosedError) as e:
        ws.recv(timeout=1)
    assert e.value.code == 4000
    with pytest.raises(wscore.ConnectionClosed):
        ws.send("late")
    assert ws.close() is False  # already closed: nothing to do
    ws.release()
    ws.release()
    with pytest.raises(wscore.ConnectionClosed):
        ws.send("after release")


def test_close_paths_server_initiated():
    def handler(ws):
        ws.send("goodbye")
        ws.close(1001, "server leaving")

    with wscore.serve(handler, "127.0.0.1", 0) as srv:
        srv.start()
        with wscore.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            assert list(ws) == ["goodbye"]  # iteration ends quietly on 1001
            assert ws.close_code == 1001
            assert ws.close_reason == "server leaving"


def test_abnormal_close_raises_from_iteration():
    def handler(ws):
        ws.close(4500, "app error")

    with wscore.serve(handler, "127.0.0.1", 0) as srv:
        srv.start()
        with wscore.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            with pytest.raises(wscore.ConnectionClosedError) as e:
                for _ in ws:
                    pass
            assert (e.value.code, e.value.reason) == (4500, "app error")


def test_handler_exception_closes_1011():
    def handler(ws):
        raise RuntimeError("boom")

    with wscore.serve(handler, "127.0.0.1", 0) as srv:
        srv.start()
        with wscore.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            with pytest.raises(wscore.ConnectionClosedError) as e:
                ws.recv(timeout=5)
            assert e.value.code == 1011


def test_invalid_close_arguments(url):
    with wscore.connect(url) as ws:
        for code in (999, 1005, 1006, 1015, 5000):
            with pytest.raises(wscore.InvalidArgument):
                ws.close(code)
        with pytest.raises(wscore.InvalidArgument):
            ws.close(1000, "r" * 124)


def test_timeouts(url):
    with wscore.connect(url) as ws:
        with pytest.raises(wscore.WouldBlock):
            ws.recv(timeout=0)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):  # the builtin catches it
            ws.recv(timeout=0.2)
        assert time.monotonic() - t0 >= 0.18


def test_connect_errors():
    with pytest.raises(wscore.InvalidURL):
        wscore.connect("http://example.com/")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(wscore.ConnectError):
        wscore.connect(f"ws://127.0.0.1:{port}/")
    with pytest.raises(ConnectionError):
        wscore.connect(f"ws://127.0.0.1:{port}/")


def test_handshake_error_has_status():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer():
        c, _ = srv.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.1 404 Not Found\r\nX-Reason: missing\r\nContent-Length: 0\r\n\r\n")
        c.close()

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(wscore.HandshakeError) as e:
        wscore.connect(f"ws://127.0.0.1:{srv.getsockname()[1]}/nope")
    t.join()
    srv.close()
    assert e.value.status == 404
    assert e.value.headers["x-reason"] == "missing"


def test_request_and_subprotocol_visible_to_server():
    seen = {}

    def handler(ws):
        seen["request"] = ws.request
        seen["subprotocol"] = ws.subprotocol
        ws.send("ok")

    with wscore.serve(handler, "127.0.0.1", 0, subprotocols=["v2", "v1"]) as srv:
        srv.start()
        with wscore.connect(f"ws://127.0.0.1:{srv.port}/room/7?x=1", subprotocols=["v1", "v2"],
                            headers={"X-Token": "abc"}) as ws:
            assert ws.recv(timeout=5) == "ok"
            assert ws.subprotocol == "v1"
            assert ws.request is None
            assert ws.response_headers["sec-websocket-protocol"] == "v1"
    req = seen["request"]
    assert (req.path, req.query, req.target) == ("/room/7", "x=1", "/room/7?x=1")
    assert req.headers["x-token"] == "abc"
    assert seen["subprotocol"] == "v1"


def test_release_handshake_keeps_a_copy():
    from wscore._lib import lib
    seen = {}

    def handler(ws):
        before = ws.request
        ws.release_handshake()
        ws.release_handshake()  # idempotent
        # The library's copy is gone; the object answers from its own.
        seen["lib"] = (lib.ws_header_count(ws._h), wscore._conn._s(lib.ws_request_target(ws._h)))
        seen["request"] = (before, ws.request)
        seen["address"] = ws.remote_address
        ws.send("ok")

    with wscore.serve(handler, "127.0.0.1", 0) as srv:
        srv.start()
        with wscore.connect(f"ws://127.0.0.1:{srv.port}/a/b?c=d", headers={"X-Token": "abc"}) as ws:
            upgrade = ws.response_headers["upgrade"]
            ws.release_handshake()
            assert lib.ws_header_count(ws._h) == 0
            assert ws.response_headers["upgrade"] == upgrade
            assert ws.request is None
            assert ws.recv(timeout=5) == "ok"
        with pytest.raises(wscore.ConnectionClosed):
            ws.release_handshake()  # after release()
    before, after = seen["request"]
    assert after == before
    assert (after.target, after.headers["x-token"]) == ("/a/b?c=d", "abc")
    assert seen["lib"] == (0, "")
    assert seen["address"].startswith("127.0.0.1:")


def test_origin_allowlist():
    with wscore.serve(lambda ws: ws.send("in"), "127.0.0.1", 0, origins=["http://ok.example"]) as srv:
        srv.start()
        url = f"ws://127.0.0.1:{srv.port}/"
        with pytest.raises(wscore.HandshakeError) as e:
            wscore.connect(url, headers={"Origin": "http://evil.example"})
        assert e.value.status == 403
        with wscore.connect(url, headers={"Origin": "http://ok.example"}) as ws:
            assert ws.recv(timeout=5) == "in"


def test_threads_send_while_one_receives(url):
    with wscore.connect(url) as ws:
        n_threads, per = 4, 300

        def sender(k):
            for i in range(per):
                ws.send(f"{k}:{i}")

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        last = [-1] * n_threads
        for _ in range(n_threads * per):
            k, i = map(int, ws.recv(timeout=10).split(":"))
            assert i == last[k] + 1
            last[k] = i
        for t in threads:
            t.join()


def test_fileno_readiness(url):
    with wscore.connect(url) as ws:
        fd = ws.fileno()
        assert select.select([fd], [], [], 0)[0] == []
        ws.send("ping")
        assert select.select([fd], [], [], 5)[0] == [fd]
        assert ws.recv(timeout=0) == "ping"
        assert select.select([fd], [], [], 0)[0] == []


UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _non_reading_peer(srv):
    raw = socket.create_connection(("127.0.0.1", srv.port))
    raw.sendall(UPGRADE)
    ws = srv.accept(timeout=5)
    raw.recv(1024)  # the 101, then never read again
    return raw, ws


def test_backpressure_nonblocking_send():
    # A peer that never reads: the queue fills and send raises WouldBlock at once.
    with wscore.serve(None, "127.0.0.1", 0, send_queue_limit=256 * 1024, send_timeout=0) as srv:
        raw, ws = _non_reading_peer(srv)
        t0 = time.monotonic()
        with pytest.raises(wscore.WouldBlock):
            for _ in range(100000):
                ws.send(b"x" * 65536)
        # Refused at once, not after waiting. (buffered_amount is not checked here: the
        # loop keeps moving bytes into the kernel's buffers after the refusal.)
        assert time.monotonic() - t0 < 5
        raw.close()
        ws.release()


def test_send_timeout_option():
    with wscore.serve(None, "127.0.0.1", 0, send_queue_limit=65536, send_timeout=0.2) as srv:
        raw, ws = _non_reading_peer(srv)
        with pytest.raises(TimeoutError):
            for _ in range(100000):
                t0 = time.monotonic()
                ws.send(b"y" * 65536)
        assert time.monotonic() - t0 >= 0.15
        raw.close()
        ws.release()


def test_server_stop_closes_connections_1001(echo_server):
    ws = wscore.connect(f"ws://127.0.0.1:{echo_server.port}/")
    echo_server.shutdown()
    with pytest.raises(wscore.ConnectionClosedOK) as e:
        ws.recv(timeout=5)
    assert e.value.code == 1001
    ws.release()


def test_library_found_and_version():
    assert wscore.__version__ == "0.1.0"
    assert "libwscore" in wscore.library_path


class _Interrupted(Exception):
    pass


def _interrupt_main_after(seconds):
    """Sends SIGINT to this process after `seconds`; the handler raises _Interrupted
    in the main thread (Python runs signal handlers there only)."""
    import signal
    old = signal.signal(signal.SIGINT, lambda *a: (_ for _ in ()).throw(_Interrupted()))
    t = threading.Timer(seconds, os.kill, args=(os.getpid(), signal.SIGINT))
    t.start()
    return lambda: (t.cancel(), signal.signal(signal.SIGINT, old))


def test_signal_interrupts_a_blocking_recv_and_accept(url):
    # A wait inside the library is not interrupted by a signal: the binding waits in
    # slices on the main thread so that Ctrl-C (KeyboardInterrupt) gets through.
    assert threading.current_thread() is threading.main_thread()
    with wscore.connect(url) as ws:
        restore = _interrupt_main_after(0.3)
        try:
            with pytest.raises(_Interrupted):
                ws.recv()  # no timeout: would wait forever
        finally:
            restore()
        ws.send("still usable")
        assert ws.recv(timeout=5) == "still usable"
    with wscore.serve(None, "127.0.0.1", 0) as srv:
        restore = _interrupt_main_after(0.3)
        try:
            with pytest.raises(_Interrupted):
                srv.serve_forever()
        finally:
            restore()


def test_sliced_wait_keeps_the_timeout(url):
    with wscore.connect(url) as ws:
        t0 = time.monotonic()
        with pytest.raises(wscore.TimeoutError):
            ws.recv(timeout=0.5)  # longer than one slice
        assert time.monotonic() - t0 >= 0.45
        ws.send("late")
        assert ws.recv(timeout=0.5) == "late"


def test_send_accepts_bytes_like_and_subclasses(url):
    import array

    class Text(str):
        def __str__(self):
            return "not this"

    class Blob(bytes):
        pass

    with wscore.connect(url) as ws:
        ws.send(bytearray(b"ba"))
        assert ws.recv(timeout=5) == b"ba"
        ws.send(memoryview(b"xmvx")[1:3])
        assert ws.recv(timeout=5) == b"mv"
        a = array.array("i", [1, 2, 3])
        ws.send(memoryview(a))
        assert ws.recv(timeout=5) == a.tobytes()  # all 12 bytes, not 3
        ws.send(Text("sub ✓"))
        assert ws.recv(timeout=5) == "sub ✓"
        ws.send(Blob(b"\x01\x02"))
        assert ws.recv(timeout=5) == b"\x01\x02"
        with pytest.raises(TypeError):
            ws.send([b"a", 3])


def test_option_mistakes_are_refused_clearly(url):
    with pytest.raises(TypeError, match="cafile"):
        wscore.connect(url, ssl={"ca_file": "/x.pem"})  # a typo must not fall back to defaults
    with pytest.raises(TypeError):
        wscore.connect(url, ssl="/x.pem")
    with pytest.raises(TypeError, match="list"):
        wscore.connect(url, subprotocols="chat")
    with pytest.raises(TypeError, match="list"):
        wscore.serve(None, "127.0.0.1", 0, origins="http://a.example")


def test_close_after_release_is_a_no_op(url):
    ws = wscore.connect(url)
    ws.release()
    assert ws.close() is False
    assert ws.closed
