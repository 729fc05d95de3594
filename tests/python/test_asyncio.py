"""The asyncio API: add_reader on the handles' descriptors, no thread per connection."""
import asyncio
import os
import threading

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
    # A slow reader on a thread of its own; the loop keeps ticking meanwhile.
    received = []

    def slow_reader(port):
        with wscore.connect(f"ws://127.0.0.1:{port}/") as ws:
            for _ in range(64):
                received.append(len(ws.recv(timeout=20)))

    async def handler(ws):
        for _ in range(64):
            await ws.send(b"z" * (1 << 20))
        await asyncio.sleep(0.5)

    async def main():
        server = await wsa.serve(handler, "127.0.0.1", 0)
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
    assert received == [1 << 20] * 64
    assert ticks > 3


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
