/* Thread safety: one thread receives while four send on the same connection;
 * ws_free from another thread while the loop is busy; servers on several loop
 * threads; loop threads that stop when nothing uses them. Run under
 * ThreadSanitizer by CI (build-tsan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>

#include "api_util.h"

/* Threads of this process, from the kernel's own count. */
static int thread_count(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  if (f) fclose(f);
  return n;
}

static int wait_thread_count(int want, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  int n = thread_count();
  while (n != want && now_ms() < deadline) {
    usleep(5000);
    n = thread_count();
  }
  return n;
}

/* First in this file: no library handle exists yet. A server with three loop
 * threads starts exactly three; freeing it stops them all; the library starts
 * again on the next use. */
static void *nothing(void *p) { return p; }

static void test_loop_threads_stop_when_unused(void **state) {
  (void)state;
  /* A thread of our own first: ThreadSanitizer starts its helper thread with
   * the first pthread_create, and base must count it. */
  pthread_t t;
  pthread_create(&t, NULL, nothing, NULL);
  pthread_join(t, NULL);
  /* The joined thread can stay in the kernel's count for a moment after
   * pthread_join returns: wait for the count to settle. */
  int base = thread_count(), prev;
  do {
    prev = base;
    usleep(20000);
    base = thread_count();
  } while (base != prev);
  assert_true(base >= 1);
  ws_options *o = ws_options_new();
  assert_int_equal(ws_options_set_threads(o, 3), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  assert_int_equal(thread_count(), base + 3);
  ws_server_free(srv);
  assert_int_equal(wait_thread_count(base, 2000), base);
  /* Started again by the next server, and it works. */
  ws_options_set_threads(o, 1);
  echo_server e;
  assert_int_equal(echo_start(&e, o), WS_OK);
  ws_options_free(o);
  char url[64];
  url_for(url, sizeof url, e.port, "/again");
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(url, NULL, &ws), WS_OK);
  assert_int_equal(ws_send(ws, "again", 5, WS_TEXT), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 5000), WS_OK);
  assert_int_equal(ws_message_size(m), 5);
  ws_message_free(m);
  ws_free(ws);
  echo_stop(&e);
}

#define LOOPS 4
#define CLIENTS 64

typedef struct {
  pthread_mutex_t mu;
  pthread_t seen[CLIENTS];
  int nseen;
  int wrong_thread; /* a connection's callbacks ran on two threads */
  int opened, closed;
} mt_state;

static void mt_on_open(ws_conn *ws, void *user) {
  mt_state *st = (mt_state *)user;
  pthread_t self = pthread_self();
  pthread_mutex_lock(&st->mu);
  int known = 0;
  for (int i = 0; i < st->nseen; i++) known |= pthread_equal(st->seen[i], self);
  if (!known && st->nseen < CLIENTS) st->seen[st->nseen++] = self;
  st->opened++;
  pthread_mutex_unlock(&st->mu);
  /* Remembered per connection: every later callback must run on this thread. */
  pthread_t *mine = malloc(sizeof *mine);
  *mine = self;
  ws_set_user_data(ws, mine);
}

static void mt_on_message(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  mt_state *st = (mt_state *)user;
  pthread_t *mine = (pthread_t *)ws_get_user_data(ws);
  if (!pthread_equal(*mine, pthread_self())) {
    pthread_mutex_lock(&st->mu);
    st->wrong_thread++;
    pthread_mutex_unlock(&st->mu);
  }
  ws_send(ws, data, len, type);
}

static void mt_on_close(ws_conn *ws, int code, const char *reason, void *user) {
  (void)code;
  (void)reason;
  mt_state *st = (mt_state *)user;
  pthread_t *mine = (pthread_t *)ws_get_user_data(ws);
  pthread_mutex_lock(&st->mu);
  if (!pthread_equal(*mine, pthread_self())) st->wrong_thread++;
  st->closed++;
  pthread_mutex_unlock(&st->mu);
  ws_set_user_data(ws, NULL);
  free(mine);
}

static void echo_all(int port, ws_conn **conns) {
  char url[64];
  url_for(url, sizeof url, port, "/mt");
  for (int i = 0; i < CLIENTS; i++) assert_int_equal(ws_open(url, NULL, &conns[i]), WS_OK);
  char msg[32];
  for (int i = 0; i < CLIENTS; i++) {
    int n = snprintf(msg, sizeof msg, "client %d", i);
    assert_int_equal(ws_send(conns[i], msg, (size_t)n, WS_TEXT), WS_OK);
  }
  for (int i = 0; i < CLIENTS; i++) {
    ws_message *m = NULL;
    assert_int_equal(ws_receive(conns[i], &m, 10000), WS_OK);
    int n = snprintf(msg, sizeof msg, "client %d", i);
    assert_int_equal(ws_message_size(m), (size_t)n);
    assert_memory_equal(ws_message_data(m), msg, (size_t)n);
    ws_message_free(m);
  }
}

/* Callback mode on four loop threads: the kernel spreads the connections over
 * the listeners (SO_REUSEPORT), each connection stays on its thread. */
static void test_server_on_several_threads_callbacks(void **state) {
  (void)state;
  mt_state st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.mu, NULL);
  ws_callbacks cbs = {mt_on_open, mt_on_message, mt_on_close, NULL, NULL};
  ws_options *o = ws_options_new();
  ws_options_set_threads(o, LOOPS);
  ws_options_set_callbacks(o, &cbs, sizeof cbs, &st);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  static ws_conn *conns[CLIENTS];
  echo_all(ws_server_port(srv), conns);
  for (int i = 0; i < CLIENTS; i++) {
    assert_int_equal(ws_close(conns[i], 1000, NULL), WS_OK);
    ws_free(conns[i]);
  }
  long long deadline = now_ms() + 5000;
  for (;;) {
    pthread_mutex_lock(&st.mu);
    int closed = st.closed;
    pthread_mutex_unlock(&st.mu);
    if (closed == CLIENTS || now_ms() > deadline) break;
    usleep(2000);
  }
  pthread_mutex_lock(&st.mu);
  assert_int_equal(st.opened, CLIENTS);
  assert_int_equal(st.closed, CLIENTS);
  assert_int_equal(st.wrong_thread, 0);
  /* 64 connections all hashed onto one of four listeners: (1/4)^63. */
  assert_true(st.nseen >= 2);
  assert_true(st.nseen <= LOOPS);
  pthread_mutex_unlock(&st.mu);
  ws_server_free(srv);
  pthread_mutex_destroy(&st.mu);
}

/* Pull mode on four loop threads; ws_server_close reaches the connections of
 * every loop (1001). */
static void test_server_on_several_threads_pull(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_options_set_threads(o, LOOPS);
  echo_server e;
  assert_int_equal(echo_start(&e, o), WS_OK);
  ws_options_free(o);
  static ws_conn *conns[CLIENTS];
  echo_all(e.port, conns);
  ws_server_close(e.srv);
  for (int i = 0; i < CLIENTS; i++) {
    ws_message *m = NULL;
    assert_int_equal(ws_receive(conns[i], &m, 5000), WS_ECLOSED);
    assert_int_equal(ws_close_code(conns[i]), WS_CLOSE_GOING_AWAY);
    ws_free(conns[i]);
  }
  echo_stop(&e);
}

/* A port held by a one-thread server cannot be shared by a several-thread
 * one (SO_REUSEPORT needs every socket to opt in), and ws_listen cleans up. */
static void test_several_threads_port_in_use(void **state) {
  (void)state;
  ws_server *one = NULL, *many = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, NULL, &one), WS_OK);
  ws_options *o = ws_options_new();
  ws_options_set_threads(o, 3);
  assert_int_equal(ws_listen("127.0.0.1", ws_server_port(one), o, &many), WS_EADDRINUSE);
  assert_null(many);
  ws_options_free(o);
  ws_server_free(one);
}

#define SENDERS 4
#define PER_SENDER 500

typedef struct {
  ws_conn *ws;
  int id;
} sender_arg;

/* Message i of a sender: "id:i:" padded with one letter to a size that is
 * small for most (queued side by side in the connection's send buffer) and
 * over 4 KiB for every 7th (queued on its own), so both kinds interleave. */
static size_t padded_size(int i) { return i % 7 == 3 ? 5000 + (size_t)(i % 5) * 1000 : 16 + (size_t)(i % 50); }

static void *sender(void *p) {
  sender_arg *a = (sender_arg *)p;
  static __thread char msg[16384];
  for (int i = 0; i < PER_SENDER; i++) {
    int n = snprintf(msg, sizeof msg, "%d:%d:", a->id, i);
    size_t len = padded_size(i);
    memset(msg + n, 'a' + i % 26, len - (size_t)n);
    if (ws_send(a->ws, msg, len, WS_TEXT) != WS_OK) return (void *)1;
  }
  return NULL;
}

static void test_concurrent_send_receive(void **state) {
  (void)state;
  echo_server e;
  assert_int_equal(echo_start(&e, NULL), WS_OK);
  char url[64];
  url_for(url, sizeof url, e.port, "/threads");
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(url, NULL, &ws), WS_OK);
  pthread_t t[SENDERS];
  sender_arg args[SENDERS];
  for (int i = 0; i < SENDERS; i++) {
    args[i].ws = ws;
    args[i].id = i;
    pthread_create(&t[i], NULL, sender, &args[i]);
  }
  /* Each sender's messages come back in its own order (one connection is a FIFO). */
  int next[SENDERS] = {0};
  for (int got = 0; got < SENDERS * PER_SENDER; got++) {
    ws_message *m = NULL;
    assert_int_equal(ws_receive(ws, &m, 10000), WS_OK);
    int id, i;
    assert_int_equal(sscanf((const char *)ws_message_data(m), "%d:%d", &id, &i), 2);
    assert_true(id >= 0 && id < SENDERS);
    assert_int_equal(i, next[id]);
    assert_int_equal(ws_message_size(m), padded_size(i));
    const char *d = (const char *)ws_message_data(m);
    assert_int_equal(d[ws_message_size(m) - 1], 'a' + i % 26);
    next[id]++;
    ws_message_free(m);
  }
  for (int i = 0; i < SENDERS; i++) {
    void *r;
    pthread_join(t[i], &r);
    assert_null(r);
  }
  assert_int_equal(ws_close(ws, 1000, NULL), WS_OK);
  ws_free(ws);
  echo_stop(&e);
}

static void *free_later(void *p) {
  usleep(1000);
  ws_free((ws_conn *)p);
  return NULL;
}

/* Free from another thread while messages are in flight: no crash, no leak. */
static void test_free_while_busy(void **state) {
  (void)state;
  echo_server e;
  assert_int_equal(echo_start(&e, NULL), WS_OK);
  char url[64];
  url_for(url, sizeof url, e.port, "/free");
  static char blob[256 * 1024];
  for (int round = 0; round < 20; round++) {
    ws_conn *ws = NULL;
    assert_int_equal(ws_open(url, NULL, &ws), WS_OK);
    for (int i = 0; i < 8; i++) ws_send(ws, blob, sizeof blob, WS_BINARY);
    pthread_t t;
    pthread_create(&t, NULL, free_later, ws);
    pthread_join(t, NULL);
  }
  echo_stop(&e);
}

/* Sends on one connection from its loop's callbacks and from another thread
 * at once. The loop thread's sends skip the send lock until another thread
 * first sends (the lock's bias, see SendGuard); that first send revokes the
 * bias while the loop is busy echoing. The other thread sends fragmented text
 * messages while the client keeps the loop echoing, so loop-thread echoes
 * fall inside fragmented messages: each of those must be refused (WS_ESTATE)
 * and every other must go out whole. A race on the send state would put a
 * frame inside a fragmented message, which the client fails with 1002, or
 * lose or corrupt a message, which the counts and contents catch. */
enum { kForeign = 2000, kMaxEchoes = 400000 };
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ws_conn *conn;
  int echoed_ok, echo_refused, echo_other, seen;
  int foreign_done, total; /* total: echoes the client sent, -1 until known */
} x = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0, 0, -1};

static void mix_on_open(ws_conn *ws, void *user) {
  (void)user;
  pthread_mutex_lock(&x.mu);
  x.conn = ws_retain(ws);
  pthread_cond_broadcast(&x.cv);
  pthread_mutex_unlock(&x.mu);
}

static void mix_on_message(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  int rc = ws_send(ws, data, len, type);
  pthread_mutex_lock(&x.mu);
  x.seen++;
  if (rc == WS_OK)
    x.echoed_ok++;
  else if (rc == WS_ESTATE)
    x.echo_refused++;
  else
    x.echo_other++;
  pthread_cond_broadcast(&x.cv);
  pthread_mutex_unlock(&x.mu);
}

static void *mix_foreign(void *arg) {
  (void)arg;
  pthread_mutex_lock(&x.mu);
  while (!x.conn) pthread_cond_wait(&x.cv, &x.mu);
  ws_conn *ws = x.conn;
  while (x.seen < 100) pthread_cond_wait(&x.cv, &x.mu); /* the loop is echoing, biased */
  pthread_mutex_unlock(&x.mu);
  for (int i = 0; i < kForeign; i++) {
    char part[32];
    int n = snprintf(part, sizeof part, "F%d:", i);
    assert_int_equal(ws_send_fragment(ws, part, (size_t)n, WS_TEXT, 0), WS_OK);
    assert_int_equal(ws_send_fragment(ws, "\xc3", 1, WS_TEXT, 0), WS_OK); /* "é" split across fragments */
    if (i % 16 == 0) usleep(50); /* leave the loop room to echo mid-message */
    assert_int_equal(ws_send_fragment(ws, "\xa9", 1, WS_TEXT, 1), WS_OK);
  }
  pthread_mutex_lock(&x.mu);
  x.foreign_done = 1;
  while (x.total < 0 || x.seen < x.total) pthread_cond_wait(&x.cv, &x.mu);
  pthread_mutex_unlock(&x.mu);
  assert_int_equal(ws_close(ws, 4001, "done"), WS_OK);
  return NULL;
}

static struct {
  ws_conn *c;
  int loop_got, foreign_got, close_code;
} rd;

static void *mix_reader(void *arg) {
  (void)arg;
  int next_foreign = 0, last_echo = -1;
  for (;;) {
    ws_message *m = NULL;
    int rc = ws_receive(rd.c, &m, 10000);
    if (rc == WS_ECLOSED) break;
    assert_int_equal(rc, WS_OK);
    const char *d = (const char *)ws_message_data(m);
    if (ws_message_type(m) == WS_BINARY) {
      assert_int_equal(d[0], 'L');
      int k = atoi(d + 1);
      assert_true(k > last_echo); /* in order, none twice */
      last_echo = k;
      rd.loop_got++;
    } else {
      char want[32];
      snprintf(want, sizeof want, "F%d:\xc3\xa9", next_foreign++);
      assert_string_equal(d, want);
      rd.foreign_got++;
    }
    ws_message_free(m);
  }
  rd.close_code = ws_close_code(rd.c);
  return NULL;
}

static void test_loop_and_thread_send_on_one_connection(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {mix_on_open, mix_on_message, NULL, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  pthread_t th, reader;
  assert_int_equal(pthread_create(&th, NULL, mix_foreign, NULL), 0);
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/mix");
  assert_int_equal(ws_open(url, NULL, &rd.c), WS_OK);
  assert_int_equal(pthread_create(&reader, NULL, mix_reader, NULL), 0);
  int sent = 0, done = 0;
  while (!done && sent < kMaxEchoes) {  /* keep the loop echoing until the other thread is done */
    for (int j = 0; j < 64; j++, sent++) {
      char b[32];
      int n = snprintf(b, sizeof b, "L%d", sent);
      assert_int_equal(ws_send(rd.c, b, (size_t)n, WS_BINARY), WS_OK);
    }
    usleep(100);
    pthread_mutex_lock(&x.mu);
    done = x.foreign_done;
    pthread_mutex_unlock(&x.mu);
  }
  pthread_mutex_lock(&x.mu);
  x.total = sent;
  pthread_cond_broadcast(&x.cv);
  pthread_mutex_unlock(&x.mu);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(pthread_join(reader, NULL), 0);
  assert_int_equal(rd.close_code, 4001);
  pthread_mutex_lock(&x.mu);
  assert_true(done); /* the other thread finished while the client was still sending */
  assert_int_equal(x.seen, sent);
  assert_int_equal(x.echo_other, 0);
  assert_int_equal(rd.loop_got, x.echoed_ok);
  assert_int_equal(x.echoed_ok + x.echo_refused, sent);
  assert_true(x.echo_refused > 0); /* the two did overlap */
  ws_conn *sc = x.conn;
  pthread_mutex_unlock(&x.mu);
  assert_int_equal(rd.foreign_got, kForeign);
  ws_free(sc);
  ws_free(rd.c);
  ws_server_free(srv);
}

/* A callback's send that fails on the socket (the peer reset the
 * connection) closes the connection inside that send, and on_close runs
 * there. After another thread's send the send lock is a real lock: on_close
 * calling ws_send and ws_close on the same connection must get their errors,
 * not wait for the lock its own thread holds. The handler waits before it
 * answers, and the reset comes while it waits. */
typedef struct {
  ws_conn *conn;
  atomic_int opened, closed_ok, echoes;
  int send_rc, close_rc;
} reset_state;
static reset_state g_rs;

static void rs_open(ws_conn *ws, void *user) {
  (void)user;
  ws_retain(ws);
  g_rs.conn = ws;
  atomic_store(&g_rs.opened, 1);
}
static void rs_message(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)type, (void)data, (void)len, (void)user;
  static unsigned char big[256 * 1024];
  atomic_fetch_add(&g_rs.echoes, 1);
  usleep(50 * 1000); /* meanwhile the peer resets the connection */
  ws_send(ws, big, sizeof big, WS_BINARY); /* written at once, not batched: fails */
  ws_send(ws, big, sizeof big, WS_BINARY);
}
static void rs_close(ws_conn *ws, int code, const char *reason, void *user) {
  (void)code, (void)reason, (void)user;
  g_rs.send_rc = ws_send(ws, "late", 4, WS_TEXT);
  g_rs.close_rc = ws_close(ws, 1000, NULL);
  atomic_store(&g_rs.closed_ok, 1);
}

static void test_on_close_inside_a_failed_send(void **state) {
  (void)state;
  ws_options *o = ws_options_new();
  ws_callbacks cbs = {.on_open = rs_open, .on_message = rs_message, .on_close = rs_close};
  assert_int_equal(ws_options_set_callbacks(o, &cbs, sizeof cbs, NULL), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &srv), WS_OK);
  ws_options_free(o);
  for (int round = 0; round < 3; round++) {
    memset(&g_rs, 0, sizeof g_rs);
    int fd = raw_upgrade(ws_server_port(srv));
    assert_true(fd >= 0);
    long long deadline = now_ms() + 5000;
    while (!atomic_load(&g_rs.opened) && now_ms() < deadline) usleep(1000);
    assert_true(atomic_load(&g_rs.opened));
    assert_int_equal(atomic_load(&g_rs.echoes), 0);
    /* Another thread's send: the connection's send lock is taken from now on. */
    assert_int_equal(ws_ping(g_rs.conn, "t", 1), WS_OK);
    unsigned char f[64];
    size_t n = client_frame(f, 0x82, "go", 2);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    assert_int_equal(write_all(fd, f, n), 0);
    deadline = now_ms() + 5000;
    while (!atomic_load(&g_rs.echoes) && now_ms() < deadline) usleep(500);
    close(fd); /* a reset while the handler waits */
    deadline = now_ms() + 5000;
    while (!atomic_load(&g_rs.closed_ok) && now_ms() < deadline) usleep(1000);
    assert_true(atomic_load(&g_rs.closed_ok)); /* on_close returned: no self-deadlock */
    assert_int_equal(g_rs.send_rc, WS_ECLOSED);
    assert_true(g_rs.close_rc == WS_ECLOSED || g_rs.close_rc == WS_OK);
    ws_free(g_rs.conn);
  }
  ws_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_threads_stop_when_unused),
      cmocka_unit_test(test_server_on_several_threads_callbacks),
      cmocka_unit_test(test_server_on_several_threads_pull),
      cmocka_unit_test(test_several_threads_port_in_use),
      cmocka_unit_test(test_concurrent_send_receive),
      cmocka_unit_test(test_free_while_busy),
      cmocka_unit_test(test_loop_and_thread_send_on_one_connection),
      cmocka_unit_test(test_on_close_inside_a_failed_send),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
