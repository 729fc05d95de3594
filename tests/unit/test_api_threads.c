/* Thread safety: one thread receives while four send on the same connection;
 * ws_free from another thread while the loop is busy. Run under
 * ThreadSanitizer by CI (build-tsan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api_util.h"

#define SENDERS 4
#define PER_SENDER 500

typedef struct {
  ws_conn *ws;
  int id;
} sender_arg;

static void *sender(void *p) {
  sender_arg *a = (sender_arg *)p;
  char msg[64];
  for (int i = 0; i < PER_SENDER; i++) {
    int n = snprintf(msg, sizeof msg, "%d:%d", a->id, i);
    if (ws_send(a->ws, msg, (size_t)n, WS_TEXT) != WS_OK) return (void *)1;
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_send_receive),
      cmocka_unit_test(test_free_while_busy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
