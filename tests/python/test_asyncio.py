"""The asyncio API: add_reader on the handles' descriptors, no thread per connection."""
import asyncio
import os
import threading
import time

import pytest

import wscore
import wscore.asyncio as wsa


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


def test_echo_roundtrip_and_close():
    async def main():
        server = await wsa.serve(echo, "127.0.0.1", 0)
        async with wsa.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("hello ✓")
            assert await ws.recv() == "hello ✓"
            await ws.send(b"\x00" * 100000)
            assert await ws.recv() == b"\x00" * 100000
            await ws.send(["a", "b"])
            assert await ws.recv() == "ab"
        assert ws.close_code == 1000
        server.close()
        await server.wait_closed()

    run(main())


def test_async_iteration_ends_on_normal_close():
    async def handler(ws):
        for i in range(3):
            await ws.send(str(i))
        await ws.close(1000, "done")

    async def main():
        async with await wsa.serve(handler, "127.0.0.1", 0) as server:
            ws = await wsa.connect(f"ws://127.0.0.1:{server.port}/")
            got = [m async for m in ws]
            assert got == ["0", "1", "2"]
            assert (ws.close_code, ws.close_reason) == (1000, "done")
            ws.release()

    run(main())


def test_server_close_sends_1001():
    async def main():
        server = await wsa.serve(echo, "127.0.0.1", 0)
        ws = await wsa.connect(f"ws://127.0.0.1:{server.port}/")
        server.close()
        with pytest.raises(wscore.ConnectionClosedOK) as e:
            await ws.recv()
        assert e.value.code == 1001
        await server.wait_closed()
        ws.release()

    run(main())


def test_send_waits_under_backpressure_without_blocking_the_loop():
    # A slow reader (10 ms a message) on a thread of its own, whose connection
    # stops reading once 1 MiB waits unread: the handler's sends must wait for
    # it, and the loop keeps ticking meanwhile.
    N = 128
    received = []
    progress_when_sent = []

    def slow_reader(port):
        with wscore.connect(f"ws://127.0.0.1:{port}/", receive_queue_limit=1 << 20) as ws:
            for _ in range(N):
                m = ws.recv(timeout=20)
                received.append((len(m), m[:1]))
                time.sleep(0.01)

    async def handler(ws):
        for i in range(N):
            await ws.send(bytes([i]) * (1 << 20))
        progress_when_sent.append(len(received))
        await asyncio.sleep(0.5)

    async def main():
        server = await wsa.serve(handler, "127.0.0.1", 0, send_queue_limit=1 << 20)
        t = threading.Thread(target=slow_reader, args=(server.port,))
        t.start()
        ticks = 0
        while t.is_alive():
            await asyncio.sleep(0.01)
            ticks += 1
        t.join()
        server.close()
        await server.wait_closed()
        return ticks

    ticks = run(main())
    assert received == [(1 << 20, bytes([i])) for i in range(N)]
    # Held back: the last send returned only once the reader was near the end
    # (what is ahead of it is its 1 MiB, the socket buffers and the 1 MiB
    # send queue); without flow control all of it goes out at once,
    # long before the reader is half way.
    assert progress_when_sent and progress_when_sent[0] >= N // 2
    # The reader took at least N x 10 ms; a blocked loop would not have ticked.
    assert ticks >= N // 4


def test_thousand_connections_one_loop():
    n = 1000

    async def main():
        server = await wsa.serve(echo, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/"

        async def client(i):
            ws = await wsa.connect(url)
            await ws.send(f"m{i}")
            reply = await ws.recv()
            return ws, reply

        results = await asyncio.gather(*(client(i) for i in range(n)))
        assert [r for _, r in results] == [f"m{i}" for i in range(n)]
        assert threading.active_count() < 100  # no thread per connection
        for ws, _ in results:
            ws.release()
        server.close()
        await server.wait_closed()

    run(main())


def test_peer_close_after_unread_messages_is_answered_after_the_replies():
    # The client sends its messages and its close at once; the library holds the
    # answer to that close until the asyncio handler read them all (the descriptor
    # stays readable meanwhile), so every reply goes out before the close.
    n = 200
    got = []

    async def main():
        server = await wsa.serve(echo, "127.0.0.1", 0)

        def client():
            ws = wscore.connect(f"ws://127.0.0.1:{server.port}/")
            for i in range(n):
                ws.send(f"m{i}")
            answered = ws.close(1000, "done")
            got.extend(ws)  # the replies that arrived meanwhile stay readable
            ws.release()
            return answered

        answered = await asyncio.get_running_loop().run_in_executor(None, client)
        server.close()
        await server.wait_closed()
        return answered

    assert run(main()) is True
    assert got == [f"m{i}" for i in range(n)]


def test_held_close_while_handler_is_busy_does_not_spin_the_loop(monkeypatch):
    # While the handler sleeps between messages, the peer's close is pending and
    # the descriptor stays readable: the reader must drop itself instead of firing
    # on every loop iteration, and the handler still reads every message first.
    calls = []
    orig = wsa.WebSocket._on_readable

    def counting(self):
        calls.append(1)
        orig(self)

    monkeypatch.setattr(wsa.WebSocket, "_on_readable", counting)
    seen = []

    async def slow_echo(ws):
        async for msg in ws:
            await asyncio.sleep(0.05)
            seen.append(msg)
            await ws.send(msg)

    async def main():
        server = await wsa.serve(slow_echo, "127.0.0.1", 0)

        def client():
            with wscore.connect(f"ws://127.0.0.1:{server.port}/", close_timeout=10) as ws:
                for i in range(10):
                    ws.send(str(i))
                assert ws.close() is True
                return list(ws)

        replies = await asyncio.get_running_loop().run_in_executor(None, client)
        server.close()
        await server.wait_closed()
        return replies

    replies = run(main())
    assert seen == replies == [str(i) for i in range(10)]
    # A spinning reader would run thousands of times in the handler's 0.5 s of sleeps.
    assert len(calls) < 60


def test_two_tasks_receiving_on_one_connection():
    async def main():
        server = await wsa.serve(echo, "127.0.0.1", 0)
        async with wsa.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            t1 = asyncio.ensure_future(ws.recv())
            t2 = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0.05)
            await ws.send("a")
            await ws.send("b")
            assert sorted(await asyncio.gather(t1, t2)) == ["a", "b"]
        server.close()
        await server.wait_closed()

    run(main())


def test_cancelled_recv_loses_no_message_and_release_wakes_waiters():
    async def main():
        server = await wsa.serve(echo, "127.0.0.1", 0)
        ws = await wsa.connect(f"ws://127.0.0.1:{server.port}/")
        t = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0.05)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await ws.send("kept")
        assert await ws.recv() == "kept"

        waiting = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0.05)
        ws.release()  # frees the handle: the waiting task learns it is closed
        with pytest.raises(wscore.ConnectionClosed):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(wscore.ConnectionClosed):
            await ws.send("after release")
        server.close()
        await server.wait_closed()

    run(main())


def test_fragmented_send_waits_under_backpressure():
    # A fragmented message (an iterable) under a full send queue waits fragment by
    # fragment instead of failing half-sent.
    received = []

    def slow_reader(port):
        with wscore.connect(f"ws://127.0.0.1:{port}/", max_message_size=64 << 20) as ws:
            for _ in range(8):
                time.sleep(0.05)
                received.append(ws.recv(timeout=20))

    async def handler(ws):
        for i in range(8):
            await ws.send([bytes([i]) * (256 << 10) for _ in range(4)])
        await asyncio.sleep(0.5)

    async def main():
        server = await wsa.serve(handler, "127.0.0.1", 0, send_queue_limit=256 << 10)
        await asyncio.get_running_loop().run_in_executor(None, slow_reader, server.port)
        server.close()
        await server.wait_closed()

    run(main())
    assert received == [bytes([i]) * (1 << 20) for i in range(8)]


def test_async_iteration_raises_on_abnormal_close_and_keeps_properties():
    async def handler(ws):
        await ws.send("x")
        await ws.close(4001, "bad")

    async def main():
        async with await wsa.serve(handler, "127.0.0.1", 0) as server:
            ws = await wsa.connect(f"ws://127.0.0.1:{server.port}/p?q=1")
            got = []
            with pytest.raises(wscore.ConnectionClosedError) as e:
                async for m in ws:
                    got.append(m)
            assert got == ["x"] and (e.value.code, e.value.reason) == (4001, "bad")
            ws.release()
            assert (ws.close_code, ws.close_reason) == (4001, "bad")  # kept after release
            with pytest.raises(wscore.ConnectionClosedError):
                await ws.recv()

    run(main())
