"""Loads libwscore through cffi in ABI mode (dlopen: no compiler at install).

Why ABI mode: measured (tests/bench/bench_python.py --calls), a cheap call costs
about 80 ns through ABI mode and 50 ns through a compiled API-mode module; for the
six calls of an echoed message that is about 0.2 us of the asyncio server's 2.1 us
per message. ABI mode needs no C compiler or python3-dev at install and serves
every Python version; the binding keeps calls per message few instead.

The library is found through $WSCORE_LIBRARY, else the build directories of the
source tree this package lives in, else the system's library path.

The cdef below mirrors include/wscore.h; tests/python/test_cdef.py checks that
every function of the header is declared here with the same signature.
"""
from __future__ import annotations

import ctypes.util
import glob
import os

from cffi import FFI

CDEF = """
typedef struct ws_options ws_options;
typedef struct ws_conn ws_conn;
typedef struct ws_server ws_server;
typedef struct ws_message ws_message;
typedef void (*ws_log_cb)(int level, const char *msg, void *user);
typedef void (*ws_open_cb)(ws_conn *ws, void *user);
typedef void (*ws_message_cb)(ws_conn *ws, int type, const void *data, size_t len, void *user);
typedef void (*ws_close_cb)(ws_conn *ws, int code, const char *reason, void *user);
typedef void (*ws_drain_cb)(ws_conn *ws, void *user);
typedef void (*ws_message_part_cb)(ws_conn *ws, int type, const void *data, size_t len, int flags,
                                   void *user);
typedef struct ws_callbacks {
  ws_open_cb on_open;
  ws_message_cb on_message;
  ws_close_cb on_close;
  ws_drain_cb on_drain;
  ws_message_part_cb on_message_part;
} ws_callbacks;

const char *ws_version(void);
unsigned ws_version_number(void);
const char *ws_strerror(int err);
const char *ws_err_name(int err);
int ws_set_logger(ws_log_cb cb, int level, void *user);

ws_options *ws_options_new(void);
void ws_options_free(ws_options *opts);
int ws_options_set_connect_timeout(ws_options *opts, int timeout_ms);
int ws_options_set_handshake_timeout(ws_options *opts, int timeout_ms);
int ws_options_set_close_timeout(ws_options *opts, int timeout_ms);
int ws_options_set_idle_timeout(ws_options *opts, int timeout_ms);
int ws_options_set_keepalive(ws_options *opts, int interval_ms, int timeout_ms);
int ws_options_set_max_message_size(ws_options *opts, uint64_t bytes);
int ws_options_set_max_handshake_size(ws_options *opts, size_t bytes);
int ws_options_set_send_queue_limit(ws_options *opts, size_t bytes);
int ws_options_set_receive_queue_limit(ws_options *opts, size_t bytes);
int ws_options_set_send_timeout(ws_options *opts, int timeout_ms);
int ws_options_add_header(ws_options *opts, const char *name, const char *value);
int ws_options_add_subprotocol(ws_options *opts, const char *protocol);
int ws_options_add_origin(ws_options *opts, const char *origin);
int ws_options_set_require_origin(ws_options *opts, int require);
int ws_options_set_deliver_control(ws_options *opts, int enable);
int ws_options_set_threads(ws_options *opts, int threads);
int ws_options_set_manual_upgrade(ws_options *opts, int enable);
int ws_options_set_tls_ca_file(ws_options *opts, const char *path);
int ws_options_set_tls_ca_dir(ws_options *opts, const char *path);
int ws_options_set_tls_cert_file(ws_options *opts, const char *path);
int ws_options_set_tls_key_file(ws_options *opts, const char *path);
int ws_options_set_tls_cert_pem(ws_options *opts, const char *pem);
int ws_options_set_tls_key_pem(ws_options *opts, const char *pem);
int ws_options_set_tls_verify_client(ws_options *opts, int enable);
int ws_options_set_tls_insecure_skip_verify(ws_options *opts, int enable);
int ws_options_set_callbacks(ws_options *opts, const ws_callbacks *cbs, size_t size, void *user);

int ws_open(const char *url, const ws_options *opts, ws_conn **out);
int ws_listen(const char *host, int port, const ws_options *opts, ws_server **out);
int ws_server_port(const ws_server *srv);
int ws_server_fileno(const ws_server *srv);
int ws_accept(ws_server *srv, ws_conn **out, int timeout_ms);
int ws_server_close(ws_server *srv);
void ws_server_free(ws_server *srv);
int ws_upgrade_accept(ws_conn *ws, const char *subprotocol);
int ws_upgrade_add_header(ws_conn *ws, const char *name, const char *value);
int ws_upgrade_reject(ws_conn *ws, int status, const void *body, size_t len);

int ws_receive(ws_conn *ws, ws_message **out, int timeout_ms);
const void *ws_message_data(const ws_message *msg);
size_t ws_message_size(const ws_message *msg);
int ws_message_type(const ws_message *msg);
void ws_message_free(ws_message *msg);
int ws_send(ws_conn *ws, const void *data, size_t len, int type);
int ws_send_fragment(ws_conn *ws, const void *data, size_t len, int type, int fin);
int ws_ping(ws_conn *ws, const void *data, size_t len);
int ws_pong(ws_conn *ws, const void *data, size_t len);

int ws_close(ws_conn *ws, int code, const char *reason);
int ws_close_code(const ws_conn *ws);
const char *ws_close_reason(const ws_conn *ws);
int ws_state(const ws_conn *ws);
int ws_fileno(const ws_conn *ws);
size_t ws_buffered_amount(const ws_conn *ws);
const char *ws_error_detail(const ws_conn *ws);
void ws_free(ws_conn *ws);
ws_conn *ws_retain(ws_conn *ws);
void ws_set_user_data(ws_conn *ws, void *data);
void *ws_get_user_data(const ws_conn *ws);

const char *ws_subprotocol(const ws_conn *ws);
int ws_is_server(const ws_conn *ws);
int ws_is_tls(const ws_conn *ws);
int ws_http_status(const ws_conn *ws);
const char *ws_request_target(const ws_conn *ws);
const char *ws_request_path(const ws_conn *ws);
const char *ws_request_query(const ws_conn *ws);
const char *ws_request_header(const ws_conn *ws, const char *name);
const char *ws_response_header(const ws_conn *ws, const char *name);
int ws_header_count(const ws_conn *ws);
const char *ws_header_name(const ws_conn *ws, int i);
const char *ws_header_value(const ws_conn *ws, int i);
const char *ws_peer_address(const ws_conn *ws);
int ws_release_handshake(ws_conn *ws);
"""

# Constants of the header (checked against it by tests/python/test_cdef.py).
WS_TEXT, WS_BINARY, WS_PING, WS_PONG = 1, 2, 9, 10
WS_OK, WS_EINVAL, WS_ETIMEDOUT, WS_EAGAIN, WS_ECLOSED, WS_EHANDSHAKE, WS_ETLS = 0, -1, -3, -4, -5, -6, -7
WS_ECANCELED = -20
WS_STATE_CONNECTING, WS_STATE_OPEN, WS_STATE_CLOSING, WS_STATE_CLOSED = 0, 1, 2, 3

ffi = FFI()
ffi.cdef(CDEF)


# The source tree this package lives in (bindings/python/wscore -> the repository root),
# or None for an installed copy.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
SOURCE_TREE = _ROOT if os.path.exists(os.path.join(_ROOT, "include", "wscore.h")) else None


def _candidates():
    """Where to look, in order: $WSCORE_LIBRARY (only there when set), the build
    directories of the source tree (``build*/src/api/``), the system's library path."""
    env = os.environ.get("WSCORE_LIBRARY")
    if env:
        yield env
        return
    if SOURCE_TREE:
        for build in sorted(glob.glob(os.path.join(SOURCE_TREE, "build*"))):
            for so in sorted(glob.glob(os.path.join(build, "src", "api", "libwscore.so*"))):
                yield so
    found = ctypes.util.find_library("wscore")
    if found:
        yield found
    yield "libwscore.so.0"


def _load():
    errors = []
    for path in _candidates():
        try:
            lib = ffi.dlopen(path)
        except OSError as e:  # try the next place
            errors.append(f"{path}: {e}")
            continue
        major = (lib.ws_version_number() >> 16) & 0xFF
        if major != ABI_MAJOR:
            errors.append(f"{path}: version {ffi.string(lib.ws_version()).decode()}, "
                          f"this binding needs {ABI_MAJOR}.x")
            continue
        return lib, path
    raise ImportError(
        "wscore: cannot load libwscore. Set WSCORE_LIBRARY to the path of libwscore.so, "
        "build the project (meson setup build && ninja -C build), or install it. Tried:\n  "
        + "\n  ".join(errors or ["(nothing)"])
    )


ABI_MAJOR = 0  # WSCORE_VERSION_MAJOR of the header the cdef mirrors
lib, library_path = _load()
