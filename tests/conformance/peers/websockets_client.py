#!/usr/bin/env python3
"""Autobahn client testee on the Python `websockets` library (a peer nobody
here wrote: it checks the suite). Usage: websockets_client.py URL AGENT"""
import asyncio
import sys
import urllib.parse

import websockets


async def main(url, agent):
    agent = urllib.parse.quote(agent, safe="")
    async with websockets.connect(f"{url}/getCaseCount") as ws:
        count = int(await ws.recv())
    for n in range(1, count + 1):
        try:
            async with websockets.connect(f"{url}/runCase?case={n}&agent={agent}", max_size=None,
                                          compression=None, ping_interval=None) as ws:
                async for message in ws:
                    await ws.send(message)
        except websockets.exceptions.WebSocketException:
            pass  # the case judges how the connection ended
    async with websockets.connect(f"{url}/updateReports?agent={agent}") as ws:
        try:
            await ws.recv()
        except websockets.exceptions.ConnectionClosed:
            pass


asyncio.run(main(sys.argv[1], sys.argv[2]))
