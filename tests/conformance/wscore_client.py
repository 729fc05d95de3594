#!/usr/bin/env python3
"""Autobahn client testee on wscore's Python binding (blocking API): asks the
fuzzing server for the case count, runs every case echoing each message (text
as text, binary as binary), then asks for the reports.

    wscore_client.py URL AGENT [CAFILE]
        CAFILE: the CA to trust for wss://; WSCORE_LIBRARY may name the libwscore
        to load; bindings/python is found from this checkout.
"""
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
import wscore  # noqa: E402


def main(url, agent, cafile=None):
    agent = urllib.parse.quote(agent, safe="")
    tls = {"cafile": cafile} if cafile else None
    with wscore.connect(f"{url}/getCaseCount", ssl=tls) as ws:
        count = int(ws.recv(timeout=10))
    for n in range(1, count + 1):
        try:
            with wscore.connect(f"{url}/runCase?case={n}&agent={agent}", max_message_size=64 << 20, ssl=tls) as ws:
                for message in ws:
                    ws.send(message)
        except wscore.WebSocketError:
            pass  # the fuzzing server judges how the connection ended
    with wscore.connect(f"{url}/updateReports?agent={agent}", ssl=tls) as ws:
        for _ in ws:
            pass


if __name__ == "__main__":
    main(*sys.argv[1:4])
