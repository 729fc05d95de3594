/* ws_fileno / ws_server_fileno: readable exactly when the next call would not
 * block, including on close; 1,000 connections driven from one thread with poll(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api_util.h"

#define N 1000

static int readable(int fd, int timeout_ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void test_readiness_is_exact(void **state) {
  (void)state;
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, NULL, &srv), WS_OK);
  int sfd = ws_server_fileno(srv);
  assert_true(sfd >= 0);
  assert_false(readable(sfd, 0));
  char url[64];
  url_for(url, sizeof url, ws_server_port(srv), "/");
  ws_conn *c = NULL;
  assert_int_equal(ws_open(url, NULL, &c), WS_OK);
  assert_true(readable(sfd, 2000));
  ws_conn *s = NULL;
  assert_int_equal(ws_accept(srv, &s, 0), WS_OK);
  assert_false(readable(sfd, 0));
  int fd = ws_fileno(s);
  assert_false(readable(fd, 0));
  ws_send(c, "a", 1, WS_TEXT);
  ws_send(c, "b", 1, WS_TEXT);
  assert_true(readable(fd, 2000));
  usleep(20000);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(s, &m, 0), WS_OK);
  ws_message_free(m);
  assert_true(readable(fd, 0)); /* one still queued */
  assert_int_equal(ws_receive(s, &m, 0), WS_OK);
  ws_message_free(m);
  assert_false(readable(fd, 0));
  assert_int_equal(ws_receive(s, &m, 0), WS_EAGAIN);
  /* Close makes it readable for good. */
  ws_close(c, 1000, NULL);
  assert_true(readable(fd, 2000));
  assert_int_equal(ws_receive(s, &m, 0), WS_ECLOSED);
  assert_true(readable(fd, 0));
  ws_free(c);
  ws_free(s);
  ws_server_close(srv);
  assert_true(readable(sfd, 1000));
  ws_server_free(srv);
}

static void test_thousand_connections_one_thread(void **state) {
  (void)state;
  raise_nofile();
  echo_server e;
  assert_int_equal(echo_start(&e, NULL), WS_OK);
  char url[64];
  url_for(url, sizeof url, e.port, "/many");
  static ws_conn *conns[N];
  for (int i = 0; i < N; i++) assert_int_equal(ws_open(url, NULL, &conns[i]), WS_OK);
  static struct pollfd fds[N];
  char msg[32];
  for (int i = 0; i < N; i++) {
    int n = snprintf(msg, sizeof msg, "conn %d", i);
    assert_int_equal(ws_send(conns[i], msg, (size_t)n, WS_TEXT), WS_OK);
    fds[i].fd = ws_fileno(conns[i]);
    fds[i].events = POLLIN;
  }
  int done = 0;
  long long deadline = now_ms() + 30000;
  while (done < N && now_ms() < deadline) {
    int r = poll(fds, N, 1000);
    assert_true(r >= 0);
    for (int i = 0; i < N; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & POLLIN)) continue;
      ws_message *m = NULL;
      assert_int_equal(ws_receive(conns[i], &m, 0), WS_OK);
      int n = snprintf(msg, sizeof msg, "conn %d", i);
      assert_int_equal(ws_message_size(m), (size_t)n);
      assert_memory_equal(ws_message_data(m), msg, (size_t)n);
      ws_message_free(m);
      fds[i].fd = -1;
      done++;
    }
  }
  assert_int_equal(done, N);
  for (int i = 0; i < N; i++) ws_free(conns[i]);
  echo_stop(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_readiness_is_exact),
      cmocka_unit_test(test_thousand_connections_one_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
