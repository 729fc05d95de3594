/* The loop-thread callback mode (on_open, on_message with a borrowed buffer,
 * on_close, on_drain), and backpressure: a peer that does not read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api_util.h"

static struct {
  pthread_mutex_t mu;
  int opened, closed, messages, last_close_code;
  char last_reason[64];
} g = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, ""};

static void on_open(ws_conn *ws, void *user) {
  assert_ptr_equal(user, &g);
  pthread_mutex_lock(&g.mu);
  g.opened++;
  pthread_mutex_unlock(&g.mu);
  ws_send(ws, "hello from on_open", 18, WS_TEXT);
}

static void on_message(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  pthread_mutex_lock(&g.mu);
  g.messages++;
  pthread_mutex_unlock(&g.mu);
  if (len == 4 && memcmp(data, "quit", 4) == 0) {
    assert_int_equal(ws_close(ws, 4000, "asked to quit"), WS_OK); /* does not block here */
    return;
  }
  assert_int_equal(ws_send(ws, data, len, type), WS_OK); /* no thread hop */
}

static void on_close(ws_conn *ws, int code, const char *reason, void *user) {
  (void)ws;
  (void)user;
  pthread_mutex_lock(&g.mu);
  g.closed++;
  g.last_close_code = code;
  snprintf(g.last_reason, sizeof g.last_reason, "%s", reason);
  pthread_mutex_unlock(&g.mu);
}

static int get(int *field) {
  pthread_mutex_lock(&g.mu);
  int v = *field;
  pthread_mutex_unlock(&g.mu);
  return v;
}

static void test_callback_echo(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {on_open, on_message, on_close, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, &g), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  ws_conn *dummy = NULL;
  assert_int_equal(ws_accept(srv, &dummy, 0), WS_ENOTSUP);
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/cb");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
  assert_memory_equal(ws_message_data(m), "hello from on_open", 18);
  ws_message_free(m);
  static unsigned char big[1 << 20];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)i;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ws_send(c, big, sizeof big, WS_BINARY), WS_OK);
    assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
    assert_int_equal(ws_message_size(m), sizeof big);
    assert_memory_equal(ws_message_data(m), big, sizeof big);
    ws_message_free(m);
  }
  ws_send(c, "quit", 4, WS_TEXT);
  assert_int_equal(ws_receive(c, &m, 5000), WS_ECLOSED);
  assert_int_equal(ws_close_code(c), 4000);
  assert_string_equal(ws_close_reason(c), "asked to quit");
  long long deadline = now_ms() + 3000;
  while (get(&g.closed) < 1 && now_ms() < deadline) usleep(1000);
  assert_int_equal(get(&g.opened), 1);
  assert_int_equal(get(&g.closed), 1);
  assert_int_equal(get(&g.messages), 4);
  assert_int_equal(get(&g.last_close_code), 4000);
  ws_free(c);
  ws_server_free(srv);
}

/* Backpressure: the peer never reads, so the send queue fills up. */
static void test_backpressure(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_send_queue_limit(o, 256 * 1024);
  ws_options_set_send_timeout(o, 0);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  int fd = raw_upgrade(ws_server_port(srv));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  static char chunk[64 * 1024];
  int rc = WS_OK, sent = 0;
  for (int i = 0; i < 10000 && rc == WS_OK; i++) {
    rc = ws_send(s, chunk, sizeof chunk, WS_BINARY);
    if (rc == WS_OK) sent++;
    usleep(200);
  }
  assert_int_equal(rc, WS_EAGAIN);
  /* (ws_buffered_amount is not asserted here: the loop keeps moving bytes into
   * the kernel's buffers after the refusal.) */
  assert_true(sent > 4);
  /* Drain the peer: the queue empties and sending works again. */
  static unsigned char sink[1 << 16];
  long long deadline = now_ms() + 10000;
  while (ws_buffered_amount(s) > 0 && now_ms() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0 && read(fd, sink, sizeof sink) <= 0) break;
  }
  assert_int_equal(ws_buffered_amount(s), 0);
  assert_int_equal(ws_send(s, chunk, 10, WS_BINARY), WS_OK);
  close(fd);
  ws_free(s);
  ws_server_free(srv);
  ws_options_free(o);
}

/* A blocking send with a timeout waits, then returns WS_ETIMEDOUT. */
static void test_send_timeout(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_send_queue_limit(o, 64 * 1024);
  ws_options_set_send_timeout(o, 200);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  int fd = raw_upgrade(ws_server_port(srv));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 5000), WS_OK);
  static char chunk[64 * 1024];
  int rc = WS_OK;
  long long t0 = 0;
  for (int i = 0; i < 10000 && rc == WS_OK; i++) {
    t0 = now_ms();
    rc = ws_send(s, chunk, sizeof chunk, WS_BINARY);
  }
  assert_int_equal(rc, WS_ETIMEDOUT);
  assert_true(now_ms() - t0 >= 150);
  close(fd);
  ws_free(s);
  ws_server_free(srv);
}

/* on_drain fires when the queue has room again after a WS_EAGAIN in a callback. */
static struct {
  pthread_mutex_t mu;
  int eagain, drained;
} d = {PTHREAD_MUTEX_INITIALIZER, 0, 0};

static void flood(ws_conn *ws) {
  static char chunk[64 * 1024];
  for (int i = 0; i < 1000; i++) {
    if (ws_send(ws, chunk, sizeof chunk, WS_BINARY) == WS_EAGAIN) {
      pthread_mutex_lock(&d.mu);
      d.eagain++;
      pthread_mutex_unlock(&d.mu);
      return;
    }
  }
}

static void drain_on_open(ws_conn *ws, void *user) {
  (void)user;
  flood(ws);
}

static void drain_on_drain(ws_conn *ws, void *user) {
  (void)ws;
  (void)user;
  pthread_mutex_lock(&d.mu);
  d.drained++;
  pthread_mutex_unlock(&d.mu);
}

static void test_on_drain(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {drain_on_open, NULL, NULL, drain_on_drain, NULL};
  ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL);
  ws_options_set_send_queue_limit(o, 512 * 1024);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  int fd = raw_upgrade(ws_server_port(srv));
  long long deadline = now_ms() + 5000;
  int eagain = 0;
  while (!eagain && now_ms() < deadline) {
    pthread_mutex_lock(&d.mu);
    eagain = d.eagain;
    pthread_mutex_unlock(&d.mu);
    usleep(1000);
  }
  assert_int_equal(eagain, 1);
  static unsigned char sink[1 << 16];
  int drained = 0;
  while (!drained && now_ms() < deadline + 5000) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0 && read(fd, sink, sizeof sink) <= 0) break;
    pthread_mutex_lock(&d.mu);
    drained = d.drained;
    pthread_mutex_unlock(&d.mu);
  }
  assert_int_equal(drained, 1);
  close(fd);
  ws_server_free(srv);
}

/* A burst of frames in one read, echoed from the loop's read buffer: payloads
 * of 2 KiB and more go to the socket from where they lie, behind their frame
 * headers, in one write with the rest of the batch. The server's bytes must
 * be exactly the frames asked for, in order, the pong in its place. */
static void plain_echo(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  assert_int_equal(ws_send(ws, data, len, type), WS_OK);
}

static size_t masked_frame(unsigned char *out, unsigned char b0, const unsigned char *payload, size_t n) {
  static const unsigned char key[4] = {0x11, 0x5a, 0xc3, 0x7e};
  return client_frame_key(out, b0, payload, n, key);
}

static size_t server_frame(unsigned char *out, unsigned char b0, const unsigned char *payload, size_t n) {
  size_t h = 0;
  out[h++] = b0;
  if (n < 126) {
    out[h++] = (unsigned char)n;
  } else {
    out[h++] = 126;
    out[h++] = (unsigned char)(n >> 8);
    out[h++] = (unsigned char)n;
  }
  memcpy(out + h, payload, n);
  return h + n;
}

static void test_echo_batch_from_read_buffer(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {NULL, plain_echo, NULL, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  static unsigned char a[3000], t[5000], b[100], big[20000], c2[2048];
  for (size_t i = 0; i < sizeof a; i++) a[i] = (unsigned char)(i * 7);
  for (size_t i = 0; i < sizeof t; i += 2) memcpy(t + i, i % 4 ? "ab" : "\xc3\xa9", 2); /* valid UTF-8 */
  for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(255 - i);
  for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i >> 3);
  for (size_t i = 0; i < sizeof c2; i++) c2[i] = (unsigned char)(i ^ 0x5c);
  static unsigned char in[40000], want[40000], got[40000];
  size_t n = 0, w = 0;
  n += masked_frame(in + n, 0x82, a, sizeof a);
  w += server_frame(want + w, 0x82, a, sizeof a);
  n += masked_frame(in + n, 0x89, (const unsigned char *)"p1", 2);
  w += server_frame(want + w, 0x8A, (const unsigned char *)"p1", 2);
  n += masked_frame(in + n, 0x81, t, sizeof t);
  w += server_frame(want + w, 0x81, t, sizeof t);
  n += masked_frame(in + n, 0x82, b, sizeof b);
  w += server_frame(want + w, 0x82, b, sizeof b);
  n += masked_frame(in + n, 0x82, big, sizeof big);
  w += server_frame(want + w, 0x82, big, sizeof big);
  n += masked_frame(in + n, 0x82, c2, sizeof c2);
  w += server_frame(want + w, 0x82, c2, sizeof c2);
  n += masked_frame(in + n, 0x88, (const unsigned char *)"\x03\xe8", 2);
  int fd = raw_upgrade(ws_server_port(srv));
  assert_true(fd >= 0);
  assert_int_equal(write_all(fd, in, n), 0);
  int got_n = read_until_eof(fd, got, sizeof got, 5000);
  assert_true(got_n >= (int)w + 2);
  assert_memory_equal(got, want, w);
  assert_int_equal(got[w], 0x88); /* then the answer to our close */
  close(fd);
  ws_server_free(srv);
}

/* Streaming receive: a server with on_message_part forwards each part as it
 * arrives (as the fragments of one message). A client of ours sends a 4 MiB
 * message, a text message in fragments that split a UTF-8 sequence, and an
 * empty one: each comes back whole and equal; the 4 MiB one came in many
 * parts, flagged first..last in order; a message that came whole is one part
 * with both flags. A part never needs a buffer of the message's size. */
typedef struct {
  int parts, whole, max_part, bad_flags;
  int in_msg;
} part_stats;
static part_stats g_parts;

static void part_echo(ws_conn *ws, int type, const void *data, size_t len, int flags, void *user) {
  part_stats *st = user;
  if (((flags & WS_PART_FIRST) != 0) == st->in_msg) st->bad_flags++;
  st->in_msg = !(flags & WS_PART_LAST);
  if (flags == (WS_PART_FIRST | WS_PART_LAST)) {
    st->whole++;
    ws_send(ws, data, len, type);
    return;
  }
  st->parts++;
  if ((int)len > st->max_part) st->max_part = (int)len;
  ws_send_fragment(ws, data, len, type, (flags & WS_PART_LAST) != 0);
}

static void test_stream_parts(void **state) {
  (void)state;
  memset(&g_parts, 0, sizeof g_parts);
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {.on_message_part = part_echo};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, &g_parts), WS_OK);
  assert_int_equal(ws_options_set_max_message_size(o, 8u << 20), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  char url[128];
  url_for(url, sizeof url, ws_server_port(srv), "/");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);

  size_t big_n = 4u << 20;
  unsigned char *big = malloc(big_n);
  for (size_t i = 0; i < big_n; i++) big[i] = (unsigned char)(i * 13 + (i >> 11));
  assert_int_equal(ws_send(c, big, big_n, WS_BINARY), WS_OK);
  assert_int_equal(ws_send_fragment(c, "caf\xff", 4, WS_TEXT, 0), WS_EUTF8); /* our side checks too */
  assert_int_equal(ws_send_fragment(c, "caf", 3, WS_TEXT, 0), WS_OK);
  assert_int_equal(ws_send_fragment(c, "\xc3\xa9 \xe2\x82", 5, WS_TEXT, 0), WS_OK); /* ends inside the euro sign */
  assert_int_equal(ws_send_fragment(c, "\xac!", 2, WS_TEXT, 1), WS_OK);
  assert_int_equal(ws_send(c, "", 0, WS_BINARY), WS_OK);
  assert_int_equal(ws_send(c, "short", 5, WS_TEXT), WS_OK);

  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 10000), WS_OK);
  assert_int_equal(ws_message_type(m), WS_BINARY);
  assert_int_equal(ws_message_size(m), big_n);
  assert_memory_equal(ws_message_data(m), big, big_n);
  ws_message_free(m);
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
  assert_int_equal(ws_message_type(m), WS_TEXT);
  assert_string_equal(ws_message_data(m), "caf\xc3\xa9 \xe2\x82\xac!");
  ws_message_free(m);
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
  assert_int_equal(ws_message_size(m), 0);
  ws_message_free(m);
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
  assert_string_equal(ws_message_data(m), "short");
  ws_message_free(m);
  assert_int_equal(ws_close(c, 1000, NULL), WS_OK);
  ws_free(c);
  ws_server_free(srv); /* joins the loop: g_parts is final */
  assert_int_equal(g_parts.bad_flags, 0);
  assert_true(g_parts.parts >= 4 + 3);   /* the big one in pieces, the text in its three fragments */
  assert_true(g_parts.max_part <= (int)(big_n / 4));
  assert_true(g_parts.whole >= 2);       /* the empty and the short message at least */
  free(big);
}

/* Invalid text in a stream: the parts before the bad byte were handed over,
 * then the connection closes with 1007 (the peer sees it). */
static void test_stream_invalid_text(void **state) {
  (void)state;
  memset(&g_parts, 0, sizeof g_parts);
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {.on_message_part = part_echo};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, &g_parts), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  int fd = raw_upgrade(ws_server_port(srv));
  assert_true(fd >= 0);
  static unsigned char in[200];
  size_t n = masked_frame(in, 0x01, (const unsigned char *)"valid start", 11);
  assert_int_equal(write_all(fd, in, n), 0);
  usleep(100 * 1000); /* the first fragment is handed over on its own */
  n = masked_frame(in, 0x80, (const unsigned char *)"bad \xff", 5);
  assert_int_equal(write_all(fd, in, n), 0);
  static unsigned char got[400];
  int got_n = read_until_eof(fd, got, sizeof got, 5000);
  /* the echoed first fragment, then a close frame with 1007 */
  assert_true(got_n >= 13 + 4);
  assert_int_equal(got[0], 0x01);
  assert_int_equal(got[1], 11);
  assert_memory_equal(got + 2, "valid start", 11);
  assert_int_equal(got[13], 0x88);
  assert_int_equal((got[15] << 8) | got[16], 1007);
  close(fd);
  ws_server_free(srv);
  assert_int_equal(g_parts.parts, 1);
}

/* Sends from one connection's callback to others (a broadcast), while those
 * others are idle between messages. A connection idle in the middle of a
 * fragmented message it is sending keeps that message's state: the library
 * parks an idle connection's session only when nothing is under way, so the
 * last fragment, sent from another connection's callback later, is a
 * continuation frame and the peer gets one whole message. */
static struct {
  ws_conn *conns[3];
  int open[3]; /* a fragmented message to it is under way */
  int n, messages, estate;
} gb;

static void bc_open(ws_conn *ws, void *user) {
  (void)user;
  pthread_mutex_lock(&g.mu);
  gb.conns[gb.n++] = ws;
  pthread_mutex_unlock(&g.mu);
}

static void bc_message(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  (void)type;
  for (int i = 0; i < gb.n; i++) {
    ws_conn *to = gb.conns[i];
    if (to == ws) continue;
    if (len == 5 && memcmp(data, "begin", 5) == 0) {
      assert_int_equal(ws_send_fragment(to, "part1-", 6, WS_TEXT, 0), WS_OK);
      gb.open[i] = 1;
    } else if (len == 3 && memcmp(data, "end", 3) == 0) {
      if (gb.open[i]) assert_int_equal(ws_send_fragment(to, "part2", 5, WS_TEXT, 1), WS_OK);
      gb.open[i] = 0;
    } else {
      int rc = ws_send(to, data, len, WS_TEXT);
      if (rc == WS_ESTATE) gb.estate++; /* a fragmented message of its own is open */
      else assert_int_equal(rc, WS_OK);
    }
  }
  pthread_mutex_lock(&g.mu);
  gb.messages++;
  pthread_mutex_unlock(&g.mu);
}

static void wait_messages(int n) {
  long long deadline = now_ms() + 5000;
  while (get(&gb.messages) < n && now_ms() < deadline) usleep(1000);
  assert_int_equal(get(&gb.messages), n);
  usleep(20000); /* the server goes idle: sessions at rest are parked */
}

static void expect_text(ws_conn *c, const char *want) {
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c, &m, 5000), WS_OK);
  assert_int_equal(ws_message_type(m), WS_TEXT);
  assert_int_equal(ws_message_size(m), strlen(want));
  assert_memory_equal(ws_message_data(m), want, strlen(want));
  ws_message_free(m);
}

static void test_broadcast_between_connections(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {bc_open, bc_message, NULL, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/bc");
  ws_conn *c[3];
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ws_open(url, NULL, &c[i]), WS_OK);
    long long deadline = now_ms() + 5000;
    while (get(&gb.n) < i + 1 && now_ms() < deadline) usleep(1000);
    assert_int_equal(get(&gb.n), i + 1);
  }
  assert_int_equal(ws_send(c[0], "begin", 5, WS_TEXT), WS_OK); /* 1 and 2: a fragment each */
  wait_messages(1);
  assert_int_equal(ws_send(c[0], "hello", 5, WS_TEXT), WS_OK); /* refused for 1 and 2 */
  wait_messages(2);
  assert_int_equal(gb.estate, 2);
  assert_int_equal(ws_ping(c[1], "p", 1), WS_OK); /* answered by an idle connection's pong */
  assert_int_equal(ws_send(c[1], "end", 3, WS_TEXT), WS_OK); /* 2's message ends */
  wait_messages(3);
  assert_int_equal(ws_send(c[2], "end", 3, WS_TEXT), WS_OK); /* 1's message ends */
  wait_messages(4);
  assert_int_equal(ws_send(c[0], "hi", 2, WS_TEXT), WS_OK);
  wait_messages(5);
  expect_text(c[1], "part1-part2");
  expect_text(c[1], "hi");
  expect_text(c[2], "part1-part2");
  expect_text(c[2], "hi");
  /* 0 got nothing: every one of its peers' messages went to the others */
  ws_message *m = NULL;
  assert_int_equal(ws_receive(c[0], &m, 50), WS_ETIMEDOUT);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ws_close(c[i], 1000, ""), WS_OK);
    ws_free(c[i]);
  }
  ws_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_callback_echo),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_send_timeout),
      cmocka_unit_test(test_on_drain),
      cmocka_unit_test(test_echo_batch_from_read_buffer),
      cmocka_unit_test(test_stream_parts),
      cmocka_unit_test(test_stream_invalid_text),
      cmocka_unit_test(test_broadcast_between_connections),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
