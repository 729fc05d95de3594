/* Bad input gets a clear error code, at once: URLs (src/net/url.cpp, seen
 * through ws_open and the request a raw server receives), arguments of every
 * kind of call, handles in the wrong state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api_util.h"

/* ---- URLs that must be refused without touching the network ---- */

static void test_bad_urls(void **state) {
  (void)state;
  static const char *bad[] = {
      "",
      "http://127.0.0.1/",
      "ws:/127.0.0.1/",
      "ws//127.0.0.1/",
      "ws://",
      "ws:///path",
      "ws://:80/",
      "ws://host:/",
      "ws://host:99999/",
      "ws://host:0/",
      "ws://host:8o/",
      "ws://host:-1/",
      "ws://host/#frag",
      "ws://host#frag",
      "ws://user:pw@host/",
      "ws://ho st/",
      "ws://host/pa th",
      "ws://host/\t",
      "ws://ho%41st/",
      "ws://a:b:80/",
      "ws://host\x7f/",
      "ws://[::1/",
      "ws://[::1]x/",
      "ws://[::1]:/",
      "ws://[zz::1]/",
      "ws://[127.0.0.1]/",
      "ws://[]/",
      "ws://[fe80::1%eth0]/", /* a zone must be written %25 (RFC 6874) */
      "ws://[fe80::1%25]/",
      "ws://host]/",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ws_conn *ws = (ws_conn *)&bad; /* must be overwritten with NULL */
    long long t0 = now_ms();
    int rc = ws_open(bad[i], NULL, &ws);
    if (rc != WS_EURL) fail_msg("%s: %s, not WS_EURL", bad[i], ws_err_name(rc));
    assert_null(ws);
    assert_true(now_ms() - t0 < 200); /* refused before any resolve or connect */
  }
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(NULL, NULL, &ws), WS_EINVAL);
  assert_int_equal(ws_open("ws://127.0.0.1/", NULL, NULL), WS_EINVAL);
}

/* ---- what a valid URL becomes on the wire ---- */

typedef struct {
  int lfd;
  char head[4096];
} capture;

/* Accepts one connection, keeps its request head, answers 404. */
static void *capture_one(void *arg) {
  capture *c = (capture *)arg;
  c->head[0] = 0;
  struct pollfd p = {c->lfd, POLLIN, 0};
  if (poll(&p, 1, 5000) != 1) return NULL;
  int fd = accept(c->lfd, NULL, NULL);
  if (fd < 0) return NULL;
  read_head(fd, c->head, sizeof c->head, 3000);
  const char *resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  write_all(fd, resp, strlen(resp));
  close(fd);
  return NULL;
}

static int raw_listen6(int *port) {
  int lfd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 16) != 0) {
    if (lfd >= 0) close(lfd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin6_port);
  return lfd;
}

/* Opens `url_fmt` (with the listener's port) and checks the request line and
 * Host header the server saw. */
static void expect_request(int lfd, int port, const char *url_fmt, const char *line, const char *host_fmt) {
  capture cap;
  cap.lfd = lfd;
  pthread_t t;
  pthread_create(&t, NULL, capture_one, &cap);
  char url[256], want_line[256], want_host[256];
  snprintf(url, sizeof url, url_fmt, port);
  snprintf(want_line, sizeof want_line, "%s HTTP/1.1\r\n", line);
  snprintf(want_host, sizeof want_host, host_fmt, port);
  ws_conn *ws = NULL;
  int rc = ws_open(url, NULL, &ws);
  pthread_join(t, NULL);
  if (rc != WS_EHANDSHAKE) fail_msg("%s: %s", url, ws_err_name(rc));
  assert_int_equal(ws_http_status(ws), 404);
  ws_free(ws);
  if (strncmp(cap.head, want_line, strlen(want_line)) != 0)
    fail_msg("%s: request line is not '%s':\n%s", url, line, cap.head);
  char host_line[300];
  snprintf(host_line, sizeof host_line, "\r\nHost: %s\r\n", want_host);
  if (!strstr(cap.head, host_line)) fail_msg("%s: no '%s' in\n%s", url, want_host, cap.head);
}

static void test_url_to_request(void **state) {
  (void)state;
  int port = 0;
  int lfd = raw_listen(&port);
  assert_true(lfd >= 0);
  expect_request(lfd, port, "ws://127.0.0.1:%d", "GET /", "127.0.0.1:%d");
  expect_request(lfd, port, "ws://127.0.0.1:%d?x=1", "GET /?x=1", "127.0.0.1:%d");
  expect_request(lfd, port, "ws://127.0.0.1:%d/a/b?c=d&e", "GET /a/b?c=d&e", "127.0.0.1:%d");
  expect_request(lfd, port, "WS://127.0.0.1:%d/Case", "GET /Case", "127.0.0.1:%d");
  expect_request(lfd, port, "ws://127.0.0.1:%d/caf\xc3\xa9?q=\xe2\x9c\x93", "GET /caf%C3%A9?q=%E2%9C%93",
                 "127.0.0.1:%d");
  /* A name that may resolve to ::1 first: each address is tried in turn. */
  expect_request(lfd, port, "ws://localhost:%d/name", "GET /name", "localhost:%d");
  close(lfd);
  int lfd6 = raw_listen6(&port);
  if (lfd6 < 0) return; /* no IPv6 loopback on this machine: test_ipv6 says so too */
  expect_request(lfd6, port, "ws://[::1]:%d/six", "GET /six", "[::1]:%d");
  expect_request(lfd6, port, "ws://[0:0:0:0:0:0:0:1]:%d/", "GET /", "[0:0:0:0:0:0:0:1]:%d");
  close(lfd6);
}

/* ---- arguments ---- */

static void test_bad_arguments(void **state) {
  (void)state;
  ws_server *srv = (ws_server *)1;
  assert_int_equal(ws_listen(NULL, 0, NULL, &srv), WS_EINVAL);
  assert_int_equal(ws_listen("127.0.0.1", -1, NULL, &srv), WS_EINVAL);
  assert_int_equal(ws_listen("127.0.0.1", 65536, NULL, &srv), WS_EINVAL);
  assert_int_equal(ws_listen("127.0.0.1", 0, NULL, NULL), WS_EINVAL);
  assert_int_equal(ws_listen("no such host.invalid", 0, NULL, &srv), WS_ERESOLVE);
  assert_null(srv);
  assert_int_equal(ws_accept(NULL, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_server_port(NULL), WS_EINVAL);
  assert_int_equal(ws_server_fileno(NULL), WS_EINVAL);
  assert_int_equal(ws_server_close(NULL), WS_EINVAL);

  assert_int_equal(ws_send_fragment(NULL, "x", 1, WS_TEXT, 1), WS_EINVAL);
  assert_int_equal(ws_ping(NULL, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_pong(NULL, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_close(NULL, 1000, NULL), WS_EINVAL);
  assert_int_equal(ws_close_code(NULL), WS_EINVAL);
  assert_string_equal(ws_close_reason(NULL), "");
  assert_int_equal(ws_fileno(NULL), WS_EINVAL);
  assert_int_equal(ws_buffered_amount(NULL), 0);
  assert_int_equal(ws_is_server(NULL), WS_EINVAL);
  assert_int_equal(ws_http_status(NULL), WS_EINVAL);
  assert_null(ws_request_header(NULL, "Host"));
  assert_null(ws_response_header(NULL, "Host"));
  assert_int_equal(ws_upgrade_accept(NULL, NULL), WS_EINVAL);
  assert_int_equal(ws_upgrade_reject(NULL, 403, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_upgrade_add_header(NULL, "a", "b"), WS_EINVAL);
  assert_int_equal(ws_message_size(NULL), 0);
  assert_int_equal(ws_message_type(NULL), WS_EINVAL);
  assert_null(ws_retain(NULL));

  ws_options *o = ws_options_new();
  assert_non_null(o);
  assert_int_equal(ws_options_set_threads(o, 257), WS_EINVAL);
  assert_int_equal(ws_options_set_close_timeout(o, -5), WS_EINVAL);
  assert_int_equal(ws_options_set_idle_timeout(o, 0), WS_EINVAL);
  assert_int_equal(ws_options_set_keepalive(o, -1, 0), WS_EINVAL);
  assert_int_equal(ws_options_set_send_queue_limit(o, 0), WS_EINVAL);
  assert_int_equal(ws_options_set_max_handshake_size(o, 10), WS_EINVAL);
  /* Headers that would break or forge the handshake. */
  assert_int_equal(ws_options_add_header(o, "X-Ok", "a\r\nInjected: 1"), WS_EINVAL);
  assert_int_equal(ws_options_add_header(o, "Bad Name", "v"), WS_EINVAL);
  assert_int_equal(ws_options_add_header(o, "Sec-WebSocket-Key", "v"), WS_EINVAL);
  assert_int_equal(ws_options_add_header(o, "host", "v"), WS_EINVAL);
  assert_int_equal(ws_options_add_header(o, "X-Ok", "fine"), WS_OK);
  assert_int_equal(ws_options_add_subprotocol(o, "has space"), WS_EINVAL);
  assert_int_equal(ws_options_add_subprotocol(o, ""), WS_EINVAL);
  assert_int_equal(ws_options_add_origin(o, ""), WS_EINVAL);
  assert_int_equal(ws_options_add_origin(o, "http://a\r\n"), WS_EINVAL);
  ws_callbacks cbs = {0};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, 3, NULL), WS_EINVAL);
  assert_int_equal(ws_options_set_tls_ca_file(o, NULL), WS_EINVAL);
  ws_options_free(o);
}

/* Calls on a connection in the wrong state: a server connection held for a
 * manual upgrade, then one that is closed. */
static void test_wrong_state(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_manual_upgrade(o, 1);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  int fd = raw_connect(ws_server_port(srv));
  assert_true(fd >= 0);
  write_all(fd, kUpgradeRequest, strlen(kUpgradeRequest));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_int_equal(ws_state(s), WS_STATE_CONNECTING);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(s, &m, 0), WS_ESTATE);
  assert_int_equal(ws_send(s, "x", 1, WS_TEXT), WS_ESTATE);
  assert_int_equal(ws_ping(s, NULL, 0), WS_ESTATE);
  assert_int_equal(ws_close(s, 1000, NULL), WS_ESTATE);
  assert_int_equal(ws_upgrade_accept(s, "never-offered"), WS_EINVAL);
  assert_int_equal(ws_upgrade_reject(s, 101, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_upgrade_reject(s, 700, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_upgrade_add_header(s, "X-A", "1\r\n"), WS_EINVAL);
  assert_int_equal(ws_upgrade_accept(s, NULL), WS_OK);
  assert_int_equal(ws_upgrade_accept(s, NULL), WS_ESTATE);
  assert_int_equal(ws_upgrade_reject(s, 403, NULL, 0), WS_ESTATE);
  assert_int_equal(ws_upgrade_add_header(s, "X-A", "1"), WS_ESTATE);
  close(fd); /* vanishes: the server side ends closed with 1006 */
  assert_int_equal(ws_receive(s, &m, 5000), WS_ECLOSED);
  assert_int_equal(ws_close_code(s), WS_CLOSE_ABNORMAL);
  assert_int_equal(ws_send(s, "x", 1, WS_TEXT), WS_ECLOSED);
  assert_int_equal(ws_ping(s, NULL, 0), WS_ECLOSED);
  assert_int_equal(ws_close(s, 1000, NULL), WS_ECLOSED);
  assert_int_equal(ws_receive(s, &m, -1), WS_ECLOSED); /* never blocks once closed */
  ws_free(s);
  /* Callback-mode servers refuse the pull calls. */
  ws_callbacks cbs = {0};
  o = ws_options_new();
  ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL);
  ws_server *cb = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &cb), WS_OK);
  ws_options_free(o);
  assert_int_equal(ws_accept(cb, &s, 0), WS_ENOTSUP);
  assert_int_equal(ws_server_fileno(cb), WS_ENOTSUP);
  ws_server_free(cb);
  ws_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_urls),
      cmocka_unit_test(test_url_to_request),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_wrong_state),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
