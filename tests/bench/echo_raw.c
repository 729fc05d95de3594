/* echo_raw: the physical baseline of the echo benchmark — a single-threaded
 * epoll TCP echo server with no protocol at all. Prints "listening on PORT". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  int fd;
  char *pending; /* bytes read but not yet written back */
  size_t len, cap;
} peer_t;

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 1024)) {
    perror("listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &al);
  printf("listening on %d\n", ntohs(a.sin_port));
  fflush(stdout);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static char buf[1 << 16];
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
          struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = np};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      int dead = 0;
      for (;;) {
        /* Write back what is pending first, then read more. */
        while (p->len) {
          ssize_t w = write(p->fd, p->pending, p->len);
          if (w < 0) break;
          memmove(p->pending, p->pending + w, p->len - (size_t)w);
          p->len -= (size_t)w;
        }
        if (p->len) break; /* socket full: EPOLLOUT will call us back */
        ssize_t r = read(p->fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
          dead = 1;
          break;
        }
        if (r < 0) break;
        ssize_t w = write(p->fd, buf, (size_t)r);
        if (w < 0) w = 0;
        if (w < r) {
          size_t rest = (size_t)(r - w);
          if (p->cap < rest) p->pending = realloc(p->pending, p->cap = rest);
          memcpy(p->pending, buf + w, rest);
          p->len = rest;
        }
      }
      if (dead) {
        close(p->fd);
        free(p->pending);
        free(p);
      }
    }
  }
}
