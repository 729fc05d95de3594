/* The C API end to end through loopback sockets: client and server of ours.
 * Messages of every length class, UTF-8, fragments, pings, handshake details. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api_util.h"

static echo_server g_echo;

static int setup(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_add_subprotocol(o, "v2.chat");
  ws_options_add_subprotocol(o, "chat");
  ws_options_add_header(o, "X-Served-By", "wscore-test");
  int rc = echo_start(&g_echo, o);
  ws_options_free(o);
  return rc;
}

static int teardown(void **state) {
  (void)state;
  echo_stop(&g_echo);
  return 0;
}

static ws_conn *open_echo(const char *path, ws_options *o) {
  char url[128];
  url_for(url, sizeof url, g_echo.port, path);
  ws_conn *ws = NULL;
  int rc = ws_open(url, o, &ws);
  assert_int_equal(rc, WS_OK);
  assert_non_null(ws);
  assert_int_equal(ws_state(ws), WS_STATE_OPEN);
  return ws;
}

static void roundtrip(ws_conn *ws, const void *data, size_t n, int type) {
  assert_int_equal(ws_send(ws, data, n, type), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 10000), WS_OK);
  assert_int_equal(ws_message_type(m), type);
  assert_int_equal(ws_message_size(m), n);
  if (n) assert_memory_equal(ws_message_data(m), data, n);
  assert_int_equal(((const char *)ws_message_data(m))[n], 0); /* NUL after the payload */
  ws_message_free(m);
}

static void test_sizes_and_types(void **state) {
  (void)state;
  ws_conn *ws = open_echo("/sizes", NULL);
  size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 65537, 16u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *buf = malloc(sizes[i] + 1);
    for (size_t k = 0; k < sizes[i]; k++) buf[k] = (unsigned char)(k * 31 + i);
    roundtrip(ws, buf, sizes[i], WS_BINARY);
    memset(buf, 'a' + (int)i, sizes[i]);
    roundtrip(ws, buf, sizes[i], WS_TEXT);
    free(buf);
  }
  const char *utf8 = "na\xc3\xafve caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
  roundtrip(ws, utf8, strlen(utf8), WS_TEXT);
  assert_int_equal(ws_close(ws, WS_CLOSE_NORMAL, "done"), WS_OK);
  assert_int_equal(ws_close_code(ws), 1000);
  ws_free(ws);
}

static void test_invalid_sends(void **state) {
  (void)state;
  ws_conn *ws = open_echo("/bad", NULL);
  assert_int_equal(ws_send(ws, "\xc0\xaf", 2, WS_TEXT), WS_EUTF8);
  assert_int_equal(ws_send(ws, "x", 1, 7), WS_EINVAL);
  assert_int_equal(ws_send(ws, NULL, 5, WS_BINARY), WS_EINVAL);
  char big[126] = {0};
  assert_int_equal(ws_ping(ws, big, sizeof big), WS_EINVAL);
  /* Fragment misuse: a whole message or a type change mid-message. */
  assert_int_equal(ws_send_fragment(ws, "ab", 2, WS_TEXT, 0), WS_OK);
  assert_int_equal(ws_send(ws, "x", 1, WS_TEXT), WS_ESTATE);
  assert_int_equal(ws_send_fragment(ws, "x", 1, WS_BINARY, 1), WS_ESTATE);
  /* A character split across fragments is fine; one left open at fin is not. */
  assert_int_equal(ws_send_fragment(ws, "\xe2\x82", 2, WS_TEXT, 0), WS_OK);
  assert_int_equal(ws_send_fragment(ws, "\xac", 1, WS_TEXT, 0), WS_OK);
  assert_int_equal(ws_send_fragment(ws, "\xe2", 1, WS_TEXT, 1), WS_EUTF8);
  assert_int_equal(ws_send_fragment(ws, "!", 1, WS_TEXT, 1), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 5000), WS_OK);
  assert_int_equal(ws_message_size(m), 6);
  assert_memory_equal(ws_message_data(m), "ab\xe2\x82\xac!", 6);
  ws_message_free(m);
  /* Bad close arguments. */
  assert_int_equal(ws_close(ws, 1005, NULL), WS_EINVAL);
  assert_int_equal(ws_close(ws, 999, NULL), WS_EINVAL);
  char reason[130];
  memset(reason, 'r', sizeof reason - 1);
  reason[129] = 0;
  assert_int_equal(ws_close(ws, 1000, reason), WS_EINVAL);
  assert_int_equal(ws_close(ws, 1000, "\xff"), WS_EINVAL);
  assert_int_equal(ws_close(ws, 4001, "custom"), WS_OK);
  assert_int_equal(ws_close_code(ws), 4001); /* the echo server answers with our code */
  assert_int_equal(ws_send(ws, "x", 1, WS_TEXT), WS_ECLOSED);
  assert_int_equal(ws_close(ws, 1000, NULL), WS_ECLOSED);
  ws_free(ws);
}

static void test_fragments_and_timeouts(void **state) {
  (void)state;
  ws_conn *ws = open_echo("/frag", NULL);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 0), WS_EAGAIN);
  long long t0 = now_ms();
  assert_int_equal(ws_receive(ws, &m, 150), WS_ETIMEDOUT);
  assert_true(now_ms() - t0 >= 140);
  assert_null(m);
  for (int i = 0; i < 5; i++) assert_int_equal(ws_send_fragment(ws, "0123456789", 10, WS_BINARY, i == 4), WS_OK);
  assert_int_equal(ws_receive(ws, &m, 5000), WS_OK);
  assert_int_equal(ws_message_size(m), 50);
  assert_int_equal(ws_message_type(m), WS_BINARY);
  ws_message_free(m);
  ws_free(ws); /* free while open: closes with 1001 without waiting */
}

static void test_ping_pong_delivered(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_deliver_control(o, 1);
  ws_conn *ws = open_echo("/ping", o);
  ws_options_free(o);
  assert_int_equal(ws_ping(ws, "are you there", 13), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 5000), WS_OK);
  assert_int_equal(ws_message_type(m), WS_PONG);
  assert_int_equal(ws_message_size(m), 13);
  assert_memory_equal(ws_message_data(m), "are you there", 13);
  ws_message_free(m);
  /* An unsolicited pong is allowed and ignored by the peer. */
  assert_int_equal(ws_pong(ws, "hb", 2), WS_OK);
  roundtrip(ws, "after", 5, WS_TEXT);
  ws_close(ws, 1000, NULL);
  ws_free(ws);
}

static void test_handshake_details(void **state) {
  (void)state;
  /* Subprotocol: the first of the client's offers the server supports. */
  ws_options *o = ws_options_new();
  ws_options_add_subprotocol(o, "nope");
  ws_options_add_subprotocol(o, "chat");
  ws_options_add_subprotocol(o, "v2.chat");
  ws_options_add_header(o, "Authorization", "Bearer abc");
  assert_int_equal(ws_options_add_header(o, "Upgrade", "x"), WS_EINVAL);
  assert_int_equal(ws_options_add_header(o, "X-Evil", "a\r\nInjected: 1"), WS_EINVAL);
  ws_conn *ws = open_echo("/details?room=42&x=y", o);
  ws_options_free(o);
  assert_string_equal(ws_subprotocol(ws), "chat");
  assert_int_equal(ws_http_status(ws), 101);
  assert_string_equal(ws_response_header(ws, "x-served-by"), "wscore-test");
  assert_int_equal(ws_is_server(ws), 0);
  assert_int_equal(ws_is_tls(ws), 0);
  assert_true(strncmp(ws_peer_address(ws), "127.0.0.1:", 10) == 0);
  int n = ws_header_count(ws);
  assert_true(n >= 4);
  int found = 0;
  for (int i = 0; i < n; i++)
    if (strcasecmp(ws_header_name(ws, i), "Sec-WebSocket-Accept") == 0) found = 1;
  assert_true(found);
  assert_null(ws_header_name(ws, n));
  ws_close(ws, 1000, NULL);
  ws_free(ws);
}

typedef struct closer {
  ws_conn *ws;
  int code;
  const char *reason;
  int rc;
} closer;

static void *close_thread(void *arg) {
  closer *cl = (closer *)arg;
  cl->rc = ws_close(cl->ws, cl->code, cl->reason);
  return NULL;
}

/* A pull-mode server answers the peer's close only once its application read
 * everything before it: an echo server's replies to the last messages a client
 * sent before closing still reach the client, ahead of the close. */
static void test_replies_precede_the_answer_to_a_close(void **state) {
  (void)state;
  echo_server e;
  assert_int_equal(echo_start(&e, NULL), WS_OK);
  char url[64];
  url_for(url, sizeof url, e.port, "/");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  char msg[16];
  for (int i = 0; i < 50; i++) {
    int n = snprintf(msg, sizeof msg, "m%d", i);
    assert_int_equal(ws_send(c, msg, (size_t)n, WS_TEXT), WS_OK);
  }
  assert_int_equal(ws_close(c, 1000, "done"), WS_OK);
  assert_int_equal(ws_close_code(c), 1000);
  assert_string_equal(ws_close_reason(c), "done");
  /* Every echo arrived before the server's close, and stays readable. */
  for (int i = 0; i < 50; i++) {
    ws_message *m = NULL;
    assert_int_equal(ws_receive(c, &m, 0), WS_OK);
    int n = snprintf(msg, sizeof msg, "m%d", i);
    assert_int_equal(ws_message_size(m), (size_t)n);
    assert_memory_equal(ws_message_data(m), msg, (size_t)n);
    ws_message_free(m);
  }
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 0), WS_ECLOSED);
  ws_free(c);
  echo_stop(&e);
}

/* A pull-mode application that does not come back for more does not hold the
 * peer's close forever: the close timeout sends the answer. */
static void test_unread_messages_delay_the_answer_at_most_the_close_timeout(void **state) {
  (void)state;
  ws_options *so = ws_options_new();
  ws_options_set_close_timeout(so, 300);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &srv), WS_OK);
  ws_options_free(so);
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_int_equal(ws_send(c, "unread", 6, WS_TEXT), WS_OK);
  long long t0 = now_ms();
  assert_int_equal(ws_close(c, 1000, NULL), WS_OK); /* the server never reads */
  long long took = now_ms() - t0;
  assert_true(took >= 250);
  assert_true(took < 4000);
  /* The server's application still gets the message, then the close. */
  ws_message *m = NULL;
  assert_int_equal(ws_receive(s, &m, 1000), WS_OK);
  ws_message_free(m);
  assert_int_equal(ws_receive(s, &m, 1000), WS_ECLOSED);
  assert_int_equal(ws_close_code(s), 1000);
  ws_free(s);
  ws_free(c);
  ws_server_free(srv);
}

/* The server side's view: request target, path, query and headers. */
static void test_server_sees_request(void **state) {
  (void)state;
  ws_options *so = ws_options_new();
  ws_options_add_subprotocol(so, "b");
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &srv), WS_OK);
  ws_options_free(so);
  char url[128];
  url_for(url, sizeof url, ws_server_port(srv), "/a/b?q=1");
  ws_options *co = ws_options_new();
  ws_options_add_header(co, "X-Token", "t0k");
  ws_options_add_header(co, "X-Multi", "one");
  ws_options_add_header(co, "x-multi", "two");
  ws_options_add_subprotocol(co, "a");
  ws_options_add_subprotocol(co, "b");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, co, &c), WS_OK);
  ws_options_free(co);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_int_equal(ws_is_server(s), 1);
  assert_string_equal(ws_request_target(s), "/a/b?q=1");
  assert_string_equal(ws_request_path(s), "/a/b");
  assert_string_equal(ws_request_query(s), "q=1");
  assert_string_equal(ws_request_header(s, "x-token"), "t0k");
  assert_null(ws_request_header(s, "x-missing"));
  assert_string_equal(ws_request_header(s, "X-MULTI"), "one, two");
  assert_string_equal(ws_subprotocol(s), "b");
  /* Released, the head is gone; what is not part of it stays. */
  const char *peer = ws_peer_address(s);
  assert_true(strncmp(peer, "127.0.0.1:", 10) == 0);
  assert_true(ws_header_count(s) > 3);
  assert_string_equal(ws_response_header(c, "Sec-WebSocket-Protocol"), "b");
  assert_int_equal(ws_release_handshake(s), WS_OK);
  assert_int_equal(ws_header_count(s), 0);
  assert_null(ws_header_name(s, 0));
  assert_null(ws_request_header(s, "x-token"));
  assert_null(ws_request_header(s, "X-MULTI"));
  assert_string_equal(ws_request_target(s), "");
  assert_string_equal(ws_request_path(s), "");
  assert_string_equal(ws_request_query(s), "");
  assert_string_equal(ws_subprotocol(s), "b");
  assert_true(strncmp(ws_peer_address(s), "127.0.0.1:", 10) == 0);
  assert_int_equal(ws_release_handshake(s), WS_OK); /* twice: nothing */
  assert_int_equal(ws_release_handshake(c), WS_OK);
  assert_null(ws_response_header(c, "Sec-WebSocket-Protocol"));
  assert_int_equal(ws_header_count(c), 0);
  assert_int_equal(ws_http_status(c), 101);
  assert_string_equal(ws_subprotocol(c), "b");
  assert_int_equal(ws_release_handshake(NULL), WS_EINVAL);
  /* Server-initiated close: the client sees the code and reason. The client
   * answers the close once its application read what came before it, so the
   * server closes on another thread while this one reads. */
  assert_int_equal(ws_send(s, "bye soon", 8, WS_TEXT), WS_OK);
  closer cl = {s, 4321, "server says bye", -99};
  pthread_t t;
  pthread_create(&t, NULL, close_thread, &cl);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK); /* sent before the close: delivered */
  ws_message_free(m);
  assert_int_equal(ws_receive(c, &m, 5000), WS_ECLOSED);
  pthread_join(t, NULL);
  assert_int_equal(cl.rc, WS_OK);
  assert_int_equal(ws_close_code(c), 4321);
  assert_string_equal(ws_close_reason(c), "server says bye");
  assert_int_equal(ws_state(c), WS_STATE_CLOSED);
  ws_free(s);
  ws_free(c);
  /* ws_accept timeouts, then a closed server cancels. */
  assert_int_equal(ws_accept(srv, &s, 0), WS_EAGAIN);
  assert_int_equal(ws_accept(srv, &s, 100), WS_ETIMEDOUT);
  ws_server_close(srv);
  assert_int_equal(ws_accept(srv, &s, -1), WS_ECANCELED);
  ws_server_free(srv);
}

/* Receive flow control: a client that does not read stops reading its socket
 * once receive_queue_limit bytes wait unread, so a server that sends and
 * sends is held back (its send times out) instead of the client's memory
 * taking everything; once the client reads, everything arrives, in order,
 * and the server can send again. The keepalive does not take the pause for
 * a dead peer. */
static void test_receive_queue_limit_holds_back_the_peer(void **state) {
  (void)state;
  enum { kMsg = 1 << 20, kMax = 256 };
  ws_options *so = ws_options_new();
  assert_int_equal(ws_options_set_send_queue_limit(so, kMsg), WS_OK);
  assert_int_equal(ws_options_set_send_timeout(so, 1500), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &srv), WS_OK);
  ws_options_free(so);
  char url[128];
  url_for(url, sizeof url, ws_server_port(srv), "/flow");
  ws_options *co = ws_options_new();
  assert_int_equal(ws_options_set_receive_queue_limit(co, 0), WS_EINVAL);
  assert_int_equal(ws_options_set_receive_queue_limit(co, 4u << 20), WS_OK);
  assert_int_equal(ws_options_set_keepalive(co, 100, 100), WS_OK);
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, co, &c), WS_OK);
  ws_options_free(co);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);

  unsigned char *buf = malloc(kMsg);
  int sent = 0, rc = WS_OK;
  while (sent < kMax) {
    memset(buf, sent & 0xff, kMsg);
    memcpy(buf, &sent, sizeof sent);
    rc = ws_send(s, buf, kMsg, WS_BINARY);
    if (rc != WS_OK) break;
    sent++;
  }
  /* 256 MiB would all have gone into the client's inbox; what the server got
   * out is the client's 4 MiB, the socket buffers and its own queue. */
  assert_int_equal(rc, WS_ETIMEDOUT);
  assert_true(sent >= 4);
  assert_true(sent < 64);
  usleep(500 * 1000); /* several keepalive periods while paused */
  assert_int_equal(ws_state(c), WS_STATE_OPEN);

  for (int i = 0; i < sent; i++) {
    ws_message *m = NULL;
    assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
    assert_int_equal(ws_message_size(m), kMsg);
    const unsigned char *d = ws_message_data(m);
    int idx;
    memcpy(&idx, d, sizeof idx);
    assert_int_equal(idx, i);
    assert_int_equal(d[kMsg - 1], i & 0xff);
    ws_message_free(m);
  }
  /* Drained: the server may send again, and it arrives. */
  memset(buf, 0xab, kMsg);
  assert_int_equal(ws_send(s, buf, kMsg, WS_BINARY), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
  assert_int_equal(ws_message_size(m), kMsg);
  assert_int_equal(((const unsigned char *)ws_message_data(m))[kMsg - 1], 0xab);
  ws_message_free(m);
  /* Paused again, the client closes: its close handshake reads past the
   * pause (the server's answer comes behind the data), well inside the
   * close timeout. */
  while (ws_send(s, buf, kMsg, WS_BINARY) == WS_OK) {
  }
  free(buf);
  long long t0 = now_ms();
  assert_int_equal(ws_close(c, 1000, NULL), WS_OK);
  assert_true(now_ms() - t0 < 3000);
  assert_int_equal(ws_close_code(c), 1000);
  ws_free(c);
  ws_free(s);
  ws_server_free(srv);
}

static void test_open_errors(void **state) {
  (void)state;
  ws_conn *ws = (ws_conn *)1;
  assert_int_equal(ws_open("http://127.0.0.1/", NULL, &ws), WS_EURL);
  assert_null(ws);
  assert_int_equal(ws_open("ws://", NULL, &ws), WS_EURL);
  assert_int_equal(ws_open("ws://h:99999/", NULL, &ws), WS_EURL);
  assert_int_equal(ws_open("ws://h/#frag", NULL, &ws), WS_EURL);
  assert_int_equal(ws_open("ws://[::1/", NULL, &ws), WS_EURL);
  assert_int_equal(ws_open(NULL, NULL, &ws), WS_EINVAL);
  assert_int_equal(ws_open("ws://host.invalid/", NULL, &ws), WS_ERESOLVE);
  /* A port nobody listens on. */
  int port = 0;
  close(raw_listen(&port)); /* a free port, closed again */
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
  assert_int_equal(ws_open(url, NULL, &ws), WS_ECONNREFUSED);
  assert_null(ws);
}

/* A server that answers anything but 101: WS_EHANDSHAKE with the status readable. */
static void *http_403_server(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  char head[4096];
  read_head(fd, head, sizeof head, 3000);
  const char *resp = "HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: nope\r\n\r\nnope";
  write_all(fd, resp, strlen(resp));
  close(fd);
  return NULL;
}

static void test_handshake_rejected(void **state) {
  (void)state;
  int port = 0;
  int lfd = raw_listen(&port);
  assert_true(lfd >= 0);
  pthread_t t;
  pthread_create(&t, NULL, http_403_server, &lfd);
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(url, NULL, &ws), WS_EHANDSHAKE);
  assert_non_null(ws);
  assert_int_equal(ws_http_status(ws), 403);
  assert_string_equal(ws_response_header(ws, "X-Why"), "nope");
  assert_non_null(strstr(ws_error_detail(ws), "403"));
  assert_int_equal(ws_state(ws), WS_STATE_CLOSED);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 0), WS_ECLOSED);
  ws_free(ws);
  pthread_join(t, NULL);
  close(lfd);
}

static void test_errors_table(void **state) {
  (void)state;
  assert_string_equal(ws_err_name(WS_OK), "WS_OK");
  assert_string_equal(ws_err_name(WS_ECLOSED), "WS_ECLOSED");
  assert_string_equal(ws_strerror(WS_EUTF8), "text is not valid UTF-8");
  assert_string_equal(ws_strerror(-999), "unknown error");
  assert_string_equal(ws_version(), "0.1.0");
  for (int e = -1; e > WS_ERRNO_LAST_; e--) assert_string_not_equal(ws_err_name(e), "WS_UNKNOWN");
  /* NULL-safe accessors. */
  assert_int_equal(ws_send(NULL, "x", 1, WS_TEXT), WS_EINVAL);
  assert_int_equal(ws_receive(NULL, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_state(NULL), WS_EINVAL);
  assert_null(ws_message_data(NULL));
  ws_free(NULL);
  ws_server_free(NULL);
  ws_message_free(NULL);
  ws_options_free(NULL);
  assert_int_equal(ws_options_set_max_message_size(NULL, 1), WS_EINVAL);
  ws_options *o = ws_options_new();
  assert_int_equal(ws_options_set_max_message_size(o, 0), WS_EINVAL);
  assert_int_equal(ws_options_set_connect_timeout(o, -2), WS_EINVAL);
  assert_int_equal(ws_options_set_threads(o, 0), WS_EINVAL);
  assert_int_equal(ws_set_logger(NULL, 9, NULL), WS_EINVAL);
  ws_options_free(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_and_types),
      cmocka_unit_test(test_invalid_sends),
      cmocka_unit_test(test_fragments_and_timeouts),
      cmocka_unit_test(test_ping_pong_delivered),
      cmocka_unit_test(test_handshake_details),
      cmocka_unit_test(test_server_sees_request),
      cmocka_unit_test(test_replies_precede_the_answer_to_a_close),
      cmocka_unit_test(test_unread_messages_delay_the_answer_at_most_the_close_timeout),
      cmocka_unit_test(test_receive_queue_limit_holds_back_the_peer),
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_handshake_rejected),
      cmocka_unit_test(test_errors_table),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
