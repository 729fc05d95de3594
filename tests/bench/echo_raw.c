/* echo_raw: the physical baseline of the echo benchmark — a single-threaded
 * epoll TCP echo server with no protocol at all. Prints "listening on PORT".
 *
 *   echo_raw [PORT]               echoes every byte
 *   echo_raw [PORT] --handshake   the raw baseline of the handshake rate: per
 *       connection, reads up to an empty line, answers a fixed 101 head of the
 *       size a WebSocket server sends, reads 8 bytes (the client's close frame),
 *       answers 4 (a close frame) and closes first, as a WebSocket server does;
 *       nothing is parsed, hashed or unmasked.
 *
 * The echo reads what is there (up to 256 KiB), writes it back at once and
 * only waits for writability (EPOLLOUT, reads paused) when a write is short. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char kResponse[] =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
static const char kClose[] = {(char)0x88, 0x02, 0x03, (char)0xe8};

typedef struct {
  int fd;
  int phase;     /* --handshake: 0 reading the request, 1 reading the close frame */
  size_t got;    /* --handshake: bytes of the close frame read */
  char tail[4];  /* --handshake: the last bytes read, to find "\r\n\r\n" across reads */
  char *pending; /* bytes read but not yet written back */
  size_t len, cap;
} peer_t;

static int ep;
static char buf[1 << 18];

static void drop(peer_t *p) {
  close(p->fd);
  free(p->pending);
  free(p);
}

static void interest(peer_t *p, unsigned events) {
  struct epoll_event e = {.events = events, .data.ptr = p};
  epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &e);
}

/* Writes n bytes, keeping what the socket did not take; 0, or -1 on error. */
static int send_or_keep(peer_t *p, const char *s, size_t n) {
  ssize_t w = write(p->fd, s, n);
  if (w < 0) {
    if (errno != EAGAIN) return -1;
    w = 0;
  }
  if ((size_t)w < n) {
    size_t rest = n - (size_t)w;
    if (p->cap < rest) p->pending = realloc(p->pending, p->cap = rest);
    memcpy(p->pending, s + w, rest);
    p->len = rest;
    interest(p, EPOLLOUT); /* reads wait until the echo is out */
  }
  return 0;
}

/* Writes out what is pending: 0 when nothing is left, 1 still waiting, -1 dropped. */
static int flush(peer_t *p, unsigned events) {
  if (!p->len) return 0;
  if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return 1;
  ssize_t w = write(p->fd, p->pending, p->len);
  if (w < 0 && errno != EAGAIN) {
    drop(p);
    return -1;
  }
  if (w > 0) {
    memmove(p->pending, p->pending + w, p->len - (size_t)w);
    p->len -= (size_t)w;
  }
  if (p->len) return 1;
  interest(p, EPOLLIN);
  return 0;
}

static void on_echo(peer_t *p) {
  for (;;) {
    ssize_t r = read(p->fd, buf, sizeof buf);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return drop(p);
    if (r < 0) return;
    if (send_or_keep(p, buf, (size_t)r) != 0) return drop(p);
    if (p->len || (size_t)r < sizeof buf) return; /* likely drained: level-triggered epoll says if not */
  }
}

static void on_handshake(peer_t *p) {
  for (;;) {
    ssize_t r = read(p->fd, buf, sizeof buf);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return drop(p);
    if (r < 0) return;
    if (p->phase == 0) {
      /* the request ends with an empty line; the client sends nothing more until answered */
      size_t n = (size_t)r;
      if (n >= sizeof p->tail) {
        memcpy(p->tail, buf + n - sizeof p->tail, sizeof p->tail);
      } else {
        memmove(p->tail, p->tail + n, sizeof p->tail - n);
        memcpy(p->tail + sizeof p->tail - n, buf, n);
      }
      if (memcmp(p->tail, "\r\n\r\n", 4) == 0) {
        p->phase = 1;
        if (send_or_keep(p, kResponse, sizeof kResponse - 1) != 0) return drop(p);
        if (p->len) return;
      }
    } else {
      p->got += (size_t)r;
      if (p->got >= 8) {
        ssize_t w = write(p->fd, kClose, sizeof kClose); /* 4 bytes into an empty socket buffer */
        (void)w;
        return drop(p);
      }
    }
  }
}

int main(int argc, char **argv) {
  int port = 0, handshake = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--handshake")) handshake = 1;
    else port = atoi(argv[i]);
  }
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
    perror("listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &al);
  printf("listening on %d\n", ntohs(a.sin_port));
  fflush(stdout);
  ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      peer_t *p = evs[i].data.ptr;
      if (!p) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          peer_t *np = calloc(1, sizeof *np);
          np->fd = fd;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = np};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      if (flush(p, evs[i].events) != 0) continue;
      if (handshake) on_handshake(p);
      else on_echo(p);
    }
  }
}
