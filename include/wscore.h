/*
 * wscore.h — the one public header of wscore, a WebSocket library (RFC 6455)
 * with a C++ core on a libuv event loop, behind a stable C ABI.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *  - Errors are negative int codes from WS_ERRNO_MAP; WS_OK (0) is success.
 *    ws_strerror() and ws_err_name() describe them. WebSocket close codes
 *    (1000-4999) are reported by ws_close_code(), never mixed with error codes.
 *  - Handles are opaque. Each is freed only by its own *_free function, which
 *    may be called from any thread, also while the library's loop still works on
 *    the handle (internal reference counts keep it alive until the loop is done).
 *    *_free(NULL) is a no-op.
 *  - Every function may be called from any thread. One thread may ws_receive()
 *    while others ws_send() on the same connection.
 *  - Blocking calls take timeout_ms: -1 waits forever, 0 polls (WS_EAGAIN when
 *    nothing is ready), > 0 waits at most that many milliseconds (WS_ETIMEDOUT).
 *  - Strings are NUL-terminated UTF-8. Returned `const char *` are owned by the
 *    handle they come from and stay valid until that handle is freed, unless
 *    the comment says otherwise.
 *  - Nothing here is a C++ type and no C++ exception ever leaves the library.
 *    The header compiles as C99 and as C++.
 */
#ifndef WSCORE_H
#define WSCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define WS_EXTERN __declspec(dllimport)
#elif defined(__GNUC__)
#define WS_EXTERN __attribute__((visibility("default")))
#else
#define WS_EXTERN
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define WSCORE_VERSION_MAJOR 0
#define WSCORE_VERSION_MINOR 1
#define WSCORE_VERSION_PATCH 0
#define WSCORE_VERSION_HEX \
  ((WSCORE_VERSION_MAJOR << 16) | (WSCORE_VERSION_MINOR << 8) | WSCORE_VERSION_PATCH)

/* "0.1.0". Static storage. */
WS_EXTERN const char *ws_version(void);
/* WSCORE_VERSION_HEX of the library actually loaded. */
WS_EXTERN unsigned ws_version_number(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* XX(name, value, text). Values are part of the ABI and never change. */
#define WS_ERRNO_MAP(XX)                                                     \
  XX(EINVAL, -1, "invalid argument")                                         \
  XX(ENOMEM, -2, "out of memory")                                            \
  XX(ETIMEDOUT, -3, "operation timed out")                                   \
  XX(EAGAIN, -4, "operation would block")                                    \
  XX(ECLOSED, -5, "connection is closed")                                    \
  XX(EHANDSHAKE, -6, "WebSocket handshake failed")                           \
  XX(ETLS, -7, "TLS error")                                                  \
  XX(ERESOLVE, -8, "host name could not be resolved")                        \
  XX(ECONNREFUSED, -9, "connection refused")                                 \
  XX(ECONNECT, -10, "could not connect")                                     \
  XX(EIO, -11, "connection lost")                                            \
  XX(EPROTO, -12, "WebSocket protocol error")                                \
  XX(ETOOBIG, -13, "message too big")                                        \
  XX(EUTF8, -14, "text is not valid UTF-8")                                  \
  XX(ESTATE, -15, "operation not valid in this state")                       \
  XX(EURL, -16, "invalid URL")                                               \
  XX(EADDRINUSE, -17, "address already in use")                              \
  XX(ESYS, -18, "system error")                                              \
  XX(ENOTSUP, -19, "operation not supported")                                \
  XX(ECANCELED, -20, "operation canceled")

typedef enum ws_errno {
  WS_OK = 0,
#define WS_ERRNO_ENUM_(name, value, text) WS_##name = (value),
  WS_ERRNO_MAP(WS_ERRNO_ENUM_)
#undef WS_ERRNO_ENUM_
  WS_ERRNO_LAST_ = -21
} ws_errno;

/* Text of an error code ("invalid argument"); "unknown error" for others.
 * Static storage. */
WS_EXTERN const char *ws_strerror(int err);
/* Name of an error code ("WS_EINVAL"); "WS_UNKNOWN" for others. Static storage. */
WS_EXTERN const char *ws_err_name(int err);

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

/* Message types: the RFC 6455 opcodes. */
#define WS_TEXT 1
#define WS_BINARY 2
#define WS_PING 9  /* delivered by ws_receive only with ws_options_set_deliver_control */
#define WS_PONG 10 /* likewise */

/* Connection states (ws_state). */
#define WS_STATE_CONNECTING 0
#define WS_STATE_OPEN 1
#define WS_STATE_CLOSING 2
#define WS_STATE_CLOSED 3

/* Close codes (RFC 6455 7.4.1) most programs need. */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_NO_STATUS 1005       /* never sent: the peer's close had no code */
#define WS_CLOSE_ABNORMAL 1006        /* never sent: the connection dropped */
#define WS_CLOSE_INVALID_PAYLOAD 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_EXTENSION 1010
#define WS_CLOSE_INTERNAL_ERROR 1011
#define WS_CLOSE_TLS_FAILED 1015      /* never sent */

/* Log levels (ws_set_logger). */
#define WS_LOG_ERROR 1
#define WS_LOG_WARN 2
#define WS_LOG_INFO 3
#define WS_LOG_DEBUG 4

/* ------------------------------------------------------------------------ */
/* Handles                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct ws_options ws_options; /* configuration for ws_open / ws_listen */
typedef struct ws_conn ws_conn;       /* one WebSocket connection (client or server side) */
typedef struct ws_server ws_server;   /* a listening server */
typedef struct ws_message ws_message; /* one received message */

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/* Called for each log line at or below the chosen level, from the thread that
 * logs (often the loop thread): keep it short and do not block. `msg` is
 * borrowed for the duration of the call. */
typedef void (*ws_log_cb)(int level, const char *msg, void *user);

/* Installs a process-wide logger (NULL removes it; the default logs nothing).
 * Returns WS_OK or WS_EINVAL for a level outside 0..WS_LOG_DEBUG. */
WS_EXTERN int ws_set_logger(ws_log_cb cb, int level, void *user);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/* A new options object with the defaults below, or NULL when out of memory.
 * Free with ws_options_free. ws_open/ws_listen copy what they need, so the
 * options may be freed or changed right after them. Not thread-safe: do not
 * change one options object from two threads at once. */
WS_EXTERN ws_options *ws_options_new(void);
WS_EXTERN void ws_options_free(ws_options *opts);

/* Every setter returns WS_OK, or WS_EINVAL for a NULL object or a value out of range. */

/* Client: TCP connect, and the whole ws_open (DNS+TCP+TLS+HTTP). Default 10000 ms; -1 none. */
WS_EXTERN int ws_options_set_connect_timeout(ws_options *opts, int timeout_ms);
/* Server: time a new connection has to complete its upgrade request. Default 10000 ms. */
WS_EXTERN int ws_options_set_handshake_timeout(ws_options *opts, int timeout_ms);
/* ws_close: how long to wait for the peer's close frame; also how long the
 * answer to the peer's close waits for a pull-mode application to read the
 * messages before it (see ws_receive). Default 5000 ms. */
WS_EXTERN int ws_options_set_close_timeout(ws_options *opts, int timeout_ms);
/* Close a connection (1001) that received nothing for this long. Default -1 (never). */
WS_EXTERN int ws_options_set_idle_timeout(ws_options *opts, int timeout_ms);
/* Send a ping every interval_ms of silence; drop the connection (close code
 * 1006) when no pong (or other data) arrives within timeout_ms. 0 turns it off
 * (default). */
WS_EXTERN int ws_options_set_keepalive(ws_options *opts, int interval_ms, int timeout_ms);
/* Largest message (after joining fragments) accepted from the peer; larger
 * ones close the connection with 1009. Default 16 MiB. 0 is invalid. */
WS_EXTERN int ws_options_set_max_message_size(ws_options *opts, uint64_t bytes);
/* Largest HTTP upgrade request/response head. Default 16 KiB; 431 beyond (server). */
WS_EXTERN int ws_options_set_max_handshake_size(ws_options *opts, size_t bytes);
/* Bytes that may wait in a connection's send queue before ws_send blocks
 * (or returns WS_EAGAIN, see send_timeout). Default 16 MiB. A single message
 * larger than the limit is still accepted into an empty queue. */
WS_EXTERN int ws_options_set_send_queue_limit(ws_options *opts, size_t bytes);
/* Receive flow control (ws_receive): once received messages of this many
 * payload bytes wait unread, the connection stops reading its socket, so the
 * peer is held back by TCP instead of memory growing; it reads again when the
 * application has taken them down to half. Pings are answered late meanwhile,
 * and the keepalive and idle timeouts count the pause as activity. A single
 * message larger than the limit is still received. Default 16 MiB. 0 is
 * invalid. No effect in callback mode (each message is handed over at once). */
WS_EXTERN int ws_options_set_receive_queue_limit(ws_options *opts, size_t bytes);
/* How long ws_send/ws_send_fragment/ws_ping/ws_pong wait for room in a full send
 * queue: -1 forever (default), 0 never (WS_EAGAIN), > 0 ms (WS_ETIMEDOUT). */
WS_EXTERN int ws_options_set_send_timeout(ws_options *opts, int timeout_ms);
/* Client: add a request header (not Host/Upgrade/Connection/Sec-WebSocket-*).
 * Server: add a header to every 101 response. Copies both strings. */
WS_EXTERN int ws_options_add_header(ws_options *opts, const char *name, const char *value);
/* Client: offer this subprotocol (in order of preference). Server: support it
 * (the first of the client's offers that the server supports is chosen). */
WS_EXTERN int ws_options_add_subprotocol(ws_options *opts, const char *protocol);
/* Server: accept browsers only from this Origin (exact, case-insensitive match,
 * e.g. "http://localhost:8080"). With none added every origin is accepted.
 * Requests with no Origin header (non-browser clients) are accepted unless
 * ws_options_set_require_origin(opts, 1). Refused origins get HTTP 403. */
WS_EXTERN int ws_options_add_origin(ws_options *opts, const char *origin);
WS_EXTERN int ws_options_set_require_origin(ws_options *opts, int require);
/* Deliver pings and pongs to ws_receive as WS_PING/WS_PONG messages (pings are
 * still answered automatically). Default 0. */
WS_EXTERN int ws_options_set_deliver_control(ws_options *opts, int enable);
/* Server: number of loop threads, 1..256. Default 1. With more than 1 the
 * server has one listening socket per thread sharing the port through
 * SO_REUSEPORT (the kernel spreads connections over them); each connection
 * stays on one thread, so its callbacks never run concurrently. Loop 0 is
 * shared with clients and other servers. Caveat of SO_REUSEPORT: another
 * socket of the same user that also sets it may bind the same port. */
WS_EXTERN int ws_options_set_threads(ws_options *opts, int threads);
/* Server: hold each upgrade request for the application's decision: ws_accept
 * returns the connection in WS_STATE_CONNECTING with its request readable, and
 * the application calls ws_upgrade_accept or ws_upgrade_reject. Default 0. */
WS_EXTERN int ws_options_set_manual_upgrade(ws_options *opts, int enable);

/* TLS (wss://). Paths are copied. PEM text is copied. Files are read by
 * ws_open / ws_listen, which answer WS_ETLS when they cannot be used.
 * Client: the CA file/dir replace the system store (default: the system
 * store); cert+key are a client certificate for mutual TLS; the host name (or
 * IP address) of the URL is verified and sent as SNI.
 * Server: any certificate or key set makes ws_listen a wss server (both are
 * needed, and must match: else WS_ETLS, never a silent fallback to plain text). */
WS_EXTERN int ws_options_set_tls_ca_file(ws_options *opts, const char *path);
WS_EXTERN int ws_options_set_tls_ca_dir(ws_options *opts, const char *path);
WS_EXTERN int ws_options_set_tls_cert_file(ws_options *opts, const char *path);
WS_EXTERN int ws_options_set_tls_key_file(ws_options *opts, const char *path);
WS_EXTERN int ws_options_set_tls_cert_pem(ws_options *opts, const char *pem);
WS_EXTERN int ws_options_set_tls_key_pem(ws_options *opts, const char *pem);
/* Server: ask for and verify a client certificate against the CA file/dir. */
WS_EXTERN int ws_options_set_tls_verify_client(ws_options *opts, int enable);
/* Client: DANGEROUS, for tests only: accept any server certificate and host name. */
WS_EXTERN int ws_options_set_tls_insecure_skip_verify(ws_options *opts, int enable);

/* ------------------------------------------------------------------------ */
/* Callback mode (C programs that want the last microsecond)                */
/* ------------------------------------------------------------------------ */

/* All callbacks run on the library's loop thread. Inside them ws_send,
 * ws_send_fragment, ws_ping, ws_pong and ws_close (which does not block there)
 * write directly, without a thread hop. Never call a blocking function with a
 * timeout other than 0 from a callback. A connection handed to on_open is
 * owned by the library: call ws_retain to keep it beyond on_close. */
typedef void (*ws_open_cb)(ws_conn *ws, void *user);
/* `data` is borrowed: valid only during the call. `type` is WS_TEXT or WS_BINARY
 * (or WS_PING/WS_PONG with deliver_control). */
typedef void (*ws_message_cb)(ws_conn *ws, int type, const void *data, size_t len, void *user);
/* The connection is closed: `code` is the peer's close code (1005 when it gave
 * none, 1006 when the connection dropped); `reason` is borrowed. */
typedef void (*ws_close_cb)(ws_conn *ws, int code, const char *reason, void *user);
/* The send queue fell below the limit again after a WS_EAGAIN. */
typedef void (*ws_drain_cb)(ws_conn *ws, void *user);
/* Streaming receive: with on_message_part set, text and binary messages are
 * not joined but handed over in parts, as their bytes arrive (a part is what
 * one read brought of the payload, whatever the peer's frames were), so a
 * large message needs no buffer of its size and can be forwarded while it
 * is still arriving. `flags`: WS_PART_FIRST on a message's first part,
 * WS_PART_LAST on its last (a message that arrived whole is one part with
 * both). `data` is borrowed: valid only during the call. max_message_size
 * and UTF-8 hold for the message as a whole and are checked as it passes: a
 * text part may end inside a UTF-8 sequence, and a message found invalid or
 * too large closes the connection (1007/1009) after its earlier parts were
 * handed over. on_message then gets only pings and pongs (deliver_control). */
typedef void (*ws_message_part_cb)(ws_conn *ws, int type, const void *data, size_t len, int flags,
                                   void *user);
#define WS_PART_FIRST 1
#define WS_PART_LAST 2

typedef struct ws_callbacks {
  ws_open_cb on_open;
  ws_message_cb on_message;
  ws_close_cb on_close;
  ws_drain_cb on_drain;
  ws_message_part_cb on_message_part; /* a later member: callers built without it pass the shorter size */
} ws_callbacks;

/* Server (ws_listen) or client (ws_open): run in callback mode. `size` is
 * sizeof(ws_callbacks) as the caller compiled it, so that later versions may
 * add members. NULL members are allowed. In callback mode ws_accept and
 * ws_receive return WS_ENOTSUP; messages go to on_message only. The struct is
 * copied. */
WS_EXTERN int ws_options_set_callbacks(ws_options *opts, const ws_callbacks *cbs, size_t size,
                                       void *user);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

/* Opens a client connection: parses `url` (ws://host[:port]/path?query or
 * wss://..., IPv6 as ws://[::1]:port/), resolves, connects, does TLS for wss,
 * sends the upgrade request and checks the 101 response. Blocks at most the
 * connect timeout. `opts` may be NULL for defaults.
 * Ownership: *out receives a connection to free with ws_free. On failure *out
 * is NULL, except for WS_EHANDSHAKE and WS_ETLS, where it is a closed
 * connection kept for diagnostics (ws_http_status, ws_response_header,
 * ws_error_detail); free it too. (ws_free(NULL) is a no-op, so always freeing
 * *out is correct.)
 * Errors: WS_EINVAL, WS_EURL, WS_ERESOLVE, WS_ECONNREFUSED, WS_ECONNECT,
 * WS_ETIMEDOUT, WS_ETLS, WS_EHANDSHAKE, WS_EIO, WS_ENOMEM. */
WS_EXTERN int ws_open(const char *url, const ws_options *opts, ws_conn **out);

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

/* Listens on host:port ("0.0.0.0", "::", "127.0.0.1", or a name; port 0 picks a
 * free port). TLS (wss) when a certificate and key are set in `opts`.
 * *out: free with ws_server_free. Does not block.
 * Errors: WS_EINVAL, WS_ERESOLVE, WS_EADDRINUSE, WS_ETLS (bad cert/key), WS_ESYS, WS_ENOMEM. */
WS_EXTERN int ws_listen(const char *host, int port, const ws_options *opts, ws_server **out);
/* The bound port (useful after port 0), or WS_EINVAL. */
WS_EXTERN int ws_server_port(const ws_server *srv);
/* A file descriptor that is readable exactly when ws_accept would not block
 * (a connection is waiting, or the server is closed). Owned by the server: do
 * not read or close it. WS_ENOTSUP in callback mode. */
WS_EXTERN int ws_server_fileno(const ws_server *srv);
/* Takes the next upgraded connection (pull mode). Blocks up to timeout_ms.
 * *out: free with ws_free. Errors: WS_EAGAIN (timeout 0), WS_ETIMEDOUT,
 * WS_ECANCELED (server closed), WS_ENOTSUP (callback mode), WS_EINVAL. */
WS_EXTERN int ws_accept(ws_server *srv, ws_conn **out, int timeout_ms);
/* Stops listening and closes every connection of this server with 1001.
 * Wakes blocked ws_accept calls (WS_ECANCELED). Does not block. Idempotent. */
WS_EXTERN int ws_server_close(ws_server *srv);
/* Closes (as ws_server_close) and releases the server. */
WS_EXTERN void ws_server_free(ws_server *srv);

/* Manual upgrade (ws_options_set_manual_upgrade): answer a pending request.
 * `subprotocol` may be NULL (none) and must be one the client offered.
 * Errors: WS_ESTATE (not pending), WS_EINVAL. */
WS_EXTERN int ws_upgrade_accept(ws_conn *ws, const char *subprotocol);
/* Adds a header to this connection's 101 response (before ws_upgrade_accept). */
WS_EXTERN int ws_upgrade_add_header(ws_conn *ws, const char *name, const char *value);
/* Answers with `status` (100..599, not 101), an optional body of len bytes
 * (copied) and closes. The connection is then WS_STATE_CLOSED; free it. */
WS_EXTERN int ws_upgrade_reject(ws_conn *ws, int status, const void *body, size_t len);

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* Waits up to timeout_ms for the next message (fragments joined; pings
 * answered inside). *out: free with ws_message_free.
 * When the peer closes (or breaks the protocol) while messages it sent before
 * are still unread, the library answers only once the application read them
 * and asked for more (or the close timeout passed), so that replies sent
 * meanwhile go out ahead of the close, in order; the state stays
 * WS_STATE_OPEN until then.
 * Errors: WS_EAGAIN (timeout 0), WS_ETIMEDOUT, WS_ECLOSED (the close handshake
 * completed or the connection dropped: see ws_close_code/ws_close_reason;
 * every message received before the close is returned first), WS_ENOTSUP
 * (callback mode), WS_EINVAL. */
WS_EXTERN int ws_receive(ws_conn *ws, ws_message **out, int timeout_ms);
/* The payload (NULL-safe; never NULL for a valid message, even when empty).
 * For WS_TEXT it is valid UTF-8 and followed by a NUL byte not counted in size. */
WS_EXTERN const void *ws_message_data(const ws_message *msg);
WS_EXTERN size_t ws_message_size(const ws_message *msg);
/* WS_TEXT, WS_BINARY, WS_PING or WS_PONG; WS_EINVAL for NULL. */
WS_EXTERN int ws_message_type(const ws_message *msg);
WS_EXTERN void ws_message_free(ws_message *msg);

/* Sends one message of `type` WS_TEXT or WS_BINARY. Copies the data (or writes it
 * straight to the socket). Text must be valid UTF-8 (WS_EUTF8 otherwise).
 * Blocks only when the send queue is full (see send_timeout).
 * Errors: WS_EINVAL, WS_EUTF8, WS_ESTATE (a fragmented message is in progress,
 * or the close has started), WS_ECLOSED, WS_EAGAIN, WS_ETIMEDOUT. */
WS_EXTERN int ws_send(ws_conn *ws, const void *data, size_t len, int type);
/* Sends one fragment: the first fragment's `type` (WS_TEXT or WS_BINARY) sets
 * the message type, later fragments must pass the same type; fin != 0 ends the
 * message. Text is validated across fragments (a fragment may end inside a
 * multi-byte character; the whole message must be valid when fin is set).
 * Errors as ws_send, and WS_ESTATE for a type change mid-message. */
WS_EXTERN int ws_send_fragment(ws_conn *ws, const void *data, size_t len, int type, int fin);
/* Control frames: at most 125 bytes of data (WS_EINVAL beyond). */
WS_EXTERN int ws_ping(ws_conn *ws, const void *data, size_t len);
WS_EXTERN int ws_pong(ws_conn *ws, const void *data, size_t len);

/* ------------------------------------------------------------------------ */
/* Closing and state                                                        */
/* ------------------------------------------------------------------------ */

/* Starts the close handshake with `code` (1000-1003, 1007-1014, 3000-4999; 0
 * sends a close frame without a code) and `reason` (NULL or UTF-8, at most 123
 * bytes), flushes what was queued before it, waits (bounded by the close
 * timeout) for the peer's close frame, then closes TCP. From a callback it does
 * not wait. Messages that arrive meanwhile stay readable with ws_receive.
 * Returns WS_OK when the peer answered, WS_ETIMEDOUT when it did not (the
 * connection is closed anyway), WS_ECLOSED if it was already closed,
 * WS_EINVAL for a bad code or reason. */
WS_EXTERN int ws_close(ws_conn *ws, int code, const char *reason);
/* The peer's close code once closed (1005: none given, 1006: dropped), 0 while open. */
WS_EXTERN int ws_close_code(const ws_conn *ws);
/* The peer's close reason ("" when none), valid until ws_free. */
WS_EXTERN const char *ws_close_reason(const ws_conn *ws);
/* WS_STATE_*; WS_EINVAL for NULL. */
WS_EXTERN int ws_state(const ws_conn *ws);
/* A file descriptor readable exactly when ws_receive would not block (a message
 * is waiting, or the connection is closed). Owned by the connection: do not
 * read or close it. Works with poll/epoll/select and foreign event loops.
 * WS_ENOTSUP in callback mode (there is nothing to pull). */
WS_EXTERN int ws_fileno(const ws_conn *ws);
/* Bytes queued for sending and not yet written to the socket. */
WS_EXTERN size_t ws_buffered_amount(const ws_conn *ws);
/* Detail of the last error on this connection (OpenSSL's reason, the HTTP
 * status line, ...), "" when none. Valid until the next call on ws. */
WS_EXTERN const char *ws_error_detail(const ws_conn *ws);
/* Releases the connection. If still open it is closed with 1001 (without
 * waiting). Safe from any thread and from callbacks. */
WS_EXTERN void ws_free(ws_conn *ws);
/* Callback mode: keep a connection handed to a callback alive; pair with ws_free. */
WS_EXTERN ws_conn *ws_retain(ws_conn *ws);
/* A pointer of the application's, for callbacks. */
WS_EXTERN void ws_set_user_data(ws_conn *ws, void *data);
WS_EXTERN void *ws_get_user_data(const ws_conn *ws);

/* ------------------------------------------------------------------------ */
/* Handshake details                                                        */
/* ------------------------------------------------------------------------ */

/* The negotiated subprotocol, "" when none. */
WS_EXTERN const char *ws_subprotocol(const ws_conn *ws);
/* 1 for a server-side connection, 0 for a client. */
WS_EXTERN int ws_is_server(const ws_conn *ws);
/* 1 for TLS (wss), 0 otherwise. */
WS_EXTERN int ws_is_tls(const ws_conn *ws);
/* Client: the status code of the handshake response (101 on success), 0 if none came. */
WS_EXTERN int ws_http_status(const ws_conn *ws);
/* Server side: the request target ("/chat?room=1"), its path ("/chat") and query ("room=1"). */
WS_EXTERN const char *ws_request_target(const ws_conn *ws);
WS_EXTERN const char *ws_request_path(const ws_conn *ws);
WS_EXTERN const char *ws_request_query(const ws_conn *ws);
/* Server: a request header; client: a response header. Case-insensitive name;
 * NULL when absent (several with one name are joined with ", "). */
WS_EXTERN const char *ws_request_header(const ws_conn *ws, const char *name);
WS_EXTERN const char *ws_response_header(const ws_conn *ws, const char *name);
/* Iterate the request (server) or response (client) headers: count, then the
 * i-th name and value (NULL when i is out of range). */
WS_EXTERN int ws_header_count(const ws_conn *ws);
WS_EXTERN const char *ws_header_name(const ws_conn *ws, int i);
WS_EXTERN const char *ws_header_value(const ws_conn *ws, int i);
/* The peer's address as "1.2.3.4:port" or "[::1]:port". */
WS_EXTERN const char *ws_peer_address(const ws_conn *ws);
/* Frees what the connection keeps for the calls above of its handshake's
 * head: the request target and headers (server) or the response headers
 * (client), about 200 bytes for a typical request: as much again as the
 * rest of an idle connection. Afterwards the target, path and query are "", the header calls
 * return NULL and ws_header_count 0; strings they returned before are freed.
 * The subprotocol, the peer address and ws_http_status stay. Call it once the
 * application has read what it needs (in on_open, say), while no other thread
 * reads these details of ws. A second call does nothing. WS_OK; WS_EINVAL
 * for NULL. */
WS_EXTERN int ws_release_handshake(ws_conn *ws);

#ifdef __cplusplus
}
#endif

#endif /* WSCORE_H */
