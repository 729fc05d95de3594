"""The C examples of docs/examples and the `wscore` CLI, built by meson, run as a
user would: servers on a free port, clients against them, signals to stop."""
import os
import re
import signal
import subprocess
import sys

import pytest

import wscore

BUILD = os.environ.get("WSCORE_BUILD_DIR", "")
need_build = pytest.mark.skipif(not BUILD, reason="run through meson test (WSCORE_BUILD_DIR)")


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"listening on (?:[\d.]+:)?(\d+)", line)
    assert m, f"no 'listening on' from {argv}: {line!r}"
    return p, int(m.group(1))


def stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    return p.returncode, out, err


@need_build
@pytest.mark.parametrize("server", ["echo_server", "callback_echo_server"])
def test_examples_client_against_example_servers(server):
    p, port = start([os.path.join(BUILD, "docs", "examples", server), "0", "20"])
    try:
        r = subprocess.run([os.path.join(BUILD, "docs", "examples", "client"), f"ws://127.0.0.1:{port}/"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert "text: hello, wscore ✓" in r.stdout
        assert "binary: 4 bytes" in r.stdout
        assert "closed: the server answered, code 1000" in r.stdout
    finally:
        p.kill()
        p.communicate()


@need_build
@pytest.mark.parametrize("mode", ["callback", "blocking"])
def test_cli_echo_and_connect(mode):
    cli = os.path.join(BUILD, "src", "cli", "wscore")
    p, port = start([cli, "echo", "--port", "0", "--mode", mode])
    try:
        r = subprocess.run([cli, "connect", f"ws://127.0.0.1:{port}/", "-H", "X-Test: 1"],
                           input="first line\nsecond ✓\n", capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["< first line", "< second ✓"]
        assert "closed: 1000" in r.stderr
        # A client still connected when the server stops gets 1001.
        ws = wscore.connect(f"ws://127.0.0.1:{port}/")
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\x01\x02"  # binary stays binary
        rc, out, err = stop(p)
        assert rc == 0, err
        with pytest.raises(wscore.ConnectionClosedOK) as e:
            ws.recv(timeout=5)
        assert e.value.code == 1001
        ws.release()
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


@need_build
def test_cli_help_and_errors():
    cli = os.path.join(BUILD, "src", "cli", "wscore")
    for sub in ("connect", "echo", "serve"):
        r = subprocess.run([cli, sub, "--help"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and "usage: wscore " + sub in r.stdout
    r = subprocess.run([cli, "connect", "http://nope/"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "invalid URL" in r.stderr
    r = subprocess.run([cli, "bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
