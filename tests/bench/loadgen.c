/* loadgen: the echo benchmark's load generator. Single-threaded, epoll, its own
 * minimal HTTP upgrade, pre-built masked frames; verifies every echoed byte.
 *
 *   loadgen --port P [--mode ws|raw] [--conns C] [--inflight K] [--size S] [--seconds T]
 *   loadgen --port P --handshakes --seconds T
 *   loadgen --port P --idle N --hold SECONDS     (opens N connections, prints READY, waits)
 *
 * Prints one JSON line: messages/s, MB/s (payload bytes echoed per second),
 * RTT percentiles in microseconds, and the number of verification errors. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int port = 0, conns = 1, inflight = 1, seconds = 3, raw = 0;
static size_t size = 64;

static const char *kRequest =
    "GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    exit(1);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Blocking upgrade: send the request, read up to the end of the 101 head. */
static int upgrade(int fd) {
  if (write(fd, kRequest, strlen(kRequest)) != (ssize_t)strlen(kRequest)) return -1;
  char buf[1024];
  size_t n = 0;
  while (n < sizeof buf - 1) {
    ssize_t r = read(fd, buf + n, 1);
    if (r <= 0) return -1;
    n++;
    if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0) break;
  }
  buf[n] = 0;
  return strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
}

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
  int fd;
  size_t to_send;     /* frames still to write (beyond the one in progress) */
  size_t out_off;     /* offset in `frame` of the frame being written; SIZE_MAX: none */
  size_t in_off;      /* offset in `reply` of the reply being read */
  double *sent_at;    /* ring of send times, `inflight` slots */
  size_t head, tail;
} conn_t;

static unsigned char *frame, *reply;
static size_t frame_len, reply_len;
static double *samples;
static size_t nsamples, cap_samples;
static long long errors = 0, completed = 0;

static void build_frames(void) {
  unsigned char *payload = malloc(size ? size : 1);
  for (size_t i = 0; i < size; i++) payload[i] = (unsigned char)('a' + i % 26);
  if (raw) {
    frame = payload;
    reply = payload;
    frame_len = reply_len = size;
    return;
  }
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
  free(payload);
}

static int pump_out(conn_t *c) {
  for (;;) {
    if (c->out_off == SIZE_MAX) {
      if (!c->to_send) return 0;
      c->to_send--;
      c->out_off = 0;
      c->sent_at[c->head++ % (size_t)inflight] = now_s();
    }
    ssize_t w = write(c->fd, frame + c->out_off, frame_len - c->out_off);
    if (w < 0) return errno == EAGAIN ? 1 : -1;
    c->out_off += (size_t)w;
    if (c->out_off == frame_len) c->out_off = SIZE_MAX;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double p) {
  if (!nsamples) return 0;
  size_t i = (size_t)(p * (double)(nsamples - 1));
  return samples[i] * 1e6;
}

static int run_echo(void) {
  build_frames();
  int ep = epoll_create1(0);
  conn_t *cs = calloc((size_t)conns, sizeof *cs);
  for (int i = 0; i < conns; i++) {
    cs[i].fd = dial();
    if (!raw && upgrade(cs[i].fd) != 0) {
      fprintf(stderr, "upgrade failed\n");
      return 1;
    }
    fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
    cs[i].sent_at = calloc((size_t)inflight, sizeof(double));
    cs[i].out_off = SIZE_MAX;
    cs[i].to_send = (size_t)inflight;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  cap_samples = 4u << 20;
  samples = malloc(cap_samples * sizeof(double));
  static unsigned char buf[1 << 16];
  struct epoll_event evs[256];
  double t0 = now_s(), end = t0 + seconds;
  int stopping = 0;
  while (!stopping) {
    int n = epoll_wait(ep, evs, 256, 100);
    double t = now_s();
    if (t >= end) break;
    for (int e = 0; e < n; e++) {
      conn_t *c = evs[e].data.ptr;
      if (evs[e].events & EPOLLOUT && pump_out(c) < 0) errors++;
      if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r == 0) {
          fprintf(stderr, "server closed a connection\n");
          errors++;
          stopping = 1;
          break;
        }
        if (r < 0) break;
        size_t off = 0;
        while (off < (size_t)r) {
          size_t take = reply_len - c->in_off;
          if (take > (size_t)r - off) take = (size_t)r - off;
          if (memcmp(buf + off, reply + c->in_off, take) != 0) errors++;
          c->in_off += take;
          off += take;
          if (c->in_off == reply_len) {
            c->in_off = 0;
            completed++;
            double rtt = now_s() - c->sent_at[c->tail++ % (size_t)inflight];
            if (nsamples < cap_samples) samples[nsamples++] = rtt;
            c->to_send++;
          }
        }
      }
      if (pump_out(c) < 0) errors++;
    }
  }
  double elapsed = now_s() - t0;
  qsort(samples, nsamples, sizeof(double), cmp_double);
  printf("{\"mode\":\"%s\",\"conns\":%d,\"inflight\":%d,\"size\":%zu,\"seconds\":%.3f,\"messages\":%lld,"
         "\"msgs_per_s\":%.0f,\"MBps\":%.2f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"errors\":%lld}\n",
         raw ? "raw" : "ws", conns, inflight, size, elapsed, completed, completed / elapsed,
         completed * (double)size / elapsed / 1e6, pct(0.5), pct(0.99), pct(0.999), errors);
  for (int i = 0; i < conns; i++) {
    close(cs[i].fd);
    free(cs[i].sent_at);
  }
  free(cs);
  free(samples);
  if (reply != frame) free(reply);
  free(frame);
  close(ep);
  return errors ? 1 : 0;
}

static int run_handshakes(void) {
  double t0 = now_s(), end = t0 + seconds;
  long long done = 0;
  const unsigned char close_frame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
  unsigned char buf[256];
  while (now_s() < end) {
    int fd = dial();
    if (upgrade(fd) != 0) {
      errors++;
      close(fd);
      continue;
    }
    if (write(fd, close_frame, sizeof close_frame) != (ssize_t)sizeof close_frame) errors++;
    /* The server answers with its close frame, then closes TCP. */
    ssize_t r, got = 0;
    while ((r = read(fd, buf, sizeof buf)) > 0) got += r;
    if (got < 2 || buf[0] != 0x88) errors++;
    close(fd);
    done++;
  }
  double el = now_s() - t0;
  printf("{\"mode\":\"handshakes\",\"seconds\":%.3f,\"handshakes\":%lld,\"per_s\":%.0f,\"errors\":%lld}\n", el, done,
         done / el, errors);
  return errors ? 1 : 0;
}

static int run_idle(int n, int hold) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int *fds = malloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) {
    fds[i] = dial();
    if (!raw && upgrade(fds[i]) != 0) {
      fprintf(stderr, "upgrade %d failed\n", i);
      return 1;
    }
  }
  printf("READY %d\n", n);
  fflush(stdout);
  sleep((unsigned)hold);
  for (int i = 0; i < n; i++) close(fds[i]);
  free(fds);
  return 0;
}

int main(int argc, char **argv) {
  int handshakes = 0, idle = 0, hold = 5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--port")) port = atoi(v), i++;
    else if (!strcmp(a, "--mode")) raw = !strcmp(v, "raw"), i++;
    else if (!strcmp(a, "--conns")) conns = atoi(v), i++;
    else if (!strcmp(a, "--inflight")) inflight = atoi(v), i++;
    else if (!strcmp(a, "--size")) size = (size_t)atol(v), i++;
    else if (!strcmp(a, "--seconds")) seconds = atoi(v), i++;
    else if (!strcmp(a, "--handshakes")) handshakes = 1;
    else if (!strcmp(a, "--idle")) idle = atoi(v), i++;
    else if (!strcmp(a, "--hold")) hold = atoi(v), i++;
    else {
      fprintf(stderr, "loadgen: unknown argument %s\n", a);
      return 2;
    }
  }
  if (!port || conns < 1 || inflight < 1) {
    fprintf(stderr, "usage: loadgen --port P [--mode ws|raw] [--conns C] [--inflight K] [--size S] [--seconds T]\n");
    return 2;
  }
  if (idle) return run_idle(idle, hold);
  return handshakes ? run_handshakes() : run_echo();
}
