/* Helpers for the API tests: a pull-mode echo server on a thread, and a raw
 * TCP peer that speaks exactly the bytes a test wants. */
#ifndef WSCORE_TEST_API_UTIL_H
#define WSCORE_TEST_API_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wscore.h>

static inline long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- an echo server (pull mode, a thread per connection) ---- */

typedef struct echo_server {
  ws_server *srv;
  pthread_t thread;
  int port;
} echo_server;

static void *echo_conn_thread(void *arg) {
  ws_conn *ws = (ws_conn *)arg;
  for (;;) {
    ws_message *m = NULL;
    int rc = ws_receive(ws, &m, -1);
    if (rc != WS_OK) break;
    int t = ws_message_type(m);
    if (t == WS_TEXT || t == WS_BINARY) ws_send(ws, ws_message_data(m), ws_message_size(m), t);
    ws_message_free(m);
  }
  ws_free(ws);
  return NULL;
}

static void *echo_accept_thread(void *arg) {
  echo_server *e = (echo_server *)arg;
  for (;;) {
    ws_conn *ws = NULL;
    int rc = ws_accept(e->srv, &ws, -1);
    if (rc != WS_OK) break;
    pthread_t t;
    pthread_create(&t, NULL, echo_conn_thread, ws);
    pthread_detach(t);
  }
  return NULL;
}

static inline int echo_start(echo_server *e, const ws_options *o) {
  memset(e, 0, sizeof *e);
  int rc = ws_listen("127.0.0.1", 0, o, &e->srv);
  if (rc != WS_OK) return rc;
  e->port = ws_server_port(e->srv);
  pthread_create(&e->thread, NULL, echo_accept_thread, e);
  return WS_OK;
}

static inline void echo_stop(echo_server *e) {
  ws_server_close(e->srv);
  pthread_join(e->thread, NULL);
  ws_server_free(e->srv);
  usleep(50 * 1000); /* let detached connection threads finish their frees */
}

static inline void url_for(char *buf, size_t n, int port, const char *path) {
  snprintf(buf, n, "ws://127.0.0.1:%d%s", port, path);
}

/* ---- a raw TCP peer ---- */

static inline int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static inline int write_all(int fd, const void *p, size_t n) {
  const char *c = (const char *)p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A plain TCP listener on 127.0.0.1 and a free port (stored in *port). */
static inline int raw_listen(int *port) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 16) != 0) {
    close(lfd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return lfd;
}

/* Reads until the HTTP head ends (or timeout); returns the head's length, and
 * copies it to out (NUL-terminated). */
static inline int read_head(int fd, char *out, size_t cap, int timeout_ms) {
  size_t have = 0;
  long long deadline = now_ms() + timeout_ms;
  while (have + 1 < cap) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)(deadline - now_ms());
    if (left <= 0 || poll(&p, 1, left) <= 0) break;
    ssize_t r = read(fd, out + have, 1);
    if (r <= 0) break;
    have++;
    out[have] = 0;
    if (have >= 4 && memcmp(out + have - 4, "\r\n\r\n", 4) == 0) return (int)have;
  }
  out[have] = 0;
  return -1;
}

/* Reads until EOF or timeout; returns bytes read into out. */
static inline int read_until_eof(int fd, unsigned char *out, size_t cap, int timeout_ms) {
  size_t have = 0;
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)(deadline - now_ms());
    if (left <= 0 || poll(&p, 1, left) <= 0) return -1; /* timed out */
    ssize_t r = read(fd, out + have, have < cap ? cap - have : 0);
    if (r <= 0) return (int)have;
    have += (size_t)r;
  }
}

static const char *kUpgradeRequest =
    "GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* Connects and upgrades; returns the fd or -1. */
static inline int raw_upgrade(int port) {
  int fd = raw_connect(port);
  if (fd < 0) return -1;
  write_all(fd, kUpgradeRequest, strlen(kUpgradeRequest));
  char head[2048];
  if (read_head(fd, head, sizeof head, 3000) < 0 || strncmp(head, "HTTP/1.1 101", 12) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A masked client frame with the given key (payloads under 64 KiB). */
static inline size_t client_frame_key(unsigned char *out, unsigned char b0, const void *payload, size_t n,
                                      const unsigned char key[4]) {
  size_t h = 0;
  out[h++] = b0;
  if (n < 126) {
    out[h++] = (unsigned char)(0x80 | n);
  } else {
    out[h++] = 0x80 | 126;
    out[h++] = (unsigned char)(n >> 8);
    out[h++] = (unsigned char)n;
  }
  memcpy(out + h, key, 4);
  h += 4;
  for (size_t i = 0; i < n; i++) out[h + i] = ((const unsigned char *)payload)[i] ^ key[i & 3];
  return h + n;
}

/* A masked client frame (key 0,0,0,0 keeps tests readable: XOR with zero). */
static inline size_t client_frame(unsigned char *out, unsigned char b0, const void *payload, size_t n) {
  static const unsigned char zero[4] = {0, 0, 0, 0};
  return client_frame_key(out, b0, payload, n, zero);
}

#endif
