/* wss:// through the public C API: our client against our server over
 * loopback TLS. Certificates come from tests/tls/make_certs.sh, run at test
 * time into a temporary directory (no key is committed). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <sys/stat.h>

#include "api_util.h"

static char g_dir[64];  /* the throwaway PKI */

static const char *pki(const char *name) {
  static char paths[8][128];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, sizeof paths[0], "%s/%s", g_dir, name);
  return p;
}

/* The script sits at tests/tls/ beside this file. __FILE__ is relative to the
 * build root, which is two levels above this executable (tests/unit/). */
static int find_script(char *out, size_t cap) {
  char exe[PATH_MAX];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k <= 0) return -1;
  exe[k] = 0;
  char src[PATH_MAX * 2];
  if (__FILE__[0] == '/')
    snprintf(src, sizeof src, "%s", __FILE__);
  else
    snprintf(src, sizeof src, "%s/../../%s", dirname(exe), __FILE__);
  snprintf(out, cap, "%s/../tls/make_certs.sh", dirname(src));
  return access(out, R_OK);
}

static int setup_pki(void **state) {
  (void)state;
  char script[PATH_MAX * 2 + 64];
  if (find_script(script, sizeof script) != 0) {
    fprintf(stderr, "tests/tls/make_certs.sh not found (%s)\n", script);
    return -1;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/wscore-api-tls-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  char cmd[sizeof script + 128];
  snprintf(cmd, sizeof cmd, "sh '%s' '%s'", script, g_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "make_certs.sh failed (is the openssl tool installed?)\n");
    return -1;
  }
  return 0;
}

static int teardown_pki(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static ws_options *server_opts(const char *cert, const char *key) {
  ws_options *o = ws_options_new();
  assert_int_equal(ws_options_set_tls_cert_file(o, pki(cert)), WS_OK);
  assert_int_equal(ws_options_set_tls_key_file(o, pki(key)), WS_OK);
  return o;
}

static ws_options *client_opts(const char *ca) {
  ws_options *o = ws_options_new();
  if (ca) assert_int_equal(ws_options_set_tls_ca_file(o, pki(ca)), WS_OK);
  ws_options_set_connect_timeout(o, 5000);
  return o;
}

static void echo_once(ws_conn *ws, const void *data, size_t n, int type) {
  assert_int_equal(ws_send(ws, data, n, type), WS_OK);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 5000), WS_OK);
  assert_int_equal(ws_message_type(m), type);
  assert_int_equal(ws_message_size(m), n);
  assert_memory_equal(ws_message_data(m), data, n);
  ws_message_free(m);
}

/* Opens host:port with `co`; expects `want` and, on failure, `detail` inside
 * ws_error_detail. */
static void open_expect(const char *host, int port, ws_options *co, int want, const char *detail) {
  char url[128];
  snprintf(url, sizeof url, "wss://%s:%d/", host, port);
  ws_conn *ws = NULL;
  int rc = ws_open(url, co, &ws);
  if (rc != want) fail_msg("ws_open(%s) = %s (%s), expected %s", url, ws_err_name(rc), ws ? ws_error_detail(ws) : "",
                           ws_err_name(want));
  if (detail) {
    assert_non_null(ws);
    if (!strstr(ws_error_detail(ws), detail))
      fail_msg("ws_error_detail: \"%s\", expected it to contain \"%s\"", ws_error_detail(ws), detail);
  }
  if (rc == WS_OK) {
    assert_int_equal(ws_is_tls(ws), 1);
    echo_once(ws, "ping?", 5, WS_TEXT);
    assert_int_equal(ws_close(ws, WS_CLOSE_NORMAL, "bye"), WS_OK);
  }
  ws_free(ws);
}

static void test_echo_over_tls(void **state) {
  (void)state;
  ws_options *so = server_opts("server.pem", "server.key");
  echo_server e;
  assert_int_equal(echo_start(&e, so), WS_OK);
  ws_options *co = client_opts("ca.pem");
  char url[128];
  snprintf(url, sizeof url, "wss://localhost:%d/chat", e.port);
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(url, co, &ws), WS_OK);
  assert_int_equal(ws_is_tls(ws), 1);
  assert_int_equal(ws_http_status(ws), 101);
  echo_once(ws, "hello over TLS", 14, WS_TEXT);
  /* Larger than several records and than the read buffer, in both directions. */
  size_t n = 3u << 20;
  unsigned char *big = malloc(n);
  for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 131 + (i >> 9));
  echo_once(ws, big, n, WS_BINARY);
  free(big);
  /* Many small messages queued at once all arrive, in order. */
  for (int i = 0; i < 500; i++) {
    char t[16];
    int k = snprintf(t, sizeof t, "m%d", i);
    assert_int_equal(ws_send(ws, t, (size_t)k, WS_TEXT), WS_OK);
  }
  for (int i = 0; i < 500; i++) {
    char t[16];
    int k = snprintf(t, sizeof t, "m%d", i);
    ws_message *m = NULL;
    assert_int_equal(ws_receive(ws, &m, 5000), WS_OK);
    assert_int_equal(ws_message_size(m), (size_t)k);
    assert_memory_equal(ws_message_data(m), t, (size_t)k);
    ws_message_free(m);
  }
  assert_int_equal(ws_close(ws, WS_CLOSE_NORMAL, "done"), WS_OK);
  assert_int_equal(ws_close_code(ws), WS_CLOSE_NORMAL);
  ws_free(ws);
  /* An IP literal is checked against the certificate's IP addresses. */
  open_expect("127.0.0.1", e.port, co, WS_OK, NULL);
  ws_options_free(co);
  echo_stop(&e);
  ws_options_free(so);
}

static void test_verify_failures(void **state) {
  (void)state;
  ws_options *so = server_opts("server.pem", "server.key");
  echo_server good;
  assert_int_equal(echo_start(&good, so), WS_OK);
  ws_options *trusting = client_opts("ca.pem");
  ws_options *other = client_opts("other-ca.pem");
  ws_options *system_store = client_opts(NULL);

  open_expect("localhost", good.port, other, WS_ETLS,
              "TLS: certificate verify failed: unable to get local issuer certificate");
  /* Verification is on by default: the system store does not know our CA. */
  open_expect("localhost", good.port, system_store, WS_ETLS, "certificate verify failed");

  ws_options *se = server_opts("expired.pem", "expired.key");
  echo_server expired;
  assert_int_equal(echo_start(&expired, se), WS_OK);
  open_expect("localhost", expired.port, trusting, WS_ETLS, "certificate verify failed: certificate has expired");

  ws_options *sw = server_opts("wrongname.pem", "wrongname.key");
  echo_server wrong;
  assert_int_equal(echo_start(&wrong, sw), WS_OK);
  open_expect("localhost", wrong.port, trusting, WS_ETLS, "certificate verify failed: hostname mismatch");
  open_expect("127.0.0.1", wrong.port, trusting, WS_ETLS, "certificate verify failed: IP address mismatch");

  /* insecure_skip_verify accepts the wrong name, the expired certificate and the unknown CA. */
  assert_int_equal(ws_options_set_tls_insecure_skip_verify(other, 1), WS_OK);
  open_expect("localhost", wrong.port, other, WS_OK, NULL);
  open_expect("127.0.0.1", expired.port, other, WS_OK, NULL);

  /* Every failed open left the servers serving. */
  open_expect("localhost", good.port, trusting, WS_OK, NULL);

  echo_stop(&wrong);
  echo_stop(&expired);
  echo_stop(&good);
  ws_options_free(sw);
  ws_options_free(se);
  ws_options_free(so);
  ws_options_free(trusting);
  ws_options_free(other);
  ws_options_free(system_store);
}

static void test_mutual_tls(void **state) {
  (void)state;
  ws_options *so = server_opts("server.pem", "server.key");
  assert_int_equal(ws_options_set_tls_verify_client(so, 1), WS_OK);
  assert_int_equal(ws_options_set_tls_ca_file(so, pki("ca.pem")), WS_OK);
  echo_server e;
  assert_int_equal(echo_start(&e, so), WS_OK);

  ws_options *with = client_opts("ca.pem");
  ws_options_set_tls_cert_file(with, pki("client.pem"));
  ws_options_set_tls_key_file(with, pki("client.key"));
  open_expect("localhost", e.port, with, WS_OK, NULL);

  ws_options *without = client_opts("ca.pem");
  open_expect("localhost", e.port, without, WS_ETLS, "certificate required");

  ws_options *rogue = client_opts("ca.pem");
  ws_options_set_tls_cert_file(rogue, pki("rogue-client.pem"));
  ws_options_set_tls_key_file(rogue, pki("rogue-client.key"));
  open_expect("localhost", e.port, rogue, WS_ETLS, "unknown ca");

  echo_stop(&e);
  ws_options_free(so);
  ws_options_free(with);
  ws_options_free(without);
  ws_options_free(rogue);
}

static void test_bad_configuration(void **state) {
  (void)state;
  ws_server *s = NULL;
  ws_options *o = server_opts("missing.pem", "server.key");
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &s), WS_ETLS);
  assert_null(s);
  ws_options_free(o);
  o = server_opts("server.pem", "client.key"); /* somebody else's key */
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &s), WS_ETLS);
  ws_options_free(o);
  /* Half a configuration is an error, never plain text. */
  o = ws_options_new();
  ws_options_set_tls_key_file(o, pki("server.key"));
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &s), WS_ETLS);
  ws_options_free(o);
  o = server_opts("server.pem", "server.key");
  ws_options_set_tls_verify_client(o, 1); /* without a CA to verify with */
  assert_int_equal(ws_listen("127.0.0.1", 0, o, &s), WS_ETLS);
  ws_options_free(o);

  /* A client CA file that is not there: WS_ETLS, with the reason, before any connect. */
  ws_options *co = client_opts("missing-ca.pem");
  open_expect("localhost", 1, co, WS_ETLS, "missing-ca.pem: No such file or directory");
  ws_options_free(co);
}

static void test_wrong_protocol_peers(void **state) {
  (void)state;
  /* wss:// to a plain ws:// server: its HTTP error is not TLS. */
  echo_server plain;
  assert_int_equal(echo_start(&plain, NULL), WS_OK);
  ws_options *co = client_opts("ca.pem");
  open_expect("localhost", plain.port, co, WS_ETLS, "TLS: wrong version number");
  echo_stop(&plain);

  ws_options *so = server_opts("server.pem", "server.key");
  echo_server e;
  assert_int_equal(echo_start(&e, so), WS_OK);
  /* ws:// to a wss:// server: the upgrade request is not a ClientHello. */
  char url[128];
  url_for(url, sizeof url, e.port, "/");
  ws_conn *ws = NULL;
  int rc = ws_open(url, NULL, &ws);
  assert_true(rc == WS_EHANDSHAKE || rc == WS_EIO);
  ws_free(ws);

  /* Garbage instead of a ClientHello: the server drops the connection at once. */
  int fd = raw_connect(e.port);
  assert_true(fd >= 0);
  unsigned char junk[512];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 7 + 3);
  junk[0] = 0x16; /* looks like a handshake record, is not */
  assert_int_equal(write_all(fd, junk, sizeof junk), 0);
  unsigned char got[256];
  long long t0 = now_ms();
  int n = read_until_eof(fd, got, sizeof got, 3000);
  assert_true(n >= 0);                  /* EOF, not a timeout */
  assert_true(now_ms() - t0 < 2000);
  if (n > 0) assert_int_equal(got[0], 0x15); /* at most an alert record */
  close(fd);

  /* Still serving. */
  open_expect("localhost", e.port, co, WS_OK, NULL);
  echo_stop(&e);
  ws_options_free(so);
  ws_options_free(co);
}

static void test_handshake_timeouts(void **state) {
  (void)state;
  /* A client that connects and never starts TLS is dropped after the handshake timeout. */
  ws_options *so = server_opts("server.pem", "server.key");
  ws_options_set_handshake_timeout(so, 300);
  echo_server e;
  assert_int_equal(echo_start(&e, so), WS_OK);
  int fd = raw_connect(e.port);
  assert_true(fd >= 0);
  unsigned char got[64];
  long long t0 = now_ms();
  assert_int_equal(read_until_eof(fd, got, sizeof got, 5000), 0);
  long long took = now_ms() - t0;
  assert_true(took >= 250 && took < 3000);
  close(fd);
  echo_stop(&e);
  ws_options_free(so);

  /* A server that accepts TCP and never answers the ClientHello: the connect timeout. */
  int port = 0;
  int lfd = raw_listen(&port);
  assert_true(lfd >= 0);
  ws_options *co = client_opts("ca.pem");
  ws_options_set_connect_timeout(co, 300);
  t0 = now_ms();
  open_expect("localhost", port, co, WS_ETIMEDOUT, NULL);
  took = now_ms() - t0;
  assert_true(took >= 250 && took < 3000);
  close(lfd);
  ws_options_free(co);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[8][8192];
  static int next;
  char *b = buf[next++ % 8];
  size_t n = fread(b, 1, sizeof buf[0] - 1, f);
  fclose(f);
  b[n] = 0;
  return b;
}

/* Certificates and keys given as PEM text rather than paths. */
static void test_pem_text(void **state) {
  (void)state;
  ws_options *so = ws_options_new();
  assert_int_equal(ws_options_set_tls_cert_pem(so, slurp(pki("server.pem"))), WS_OK);
  assert_int_equal(ws_options_set_tls_key_pem(so, slurp(pki("server.key"))), WS_OK);
  assert_int_equal(ws_options_set_tls_verify_client(so, 1), WS_OK);
  assert_int_equal(ws_options_set_tls_ca_file(so, pki("ca.pem")), WS_OK);
  echo_server e;
  assert_int_equal(echo_start(&e, so), WS_OK);
  ws_options *co = client_opts("ca.pem");
  ws_options_set_tls_cert_pem(co, slurp(pki("client.pem")));
  ws_options_set_tls_key_pem(co, slurp(pki("client.key")));
  open_expect("localhost", e.port, co, WS_OK, NULL);
  echo_stop(&e);
  ws_options_free(co);
  /* PEM text that is not a certificate: WS_ETLS, not a crash or plain text. */
  ws_server *s = NULL;
  ws_options_set_tls_cert_pem(so, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &s), WS_ETLS);
  assert_null(s);
  ws_options_free(so);
}

/* Every frame length encoding, and sizes around the 16 KiB TLS record. */
static void test_size_classes(void **state) {
  (void)state;
  ws_options *so = server_opts("server.pem", "server.key");
  echo_server e;
  assert_int_equal(echo_start(&e, so), WS_OK);
  ws_options *co = client_opts("ca.pem");
  char url[128];
  snprintf(url, sizeof url, "wss://localhost:%d/", e.port);
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(url, co, &ws), WS_OK);
  static const size_t sizes[] = {0, 1, 125, 126, 127, 16383, 16384, 16385, 65535, 65536, 65537, 1 << 20};
  unsigned char *buf = malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20); i++) buf[i] = (unsigned char)(i ^ (i >> 8));
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) echo_once(ws, buf, sizes[k], WS_BINARY);
  free(buf);
  assert_int_equal(ws_close(ws, WS_CLOSE_NORMAL, ""), WS_OK);
  ws_free(ws);
  echo_stop(&e);
  ws_options_free(co);
  ws_options_free(so);
}

static void *close_after_one(void *arg) {
  ws_server *srv = (ws_server *)arg;
  ws_conn *ws = NULL;
  if (ws_accept(srv, &ws, 5000) != WS_OK) return NULL;
  ws_message *m = NULL;
  if (ws_receive(ws, &m, 5000) == WS_OK) {
    ws_send(ws, ws_message_data(m), ws_message_size(m), ws_message_type(m));
    ws_message_free(m);
  }
  ws_close(ws, 4001, "server says bye");
  ws_free(ws);
  return NULL;
}

/* The server starts the close: the client sees the code and reason, then the end. */
static void test_server_side_close(void **state) {
  (void)state;
  ws_options *so = server_opts("server.pem", "server.key");
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &srv), WS_OK);
  pthread_t t;
  pthread_create(&t, NULL, close_after_one, srv);
  ws_options *co = client_opts("ca.pem");
  char url[128];
  snprintf(url, sizeof url, "wss://localhost:%d/", ws_server_port(srv));
  ws_conn *ws = NULL;
  assert_int_equal(ws_open(url, co, &ws), WS_OK);
  echo_once(ws, "one", 3, WS_TEXT);
  ws_message *m = NULL;
  assert_int_equal(ws_receive(ws, &m, 5000), WS_ECLOSED);
  assert_int_equal(ws_close_code(ws), 4001);
  assert_string_equal(ws_close_reason(ws), "server says bye");
  pthread_join(t, NULL);
  ws_free(ws);
  ws_server_free(srv);
  ws_options_free(co);
  ws_options_free(so);
}

static void cb_echo(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  ws_send(ws, data, len, type); /* from the loop thread, through TLS, no hop */
}

/* Callback mode on two loop threads: each connection's TLS stays on its own loop. */
static void test_callback_mode_two_threads(void **state) {
  (void)state;
  ws_options *so = server_opts("server.pem", "server.key");
  ws_callbacks cbs = {NULL, cb_echo, NULL, NULL, NULL};
  assert_int_equal(ws_options_set_callbacks(so, &cbs, sizeof cbs, NULL), WS_OK);
  assert_int_equal(ws_options_set_threads(so, 2), WS_OK);
  ws_server *srv = NULL;
  assert_int_equal(ws_listen("127.0.0.1", 0, so, &srv), WS_OK);
  ws_options *co = client_opts("ca.pem");
  char url[128];
  snprintf(url, sizeof url, "wss://localhost:%d/", ws_server_port(srv));
  enum { N = 6 };
  ws_conn *c[N];
  for (int i = 0; i < N; i++) assert_int_equal(ws_open(url, co, &c[i]), WS_OK);
  for (int round = 0; round < 20; round++)
    for (int i = 0; i < N; i++) {
      char msg[32];
      int k = snprintf(msg, sizeof msg, "conn %d round %d", i, round);
      echo_once(c[i], msg, (size_t)k, WS_TEXT);
    }
  for (int i = 0; i < N; i++) {
    assert_int_equal(ws_close(c[i], WS_CLOSE_NORMAL, ""), WS_OK);
    ws_free(c[i]);
  }
  ws_server_free(srv);
  ws_options_free(co);
  ws_options_free(so);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_over_tls),
      cmocka_unit_test(test_verify_failures),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_bad_configuration),
      cmocka_unit_test(test_wrong_protocol_peers),
      cmocka_unit_test(test_handshake_timeouts),
      cmocka_unit_test(test_pem_text),
      cmocka_unit_test(test_size_classes),
      cmocka_unit_test(test_server_side_close),
      cmocka_unit_test(test_callback_mode_two_threads),
  };
  return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
