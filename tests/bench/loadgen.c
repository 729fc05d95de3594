/* loadgen: the echo benchmark's load generator. Single-threaded, epoll, its own
 * minimal HTTP upgrade, pre-built masked frames (the frames due on a
 * connection go out in one write); verifies every echoed byte.
 *
 *   loadgen --port P [--mode ws|raw] [--tls] [--conns C] [--inflight K] [--size S]
 *           [--seconds T] [--cdf FILE]
 *   loadgen --port P --handshakes [--conns C] --seconds T
 *   loadgen --port P [--tls] --idle N --hold SECONDS   (opens N connections, prints READY, waits)
 *
 * Echo mode prints one JSON line: messages/s, MB/s (payload bytes echoed per
 * second), RTT percentiles in microseconds (from the moment a frame is handed
 * to write() to the moment its echo is complete and verified), the number of
 * verification errors. --cdf FILE writes the RTT distribution ("quantile
 * microseconds" per line, tail quantiles up to 1 - 1e-4, then the maximum).
 *
 * --handshakes keeps C connections in progress (default 1): connect, upgrade
 * request, 101, masked close frame, the server's close frame, the server
 * closes TCP. Against `echo_raw PORT --handshake` (the same exchange of bytes
 * without any protocol work) it is the raw baseline of the handshake rate.
 *
 * --tls: TLS over the same loop (OpenSSL, non-blocking SSL objects on the
 * same epoll). Certificate verification is OFF on purpose: the benchmark's
 * servers use a throwaway certificate made at run time by
 * tests/tls/make_certs.sh, and this program only measures; never reuse this
 * client setup for anything that needs to know whom it talks to. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int port = 0, conns = 1, inflight = 1, raw = 0, use_tls = 0;
static double seconds = 3;
static size_t size = 64;
static SSL_CTX *tls_ctx;

static const char *kRequest =
    "GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/* The client's close (1000), masked with a zero key, and the server's answer. */
static const unsigned char kCloseFrame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};

/* ---- I/O over a plain socket or an SSL object ---------------------------- */

typedef struct {
  int fd;
  SSL *ssl;
} io_t;

static void tls_init(void) {
  tls_ctx = SSL_CTX_new(TLS_client_method());
  if (!tls_ctx) {
    ERR_print_errors_fp(stderr);
    exit(1);
  }
  SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
  /* Verification off: see the comment at the top (our own throwaway certificate). */
  SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                SSL_MODE_RELEASE_BUFFERS);
}

/* > 0: bytes; 0: would block; -1: error; -2: end of stream. */
static ssize_t io_write(io_t *c, const void *p, size_t n) {
  if (!c->ssl) {
    ssize_t w = write(c->fd, p, n);
    if (w >= 0) return w;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  }
  size_t done = 0;
  int r = SSL_write_ex(c->ssl, p, n, &done);
  if (r == 1) return (ssize_t)done;
  int e = SSL_get_error(c->ssl, r);
  return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}

static ssize_t io_read(io_t *c, void *p, size_t n) {
  if (!c->ssl) {
    ssize_t r = read(c->fd, p, n);
    if (r > 0) return r;
    if (r == 0) return -2;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  }
  size_t got = 0;
  int r = SSL_read_ex(c->ssl, p, n, &got);
  if (r == 1) return (ssize_t)got;
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  return e == SSL_ERROR_ZERO_RETURN ? -2 : -1;
}

static void io_close(io_t *c) {
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

static int tcp_socket(int nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static struct sockaddr_in server_addr(void) {
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/* A blocking connection (TCP, then TLS with --tls); 0 on success. Every
 * blocking step of the setup gives up after 10 s (a server that accepted but
 * never answers must not hang the benchmark). */
static int dial(io_t *c) {
  c->ssl = NULL;
  c->fd = tcp_socket(0);
  struct sockaddr_in a = server_addr();
  struct timeval tv = {.tv_sec = 10};
  if (c->fd >= 0) {
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("loadgen: connect");
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    return -1;
  }
  if (!use_tls) return 0;
  c->ssl = SSL_new(tls_ctx);
  if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || SSL_connect(c->ssl) != 1) {
    fprintf(stderr, "loadgen: TLS handshake failed\n");
    ERR_print_errors_fp(stderr);
    io_close(c);
    return -1;
  }
  return 0;
}

static int write_all(io_t *c, const void *p, size_t n) {
  const char *s = p;
  while (n) {
    ssize_t w = io_write(c, s, n);
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Blocking upgrade: send the request, read up to the end of the 101 head. The
 * server sends nothing after it until we do, so reading in chunks is safe; a
 * byte past the head is an error. */
static int upgrade(io_t *c) {
  if (write_all(c, kRequest, strlen(kRequest)) != 0) return -1;
  char buf[2048];
  size_t n = 0;
  while (n < sizeof buf - 1) {
    ssize_t r = io_read(c, buf + n, sizeof buf - 1 - n);
    if (r <= 0) return -1;
    n += (size_t)r;
    buf[n] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (end) return end + 4 == buf + n && strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
  }
  return -1;
}

/* ---- echo mode --------------------------------------------------------- */

static size_t ws_header(unsigned char *h, unsigned char op, size_t len, int masked) {
  size_t n = 0;
  h[n++] = 0x80 | op;
  unsigned char m = masked ? 0x80 : 0;
  if (len < 126) {
    h[n++] = m | (unsigned char)len;
  } else if (len < 65536) {
    h[n++] = m | 126;
    h[n++] = (unsigned char)(len >> 8);
    h[n++] = (unsigned char)len;
  } else {
    h[n++] = m | 127;
    for (int i = 7; i >= 0; i--) h[n++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  return n;
}

typedef struct {
  io_t io;
  size_t to_send;  /* frames allowed out but not started */
  size_t out_pos;  /* offset in `batch` of the write in progress */
  size_t out_left; /* bytes of it still to write; 0: none */
  size_t in_off;   /* raw: offset in `reply` of the reply being read */
  /* ws: the echo's frames are parsed (a server may send it back in fragments) */
  unsigned char hdr[14];
  size_t hdr_have;  /* header bytes of the frame being read */
  uint64_t fr_left; /* its payload bytes still to come */
  int in_payload, fin, in_msg;
  size_t msg_off;   /* payload bytes of the echo verified so far */
  int want_out;    /* EPOLLOUT registered (a write would block) */
  double *sent_at; /* ring of send times, `inflight` slots */
  size_t head, tail;
} conn_t;

static unsigned char *frame, *reply, *batch, *expect;
static size_t frame_len, reply_len, batch_frames;
static double *samples;
static size_t nsamples, cap_samples;
static long long errors = 0, completed = 0;

static void build_frames(void) {
  unsigned char *payload = malloc(size ? size : 1);
  for (size_t i = 0; i < size; i++) payload[i] = (unsigned char)('a' + i % 26);
  if (raw) {
    frame = payload;
    frame_len = size;
    reply = malloc(size ? size : 1);
    memcpy(reply, payload, size);
    reply_len = size;
  } else {
    const unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
    frame = malloc(size + 14);
    size_t h = ws_header(frame, 2, size, 1);
    memcpy(frame + h, key, 4);
    for (size_t i = 0; i < size; i++) frame[h + 4 + i] = payload[i] ^ key[i & 3];
    frame_len = h + 4 + size;
    reply = malloc(size + 10);
    h = ws_header(reply, 2, size, 0);
    memcpy(reply + h, payload, size);
    reply_len = h + size;
    expect = payload;
  }
  /* Up to `inflight` copies back to back (at most 1 MiB of them, at least one):
   * the frames due on a connection go out in one write. */
  batch_frames = (size_t)inflight;
  while (batch_frames > 1 && batch_frames * frame_len > (1u << 20)) batch_frames--;
  batch = malloc(batch_frames * frame_len);
  for (size_t i = 0; i < batch_frames; i++) memcpy(batch + i * frame_len, frame, frame_len);
}

static void set_interest(int ep, conn_t *c, int out) {
  if (c->want_out == out) return;
  c->want_out = out;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET | (out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->io.fd, &ev);
}

/* 0: all written; 1: would block; -1: error. A retried SSL_write gets the same
 * bytes at the same offset of `batch`, never fewer (OpenSSL's rule). */
static int pump_out(conn_t *c) {
  for (;;) {
    if (!c->out_left) {
      if (!c->to_send) return 0;
      size_t k = c->to_send < batch_frames ? c->to_send : batch_frames;
      c->to_send -= k;
      double t = now_s();
      for (size_t i = 0; i < k; i++) c->sent_at[c->head++ % (size_t)inflight] = t;
      c->out_pos = 0;
      c->out_left = k * frame_len;
    }
    ssize_t w = io_write(&c->io, batch + c->out_pos, c->out_left);
    if (w == 0) return 1;
    if (w < 0) return -1;
    c->out_pos += (size_t)w;
    c->out_left -= (size_t)w;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double quantile(double p) {
  if (!nsamples) return 0;
  size_t i = (size_t)(p * (double)(nsamples - 1) + 0.5);
  return samples[i] * 1e6;
}

static void write_cdf(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    errors++;
    return;
  }
  /* quantiles 1 - 10^(-4 i / 400): dense in the tail, where the servers differ */
  for (int i = 0; i <= 400; i++) {
    double q = 1 - pow(10, -4.0 * i / 400);
    fprintf(f, "%.6f %.2f\n", q, quantile(q));
  }
  fprintf(f, "1 %.2f\n", quantile(1));
  fclose(f);
}

static void echo_done(conn_t *c) {
  completed++;
  double rtt = now_s() - c->sent_at[c->tail++ % (size_t)inflight];
  if (nsamples < cap_samples) samples[nsamples++] = rtt;
  c->to_send++;
}

/* ws: the bytes of the echo as frames: a binary message of `size` bytes in
 * one frame or several (text, control frames or more bytes are errors). */
static void verify_ws(conn_t *c, const unsigned char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    if (!c->in_payload) {
      c->hdr[c->hdr_have++] = p[off++];
      if (c->hdr_have < 2) continue;
      unsigned len7 = c->hdr[1] & 0x7F;
      size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
      if (c->hdr_have < need) continue;
      unsigned op = c->hdr[0] & 0x0F;
      uint64_t len = len7;
      if (len7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
      if (len7 == 127)
        for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
      if ((c->hdr[1] & 0x80) || (c->hdr[0] & 0x70) || op != (c->in_msg ? 0u : 2u)) errors++;
      c->hdr_have = 0;
      c->fr_left = len;
      c->fin = (c->hdr[0] & 0x80) != 0;
      c->in_payload = 1;
      c->in_msg = 1;
    }
    size_t take = c->fr_left < n - off ? (size_t)c->fr_left : n - off;
    if (c->msg_off + take > size) {
      errors++;
      take = 0;
      c->fr_left = 0;
    } else if (take && memcmp(p + off, expect + c->msg_off, take) != 0) {
      errors++;
    }
    c->msg_off += take;
    c->fr_left -= take;
    off += take;
    if (c->fr_left) continue;
    c->in_payload = 0;
    if (!c->fin) continue;
    if (c->msg_off != size) errors++;
    c->msg_off = 0;
    c->in_msg = 0;
    echo_done(c);
  }
}

static int run_echo(const char *cdf_path) {
  build_frames();
  int ep = epoll_create1(0);
  conn_t *cs = calloc((size_t)conns, sizeof *cs);
  int setup_failed = 0;
  for (int i = 0; i < conns; i++) {
    cs[i].io.fd = -1;
    if (dial(&cs[i].io) != 0 || (!raw && upgrade(&cs[i].io) != 0)) {
      fprintf(stderr, "loadgen: connection %d: %s failed\n", i, cs[i].io.fd < 0 ? "connect" : "upgrade");
      setup_failed = 1;
      break;
    }
    fcntl(cs[i].io.fd, F_SETFL, O_NONBLOCK);
    cs[i].sent_at = calloc((size_t)inflight, sizeof(double));
    cs[i].to_send = (size_t)inflight;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].io.fd, &ev);
  }
  cap_samples = 4u << 20;
  samples = malloc(cap_samples * sizeof(double));
  size_t bufsize = 1u << 18;
  unsigned char *buf = malloc(bufsize);
  struct epoll_event evs[256];
  double t0 = now_s(), end = t0 + seconds;
  int stopping = setup_failed;
  /* Start every connection, then serve the events until the time is up. */
  for (int i = 0; i < conns && !stopping; i++) {
    int r = pump_out(&cs[i]);
    if (r < 0) errors++;
    if (r == 1) set_interest(ep, &cs[i], 1);
  }
  while (!stopping) {
    int n = epoll_wait(ep, evs, 256, 100);
    double t = now_s();
    if (t >= end) break;
    for (int e = 0; e < n && !stopping; e++) {
      conn_t *c = evs[e].data.ptr;
      for (;;) {
        ssize_t r = io_read(&c->io, buf, bufsize);
        if (r == 0) break;
        if (r < 0) {
          fprintf(stderr, "loadgen: %s\n", r == -2 ? "the server closed a connection" : "read error");
          errors++;
          stopping = 1;
          break;
        }
        if (!raw) {
          verify_ws(c, buf, (size_t)r);
          continue;
        }
        size_t off = 0;
        while (off < (size_t)r) {
          size_t take = reply_len - c->in_off;
          if (take > (size_t)r - off) take = (size_t)r - off;
          if (memcmp(buf + off, reply + c->in_off, take) != 0) errors++;
          c->in_off += take;
          off += take;
          if (c->in_off == reply_len) {
            c->in_off = 0;
            echo_done(c);
          }
        }
      }
      int w = pump_out(c);
      if (w < 0) {
        errors++;
        stopping = 1;
      }
      set_interest(ep, c, w == 1);
    }
  }
  double elapsed = now_s() - t0;
  qsort(samples, nsamples, sizeof(double), cmp_double);
  if (cdf_path) write_cdf(cdf_path);
  printf("{\"mode\":\"%s\",\"tls\":%d,\"conns\":%d,\"inflight\":%d,\"size\":%zu,\"seconds\":%.3f,\"messages\":%lld,"
         "\"msgs_per_s\":%.0f,\"MBps\":%.2f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
         "\"errors\":%lld}\n",
         raw ? "raw" : "ws", use_tls, conns, inflight, size, elapsed, completed, (double)completed / elapsed,
         (double)completed * (double)size / elapsed / 1e6, quantile(0.5), quantile(0.99), quantile(0.999),
         quantile(1), errors);
  for (int i = 0; i < conns; i++) {
    io_close(&cs[i].io);
    free(cs[i].sent_at);
  }
  free(cs);
  free(samples);
  free(buf);
  free(reply);
  free(frame);
  free(batch);
  if (!raw) free(expect);
  close(ep);
  return errors || setup_failed ? 1 : 0;
}

/* ---- handshakes per second ------------------------------------------------ */

enum { HS_CONNECTING, HS_REQUEST, HS_RESPONSE, HS_CLOSE, HS_CLOSE_REPLY };

typedef struct {
  int fd, state;
  size_t off;      /* bytes written of the current message, or read of the answer */
  char head[1024]; /* the 101 head, then the close frame */
  double started;
} hs_t;

static int hs_start(int ep, hs_t *h) {
  h->fd = tcp_socket(1);
  if (h->fd < 0) return -1;
  struct sockaddr_in a = server_addr();
  h->state = HS_CONNECTING;
  h->off = 0;
  h->started = now_s();
  if (connect(h->fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
    perror("loadgen: connect");
    close(h->fd);
    h->fd = -1;
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = h};
  epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &ev);
  return 0;
}

/* Advances one handshake as far as it goes: 0 in progress, 1 done, -1 failed. */
static int hs_step(hs_t *h) {
  for (;;) {
    switch (h->state) {
      case HS_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == EINPROGRESS || err == EALREADY) return 0;
        if (err) return -1;
        /* a connect still in progress reports ENOTCONN on write: wait for EPOLLOUT */
        h->state = HS_REQUEST;
        break;
      }
      case HS_REQUEST:
      case HS_CLOSE: {
        const char *m = h->state == HS_REQUEST ? kRequest : (const char *)kCloseFrame;
        size_t n = h->state == HS_REQUEST ? strlen(kRequest) : sizeof kCloseFrame;
        ssize_t w = write(h->fd, m + h->off, n - h->off);
        if (w < 0) return errno == EAGAIN || errno == ENOTCONN ? 0 : -1;
        h->off += (size_t)w;
        if (h->off == n) {
          h->state++;
          h->off = 0;
        }
        break;
      }
      case HS_RESPONSE: {
        ssize_t r = read(h->fd, h->head + h->off, sizeof h->head - 1 - h->off);
        if (r < 0) return errno == EAGAIN ? 0 : -1;
        if (r == 0) return -1;
        h->off += (size_t)r;
        h->head[h->off] = 0;
        char *end = strstr(h->head, "\r\n\r\n");
        if (end) {
          if (end + 4 != h->head + h->off || strncmp(h->head, "HTTP/1.1 101", 12) != 0) return -1;
          h->state = HS_CLOSE;
          h->off = 0;
        } else if (h->off == sizeof h->head - 1) {
          return -1;
        }
        break;
      }
      case HS_CLOSE_REPLY: {
        /* The server answers with its close frame, then closes TCP. */
        ssize_t r = read(h->fd, h->head + h->off, sizeof h->head - h->off);
        if (r < 0) return errno == EAGAIN ? 0 : -1;
        if (r == 0) return h->off >= 2 && (unsigned char)h->head[0] == 0x88 ? 1 : -1;
        h->off += (size_t)r;
        if (h->off == sizeof h->head) return -1;
        break;
      }
    }
  }
}

static int run_handshakes(void) {
  int ep = epoll_create1(0);
  hs_t *hs = calloc((size_t)conns, sizeof *hs);
  cap_samples = 4u << 20;
  samples = malloc(cap_samples * sizeof(double));
  double t0 = now_s(), end = t0 + seconds;
  long long done = 0, active = 0;
  for (int i = 0; i < conns; i++) {
    if (hs_start(ep, &hs[i]) != 0) {
      errors++;
      hs[i].fd = -1;
    } else {
      active++;
    }
  }
  struct epoll_event evs[256];
  while (active && errors < 100) {
    int n = epoll_wait(ep, evs, 256, 100);
    double t = now_s();
    if (t >= end) break;
    for (int e = 0; e < n; e++) {
      hs_t *h = evs[e].data.ptr;
      if (h->fd < 0) continue;
      int r = hs_step(h);
      if (r == 0) continue;
      if (r > 0) {
        done++;
        if (nsamples < cap_samples) samples[nsamples++] = now_s() - h->started;
      } else {
        errors++;
      }
      close(h->fd); /* also leaves the epoll set */
      h->fd = -1;
      active--;
      if (now_s() < end && hs_start(ep, h) == 0) active++;
      else h->fd = -1;
    }
  }
  double el = now_s() - t0;
  for (int i = 0; i < conns; i++)
    if (hs[i].fd >= 0) close(hs[i].fd);
  qsort(samples, nsamples, sizeof(double), cmp_double);
  printf("{\"mode\":\"handshakes\",\"conns\":%d,\"seconds\":%.3f,\"handshakes\":%lld,\"per_s\":%.0f,"
         "\"p50_us\":%.1f,\"p99_us\":%.1f,\"errors\":%lld}\n",
         conns, el, done, (double)done / el, quantile(0.5), quantile(0.99), errors);
  free(hs);
  free(samples);
  close(ep);
  return errors ? 1 : 0;
}

/* ---- idle connections ------------------------------------------------------ */

static int run_idle(int n, int hold) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  io_t *c = calloc((size_t)n, sizeof *c);
  int rc = 0, opened = 0;
  for (; opened < n; opened++) {
    if (dial(&c[opened]) != 0 || (!raw && upgrade(&c[opened]) != 0)) {
      fprintf(stderr, "loadgen: idle connection %d failed\n", opened);
      if (c[opened].fd >= 0) io_close(&c[opened]);
      rc = 1;
      break;
    }
  }
  if (!rc) {
    printf("READY %d\n", n);
    fflush(stdout);
    sleep((unsigned)hold);
  }
  /* Reset rather than close: 10,000 client-side TIME_WAITs per run would
   * use up the ephemeral ports of the runs after it. */
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  for (int i = 0; i < opened; i++) {
    setsockopt(c[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    io_close(&c[i]);
  }
  free(c);
  return rc;
}

int main(int argc, char **argv) {
  int handshakes = 0, idle = 0, hold = 5;
  const char *cdf_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--port")) port = atoi(v), i++;
    else if (!strcmp(a, "--mode")) raw = !strcmp(v, "raw"), i++;
    else if (!strcmp(a, "--tls")) use_tls = 1;
    else if (!strcmp(a, "--conns")) conns = atoi(v), i++;
    else if (!strcmp(a, "--inflight")) inflight = atoi(v), i++;
    else if (!strcmp(a, "--size")) size = (size_t)atol(v), i++;
    else if (!strcmp(a, "--seconds")) seconds = atof(v), i++;
    else if (!strcmp(a, "--cdf")) cdf_path = v, i++;
    else if (!strcmp(a, "--handshakes")) handshakes = 1;
    else if (!strcmp(a, "--idle")) idle = atoi(v), i++;
    else if (!strcmp(a, "--hold")) hold = atoi(v), i++;
    else {
      fprintf(stderr, "loadgen: unknown argument %s\n", a);
      return 2;
    }
  }
  if (!port || conns < 1 || inflight < 1 || seconds <= 0 || seconds > 600 || (handshakes && use_tls)) {
    fprintf(stderr,
            "usage: loadgen --port P [--mode ws|raw] [--tls] [--conns C] [--inflight K] [--size S] [--seconds T]\n"
            "               [--cdf FILE] | --handshakes [--conns C] | --idle N --hold S   (T <= 600;\n"
            "               --handshakes is plain TCP only)\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (use_tls) tls_init();
  int rc = idle ? run_idle(idle, hold) : handshakes ? run_handshakes() : run_echo(cdf_path);
  if (tls_ctx) SSL_CTX_free(tls_ctx);
  return rc;
}
