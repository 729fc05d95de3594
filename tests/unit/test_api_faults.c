/* Close paths, peers that misbehave or vanish, and the server's handshake
 * policy (426, 431, 403, timeouts, manual upgrade), with raw TCP peers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api_util.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>

static ws_server *listen_with(ws_options *o) {
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  return srv;
}

/* A peer that vanishes mid-frame: every blocked call ends, code 1006. */
static void test_peer_vanishes_mid_frame(void **state) {
  (void)state;
  ws_server *srv = listen_with(NULL);
  int fd = raw_upgrade(ws_server_port(srv));
  assert_true(fd >= 0);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  unsigned char half[] = {0x82, 0x80 | 100, 0, 0, 0, 0, 'p', 'a', 'r'}; /* 100 announced, 3 sent */
  write_all(fd, half, sizeof half);
  usleep(50 * 1000);
  close(fd); /* FIN mid-frame */
  ws_message *m = NULL;
  long long t0 = now_ms();
  assert_int_equal(ws_receive(s, &m, 5000), WS_ECLOSED);
  assert_true(now_ms() - t0 < 2000);
  assert_int_equal(ws_close_code(s), 1006);
  assert_int_equal(ws_send(s, "x", 1, WS_TEXT), WS_ECLOSED);
  ws_free(s);

  /* RST instead of FIN. */
  fd = raw_upgrade(ws_server_port(srv));
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  assert_int_equal(ws_receive(s, &m, 5000), WS_ECLOSED);
  assert_int_equal(ws_close_code(s), 1006);
  ws_free(s);
  ws_server_free(srv);
}

/* Protocol errors from the peer close with the right code, on the wire. */
static void expect_close_code(ws_server *srv, const unsigned char *bytes, size_t n, int code) {
  int fd = raw_upgrade(ws_server_port(srv));
  assert_true(fd >= 0);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  write_all(fd, bytes, n);
  unsigned char buf[256];
  int got = read_until_eof(fd, buf, sizeof buf, 3000);
  assert_true(got >= 4); /* the server closed TCP after its close frame */
  assert_int_equal(buf[0], 0x88);
  assert_int_equal((buf[2] << 8) | buf[3], code);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(s, &m, 3000), WS_ECLOSED);
  assert_int_equal(ws_close_code(s), code);
  close(fd);
  ws_free(s);
}

static void test_protocol_errors_on_the_wire(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_max_message_size(o, 1000);
  ws_server *srv = listen_with(o);
  ws_options_free(o);
  unsigned char f[2100];
  const unsigned char unmasked[] = {0x81, 0x02, 'h', 'i'};
  expect_close_code(srv, unmasked, sizeof unmasked, 1002);
  size_t n = client_frame(f, 0x81, "\xed\xa0\x80", 3);
  expect_close_code(srv, f, n, 1007);
  unsigned char big[2000];
  memset(big, 'x', sizeof big);
  n = client_frame(f, 0x82, big, sizeof big);
  expect_close_code(srv, f, n, 1009);
  n = client_frame(f, 0x88, "\x03\xed", 2); /* close code 1005 may not be sent */
  expect_close_code(srv, f, n, 1002);
  ws_server_free(srv);
}

/* A peer that goes on sending after its protocol error still reads our close
 * frame: the server sends FIN and reads (discarding) until the peer's FIN,
 * instead of closing a socket with unread bytes, which answers with a reset
 * that can destroy the close frame before the peer reads it. The same for an
 * HTTP error answer to a client that sends more than its request. */
/* Sends frames for `ms`; the errno of a failed send (a reset), else 0. */
static int keep_sending(int fd, long long ms) {
  static unsigned char payload[60000], junk[65536];
  size_t n = client_frame(junk, 0x82, payload, sizeof payload);
  long long end = now_ms() + ms;
  while (now_ms() < end) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 10) == 1 && send(fd, junk, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
      return errno;
  }
  return 0;
}

/* Reads to the end: the bytes read, or -errno when the stream ended in an error (a reset). */
static int read_to_clean_eof(int fd, unsigned char *out, size_t cap) {
  size_t have = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 3000) <= 0) return -ETIMEDOUT;
    ssize_t r = read(fd, out + have, cap - have);
    if (r == 0) return (int)have;
    if (r < 0) return -errno;
    have += (size_t)r;
    if (have == cap) have = cap - 1; /* keep the start, drop the rest */
  }
}

static void test_lingering_close_after_a_failure(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {0};
  ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL); /* no deferral: the close goes at once */
  ws_server *srv = listen_with(o);
  ws_options_free(o);
  for (int round = 0; round < 3; round++) {
    int fd = raw_upgrade(ws_server_port(srv));
    assert_true(fd >= 0);
    const unsigned char unmasked[] = {0x82, 0x02, 'h', 'i'};
    write_all(fd, unmasked, sizeof unmasked);
    /* Megabytes the server never parses: taken and dropped, never reset. */
    assert_int_equal(keep_sending(fd, 300), 0);
    unsigned char buf[64];
    int got = read_to_clean_eof(fd, buf, sizeof buf);
    assert_true(got >= 4); /* the close frame, then a clean EOF */
    assert_int_equal(buf[0], 0x88);
    assert_int_equal((buf[2] << 8) | buf[3], 1002);
    close(fd);
  }
  ws_server_free(srv);

  /* A refused upgrade (426: not an upgrade) with more bytes behind the request. */
  srv = listen_with(NULL);
  int fd = raw_connect(ws_server_port(srv));
  const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  write_all(fd, req, strlen(req));
  assert_int_equal(keep_sending(fd, 300), 0);
  unsigned char resp[4096];
  int got = read_to_clean_eof(fd, resp, sizeof resp);
  assert_true(got >= 12);
  assert_memory_equal(resp, "HTTP/1.1 426", 12);
  close(fd);
  ws_server_free(srv);
}

/* ws_close when the peer never answers: bounded by the close timeout. */
static void test_close_timeout(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_close_timeout(o, 300);
  ws_server *srv = listen_with(o);
  ws_options_free(o);
  int fd = raw_upgrade(ws_server_port(srv));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  long long t0 = now_ms();
  assert_int_equal(ws_close(s, 1000, "going"), WS_ETIMEDOUT);
  long long dt = now_ms() - t0;
  assert_true(dt >= 250 && dt < 2500);
  assert_int_equal(ws_close_code(s), 1006);
  assert_int_equal(ws_state(s), WS_STATE_CLOSED);
  /* The peer did get our close frame: 0x88, len 7, 1000, "going". */
  unsigned char buf[64];
  int got = read_until_eof(fd, buf, sizeof buf, 2000);
  assert_int_equal(got, 9);
  assert_memory_equal(buf, "\x88\x07\x03\xe8going", 9);
  close(fd);
  ws_free(s);
  ws_server_free(srv);
}

static void http_expect(int port, const char *request, const char *status_prefix) {
  int fd = raw_connect(port);
  write_all(fd, request, strlen(request));
  char head[4096];
  int n = read_head(fd, head, sizeof head, 3000);
  assert_true(n > 0);
  if (strncmp(head, status_prefix, strlen(status_prefix)) != 0) fail_msg("got %s", head);
  close(fd);
}

static void test_handshake_policy(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_add_origin(o, "http://good.example");
  ws_options_set_max_handshake_size(o, 1024);
  ws_options_set_handshake_timeout(o, 200);
  ws_server *srv = listen_with(o);
  ws_options_free(o);
  int port = ws_server_port(srv);
  http_expect(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 426");
  char big[3000];
  snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %02000d\r\n\r\n", 0);
  http_expect(port, big, "HTTP/1.1 431");
  char req[1024];
  snprintf(req, sizeof req, "%.*sOrigin: http://evil.example\r\n\r\n", (int)strlen(kUpgradeRequest) - 2, kUpgradeRequest);
  http_expect(port, req, "HTTP/1.1 403");
  snprintf(req, sizeof req, "%.*sOrigin: http://GOOD.example\r\n\r\n", (int)strlen(kUpgradeRequest) - 2, kUpgradeRequest);
  http_expect(port, req, "HTTP/1.1 101");
  http_expect(port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", "HTTP/1.1 426");
  /* A peer that connects and says nothing is dropped after the handshake timeout. */
  int fd = raw_connect(port);
  unsigned char buf[16];
  long long t0 = now_ms();
  assert_int_equal(read_until_eof(fd, buf, sizeof buf, 3000), 0);
  assert_true(now_ms() - t0 < 2000);
  close(fd);
  ws_server_free(srv);
}

static void test_manual_upgrade(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_manual_upgrade(o, 1);
  ws_server *srv = listen_with(o);
  ws_options_free(o);
  int port = ws_server_port(srv);
  /* Reject with a status and a body. */
  int fd = raw_connect(port);
  write_all(fd, kUpgradeRequest, strlen(kUpgradeRequest));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_int_equal(ws_state(s), WS_STATE_CONNECTING);
  assert_string_equal(ws_request_path(s), "/raw");
  assert_int_equal(ws_send(s, "x", 1, WS_TEXT), WS_ESTATE);
  assert_int_equal(ws_upgrade_reject(s, 101, NULL, 0), WS_EINVAL);
  assert_int_equal(ws_upgrade_reject(s, 401, "who are you?", 12), WS_OK);
  unsigned char resp[512];
  int n = read_until_eof(fd, resp, sizeof resp - 1, 3000);
  assert_true(n > 0);
  resp[n] = 0;
  assert_non_null(strstr((char *)resp, "HTTP/1.1 401"));
  assert_non_null(strstr((char *)resp, "who are you?"));
  close(fd);
  ws_free(s);
  /* Accept with an extra header; the client sees it and can talk. */
  fd = raw_connect(port);
  write_all(fd, kUpgradeRequest, strlen(kUpgradeRequest));
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_int_equal(ws_upgrade_add_header(s, "Set-Cookie", "id=1"), WS_OK);
  assert_int_equal(ws_upgrade_add_header(s, "Bad Name", "x"), WS_EINVAL);
  assert_int_equal(ws_upgrade_accept(s, "not-offered"), WS_EINVAL);
  assert_int_equal(ws_upgrade_accept(s, NULL), WS_OK);
  assert_int_equal(ws_send(s, "welcome", 7, WS_TEXT), WS_OK);
  char head[1024];
  assert_true(read_head(fd, head, sizeof head, 3000) > 0);
  assert_non_null(strstr(head, "101 Switching Protocols"));
  assert_non_null(strstr(head, "Set-Cookie: id=1"));
  unsigned char frame[16];
  ssize_t r = read(fd, frame, 9);
  assert_int_equal(r, 9);
  assert_memory_equal(frame, "\x81\x07welcome", 9);
  close(fd);
  ws_free(s);
  /* Accept with one of the client's subprotocols: the 101 names it, and so
   * does ws_subprotocol; one it did not offer is refused. */
  static const char *kWithProtocols =
      "GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Protocol: chat, superchat\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  fd = raw_connect(port);
  write_all(fd, kWithProtocols, strlen(kWithProtocols));
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_string_equal(ws_subprotocol(s), "");
  assert_int_equal(ws_upgrade_accept(s, "chat2"), WS_EINVAL);
  assert_int_equal(ws_upgrade_accept(s, "superchat"), WS_OK);
  assert_true(read_head(fd, head, sizeof head, 3000) > 0);
  assert_non_null(strstr(head, "Sec-WebSocket-Protocol: superchat"));
  assert_string_equal(ws_subprotocol(s), "superchat");
  close(fd);
  ws_free(s);
  ws_server_free(srv);
}

/* Closing the server closes every connection with 1001. */
static void test_server_close_goes_away(void **state) {
  (void)state;
  ws_server *srv = listen_with(NULL);
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_int_equal(ws_server_close(srv), WS_OK);
  assert_int_equal(ws_server_close(srv), WS_OK); /* idempotent */
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 5000), WS_ECLOSED);
  assert_int_equal(ws_close_code(c), 1001);
  assert_int_equal(ws_receive(s, &m, 5000), WS_ECLOSED);
  ws_free(c);
  ws_free(s);
  ws_server_free(srv);
  /* The port is free again. */
}

/* IPv6 literal URLs, on ::1. */
static void test_ipv6(void **state) {
  (void)state;
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("::1", 0, NULL, &srv), WS_OK);
  char url[64];
  snprintf(url, sizeof url, "ws://[::1]:%d/v6", ws_server_port(srv));
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  assert_true(strncmp(ws_peer_address(s), "[::1]:", 6) == 0);
  char host[32];
  snprintf(host, sizeof host, "[::1]:%d", ws_server_port(srv));
  assert_string_equal(ws_request_header(s, "Host"), host);
  assert_int_equal(ws_send(c, "v6", 2, WS_TEXT), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(s, &m, 5000), WS_OK);
  assert_memory_equal(ws_message_data(m), "v6", 2);
  ws_message_free(m);
  ws_free(c);
  ws_free(s);
  ws_server_free(srv);
}

/* A server that accepts TCP and never answers the upgrade: ws_open gives up
 * after the connect timeout. */
static void test_client_handshake_timeout(void **state) {
  (void)state;
  int port = 0;
  int lfd = raw_listen(&port);
  assert_true(lfd >= 0);
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
  ws_options *o = ws_options_new();
  ws_options_set_connect_timeout(o, 300);
  ws_conn *c = NULL;
  long long t0 = now_ms();
  assert_int_equal(ws_open(url, o, &c), WS_ETIMEDOUT);
  long long dt = now_ms() - t0;
  assert_true(dt >= 280 && dt < 2000);
  assert_null(c);
  ws_options_free(o);
  close(lfd);
}

/* Idle timeout: a silent client is closed with 1001. Keepalive: a peer that
 * never answers pings is dropped (1006), and it did receive the pings. */
static void test_idle_and_keepalive(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_idle_timeout(o, 200);
  ws_server *srv = listen_with(o);
  ws_options_free(o);
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  ws_message *m = NULL;
  long long t0 = now_ms();
  assert_int_equal(ws_receive(c, &m, 5000), WS_ECLOSED);
  assert_true(now_ms() - t0 >= 150);
  assert_int_equal(ws_close_code(c), 1001);
  ws_free(c);
  ws_free(s);
  ws_server_free(srv);

  o = ws_options_new();
  ws_options_set_keepalive(o, 100, 100);
  srv = listen_with(o);
  ws_options_free(o);
  int fd = raw_upgrade(ws_server_port(srv));
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  t0 = now_ms();
  assert_int_equal(ws_receive(s, &m, 5000), WS_ECLOSED);
  assert_true(now_ms() - t0 < 2000);
  assert_int_equal(ws_close_code(s), 1006);
  unsigned char buf[64];
  int got = read_until_eof(fd, buf, sizeof buf, 2000);
  assert_true(got >= 2);
  assert_int_equal(buf[0], 0x89); /* a ping came first */
  close(fd);
  ws_free(s);
  ws_server_free(srv);
}

/* Pull mode: a protocol error right behind a valid message. The application
 * still reads the message and its reply goes out before the close (1002). */
static void test_reply_before_deferred_failure(void **state) {
  (void)state;
  ws_server *srv = listen_with(NULL);
  int fd = raw_upgrade(ws_server_port(srv));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  unsigned char f[64];
  size_t n = client_frame(f, 0x81, "Hello", 5);
  n += client_frame(f + n, 0xC1, "bad", 3); /* RSV1: protocol error */
  write_all(fd, f, n);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(s, &m, 5000), WS_OK);
  usleep(50 * 1000); /* the loop has surely parsed the bad frame by now */
  assert_int_equal(ws_send(s, ws_message_data(m), ws_message_size(m), WS_TEXT), WS_OK);
  ws_message_free(m);
  assert_int_equal(ws_receive(s, &m, 5000), WS_ECLOSED);
  assert_int_equal(ws_close_code(s), 1002);
  unsigned char buf[64];
  int got = read_until_eof(fd, buf, sizeof buf, 3000);
  assert_int_equal(got, 11);
  assert_memory_equal(buf, "\x81\x05Hello\x88\x02\x03\xea", 11);
  close(fd);
  ws_free(s);
  ws_server_free(srv);
}

/* The server runs out of descriptors. The connections it cannot take are
 * refused (accepted with a spare descriptor and closed at once) rather than
 * left in the backlog, where they would wake the loop on every pass: the
 * loop must not spin, every client must get an answer (a 101 or the end of
 * the connection, never silence), and once descriptors are free again the
 * server accepts as before. The client is a child process, so that its
 * sockets do not count against the server's limit. */
static void echo_cb(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  ws_send(ws, data, len, type);
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

enum { kClients = 40 };

/* Child: kClients upgrade requests; reports how many got a 101, how many saw
 * the connection end, how many heard nothing in 3 s; holds the connections
 * until the parent says so. System calls only (it is a fork of a threaded
 * process). */
static void fd_client(int port, int report, int hold) {
  int fds[kClients], state[kClients]; /* 0 waiting, 1 upgraded, 2 ended */
  for (int i = 0; i < kClients; i++) {
    fds[i] = raw_connect(port);
    state[i] = fds[i] < 0 ? 2 : 0;
    if (fds[i] >= 0 && write_all(fds[i], kUpgradeRequest, strlen(kUpgradeRequest)) != 0) state[i] = 2;
  }
  long long deadline = now_ms() + 3000;
  for (;;) {
    struct pollfd p[kClients];
    int n = 0, idx[kClients];
    for (int i = 0; i < kClients; i++)
      if (state[i] == 0) {
        p[n].fd = fds[i];
        p[n].events = POLLIN;
        idx[n++] = i;
      }
    long long left = deadline - now_ms();
    if (n == 0 || left <= 0 || poll(p, (nfds_t)n, (int)left) <= 0) break;
    for (int j = 0; j < n; j++) {
      if (!p[j].revents) continue;
      char b[256];
      ssize_t r = read(p[j].fd, b, sizeof b);
      state[idx[j]] = r >= 12 && memcmp(b, "HTTP/1.1 101", 12) == 0 ? 1 : 2;
    }
  }
  int out[3] = {0, 0, 0}; /* upgraded, ended, silent */
  for (int i = 0; i < kClients; i++) out[state[i] == 1 ? 0 : state[i] == 2 ? 1 : 2]++;
  if (write(report, out, sizeof out) != (ssize_t)sizeof out) _exit(2);
  char c;
  if (read(hold, &c, 1) < 0) _exit(3);
  for (int i = 0; i < kClients; i++)
    if (fds[i] >= 0) close(fds[i]);
  _exit(0);
}

static void test_out_of_descriptors(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {NULL, echo_cb, NULL, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  int port = ws_server_port(srv);
  int report[2], hold[2];
  assert_int_equal(pipe(report), 0);
  assert_int_equal(pipe(hold), 0);
  /* A limit that leaves the server room for 6 more descriptors: new ones
   * take the lowest free numbers, so the limit goes just past the 6th free
   * number (descriptors open above it stay usable). */
  int free_seen = 0, limit = 0;
  while (free_seen < 6) {
    if (fcntl(limit, F_GETFD) == -1) free_seen++;
    limit++;
  }
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = (rlim_t)limit;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(report[0]);
    close(hold[1]);
    fd_client(port, report[1], hold[0]);
  }
  close(report[1]);
  close(hold[0]);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  int counts[3] = {0, 0, 0};
  struct pollfd p = {report[0], POLLIN, 0};
  assert_int_equal(poll(&p, 1, 10000), 1);
  assert_int_equal(read(report[0], counts, sizeof counts), (ssize_t)sizeof counts);
  /* The refused connections are gone; the loop sleeps while the child holds
   * the ones it got (0.3 s of CPU in 1 s would be a spinning loop). */
  double t0 = cpu_seconds();
  usleep(1000 * 1000);
  double spent = cpu_seconds() - t0;
  assert_int_equal(write(hold[1], "x", 1), 1);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  close(report[0]);
  close(hold[1]);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_true(counts[0] >= 1);              /* some were served */
  assert_true(counts[1] >= 1);              /* some were refused, at once */
  assert_int_equal(counts[2], 0);           /* none left without an answer */
  assert_int_equal(counts[0] + counts[1], kClients);
  assert_true(spent < 0.3);
  /* Descriptors are free again: served as before. */
  long long deadline = now_ms() + 3000;
  int fd = -1;
  while (fd < 0 && now_ms() < deadline) {
    fd = raw_upgrade(port);
    if (fd < 0) usleep(20000);
  }
  assert_true(fd >= 0);
  close(fd);
  ws_server_free(srv);
}

/* A loop that went a while busy without any timer (an open connection needs none)
 * still times a new connection's handshake from now: libuv's clock, which
 * the timers use, moves only when libuv runs, and a loop busy or idle with
 * sockets alone does not run it (a stale clock expired the next handshake's
 * timer at once). */
static void test_handshake_timer_after_a_timerless_while(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {NULL, echo_cb, NULL, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL), WS_OK);
  assert_int_equal(ws_options_set_handshake_timeout(o, 300), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  int first = raw_upgrade(ws_server_port(srv));
  assert_true(first >= 0);
  /* Longer than the handshake timeout, the loop kept busy by the first
   * connection alone (no timer armed), and then on into the second's. */
  int second = -1;
  unsigned char frame[32], sink[4096];
  size_t n = client_frame(frame, 0x82, "ping", 4);
  long long start = now_ms();
  while (now_ms() - start < 900) {
    if (second < 0 && now_ms() - start >= 800) {
      second = raw_connect(ws_server_port(srv));
      assert_true(second >= 0);
    }
    assert_int_equal(write_all(first, frame, n), 0);
    struct pollfd p = {first, POLLIN, 0};
    if (poll(&p, 1, 1) > 0) assert_true(read(first, sink, sizeof sink) > 0);
  }
  /* The request comes 100 ms after the connection, within its 300 ms. */
  assert_int_equal(write_all(second, kUpgradeRequest, strlen(kUpgradeRequest)), 0);
  char head[2048];
  assert_true(read_head(second, head, sizeof head, 3000) >= 0);
  assert_memory_equal(head, "HTTP/1.1 101", 12);
  close(second);
  close(first);
  ws_server_free(srv);
}

/* A connection paused by receive flow control (its application reads
 * nothing) whose peer resets it. The paused socket is out of the loop's
 * epoll set (nothing watched), so the reset's error, which epoll reports
 * level-triggered whatever is watched, cannot make the loop spin; the
 * messages that arrived are handed out, then the reset shows: WS_ECLOSED,
 * 1006. */
static void test_reset_while_paused(void **state) {
  (void)state;
  ws_options *so = ws_options_new();
  assert_int_equal(ws_options_set_receive_queue_limit(so, 64 * 1024), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &srv), WS_OK);
  ws_options_free(so);
  int fd = raw_upgrade(ws_server_port(srv));
  assert_true(fd >= 0);
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  /* 8 KiB frames until the socket takes no more: the server stopped reading. */
  static unsigned char payload[8192], f[8300];
  for (size_t i = 0; i < sizeof payload; i++) payload[i] = (unsigned char)i;
  size_t n = client_frame(f, 0x82, payload, sizeof payload);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int frames = 0;
  long long deadline = now_ms() + 10000;
  size_t off = 0;
  for (int idle = 0; idle < 50 && now_ms() < deadline;) {
    ssize_t w = write(fd, f + off, n - off);
    if (w > 0) {
      off += (size_t)w;
      if (off == n) {
        off = 0;
        frames++;
      }
      idle = 0;
      continue;
    }
    assert_true(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    usleep(2000);
    idle++;
  }
  assert_true(frames > 8);      /* more than the 64 KiB limit went out... */
  assert_true(frames < 100000); /* ...and then the server held us back */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd); /* reset */
  usleep(100 * 1000);
  double t0 = cpu_seconds();
  usleep(500 * 1000);
  double spent = cpu_seconds() - t0;
  assert_true(spent < 0.15); /* 0.5 s of CPU in 0.5 s would be a spinning loop */
  int got = 0, rc;
  ws_message *m = NULL;
  while ((rc = ws_receive(s, &m, 2000)) == WS_OK) {
    assert_int_equal(ws_message_size(m), sizeof payload);
    assert_memory_equal(ws_message_data(m), payload, sizeof payload);
    ws_message_free(m);
    got++;
  }
  assert_int_equal(rc, WS_ECLOSED);
  assert_true(got >= 8); /* at least what came before the pause */
  assert_true(got <= frames);
  assert_int_equal(ws_close_code(s), WS_CLOSE_ABNORMAL);
  ws_free(s);
  ws_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_peer_vanishes_mid_frame),
      cmocka_unit_test(test_protocol_errors_on_the_wire),
      cmocka_unit_test(test_close_timeout),
      cmocka_unit_test(test_handshake_policy),
      cmocka_unit_test(test_manual_upgrade),
      cmocka_unit_test(test_server_close_goes_away),
      cmocka_unit_test(test_ipv6),
      cmocka_unit_test(test_client_handshake_timeout),
      cmocka_unit_test(test_idle_and_keepalive),
      cmocka_unit_test(test_reply_before_deferred_failure),
      cmocka_unit_test(test_lingering_close_after_a_failure),
      cmocka_unit_test(test_out_of_descriptors),
      cmocka_unit_test(test_handshake_timer_after_a_timerless_while),
      cmocka_unit_test(test_reset_while_paused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
