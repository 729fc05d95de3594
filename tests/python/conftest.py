"""Shared fixtures: the binding on sys.path, an echo server of ours, helpers to
start outside peers (Node ws) as subprocesses."""
import os
import resource
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import wscore  # noqa: E402

NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")

# Connection tests open many descriptors (socket + eventfd per connection, each side).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def echo_handler(ws):
    for msg in ws:
        ws.send(msg)


@pytest.fixture
def echo_server():
    with wscore.serve(echo_handler, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        server.start()
        yield server


@pytest.fixture
def url(echo_server):
    return f"ws://127.0.0.1:{echo_server.port}/"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throwaway PKI (tests/tls/make_certs.sh): pki("ca.pem") is a file's path."""
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), str(d)], check=True, timeout=60)
    return lambda name: str(d / name)


def peer_env(**extra):
    """The environment for an outside peer's process (Node, Chromium): ours,
    less the ASan runtime that an instrumented build preloads into this
    interpreter (it is no part of theirs, and Chromium hangs under it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    env.update(NODE_PATH=NODE_MODULES, **extra)
    return env


def needs(available, what):
    """A skip mark for tests that need an outside peer, for machines without it.
    The README's test command and CI install every peer and set
    WSCORE_REQUIRE_PEERS=1: there a missing peer fails the run instead."""
    if not available and os.environ.get("WSCORE_REQUIRE_PEERS") == "1":
        pytest.fail(f"{what} is not installed, and WSCORE_REQUIRE_PEERS=1 requires it "
                    "(.ci/install-deps installs it)", pytrace=False)
    return pytest.mark.skipif(not available, reason=f"{what} is not installed: run .ci/install-deps")


def node_available():
    return shutil.which("node") is not None and os.path.isdir(os.path.join(NODE_MODULES, "ws"))


class NodeProcess:
    """A Node script that prints one line 'READY <port>' (or anything) first."""

    def __init__(self, script, *args):
        env = peer_env()
        self.proc = subprocess.Popen(["node", "-e", script, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.first_line = self.proc.stdout.readline().strip()

    def finish(self, timeout=20):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"node did not finish: {err}")
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
