// Servers: listeners on loop threads (one per thread asked for), the accept
// queue for callers.
#include <fcntl.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "api/internal.hpp"

using namespace wscore;

namespace {
int get_port(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}
void set_port(sockaddr_storage* ss, int port) {
  if (ss->ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(ss)->sin_port = htons(static_cast<uint16_t>(port));
  else
    reinterpret_cast<sockaddr_in6*>(ss)->sin6_port = htons(static_cast<uint16_t>(port));
}
}  // namespace

void ws_server::update_fd_locked() { api::set_fd_ready(efd, &efd_signaled, !acceptq.empty() || closed); }

namespace wscore::api {

void server_retain(ws_server* s) { s->refs.fetch_add(1, std::memory_order_relaxed); }

void server_release(ws_server* s) {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  for (ws_conn* c : s->acceptq) ws_free(c);
  if (s->efd >= 0) close(s->efd);
  std::vector<net::Loop*> loops;
  for (auto& l : s->listeners) loops.push_back(l->loop);
  delete s;
  for (net::Loop* loop : loops) loop->release();
}

}  // namespace wscore::api

namespace {

// The listening socket is readable: take what is waiting (a bounded batch
// per pass, so one busy listener does not starve the loop's connections).
void on_listen_ready(net::IoWatch* w, uint32_t) {
  auto* l = static_cast<api::Listener*>(w);
  for (int i = 0; i < 64 && l->open; i++) {
    int fd = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      api::server_on_connection(l, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if ((errno == EMFILE || errno == ENFILE) && l->reserve_fd >= 0) {
      // Out of descriptors: the pending connection would stay in the backlog
      // and wake this level-triggered watch on every pass. So the spare
      // descriptor is given up to accept it and close it at once (the peer
      // sees the connection end, not a hang), then taken again.
      api::log(WS_LOG_WARN, "accept: %s: a connection refused", std::strerror(errno));
      close(l->reserve_fd);
      int drop = accept4(l->fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (drop >= 0) close(drop);
      l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) api::log(WS_LOG_WARN, "accept: %s", std::strerror(errno));
    return;
  }
}

// Loop thread of `l`: stop listening and close its connections with 1001.
void listener_shutdown(api::Listener* l) {
  if (l->open) {
    l->open = false;
    l->loop->io_watch(l, 0);
    close(l->fd);
    l->fd = -1;
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    l->reserve_fd = -1;
    // After any event of this pass fetched for it (see Loop::io_watch).
    l->loop->post([l] { api::server_release(l->server); });
  }
  std::vector<ws_conn*> conns = l->conns.snapshot();
  for (ws_conn* c : conns) api::conn_shutdown(c, WS_CLOSE_GOING_AWAY, "server shutting down");
}

int resolve_bind_address(const char* host, int port, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, reinterpret_cast<sockaddr_in*>(ss)) == 0) return WS_OK;
  if (uv_ip6_addr(host, port, reinterpret_cast<sockaddr_in6*>(ss)) == 0) return WS_OK;
  struct addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  struct addrinfo* res = nullptr;
  if (getaddrinfo(host, nullptr, &hints, &res) != 0 || !res) return WS_ERESOLVE;
  std::memcpy(ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  set_port(ss, port);
  return WS_OK;
}

// A bound socket for one listener. Several listeners share the port through
// SO_REUSEPORT (the kernel spreads connections over them), which is set only
// when there are several: otherwise another process could share our port.
int bind_socket(const sockaddr_storage& ss, bool reuseport, int* err) {
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno == ENOMEM || errno == ENOBUFS ? WS_ENOMEM : WS_ESYS;
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    *err = WS_ENOTSUP;
    close(fd);
    return -1;
  }
  socklen_t len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    // EADDRNOTAVAIL (not an address of this machine) stays WS_ESYS, as before.
    *err = errno == EADDRINUSE ? WS_EADDRINUSE : WS_ESYS;
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

extern "C" {

WS_EXTERN int ws_listen(const char* host, int port, const ws_options* opts, ws_server** out) {
  if (!out) return WS_EINVAL;
  *out = nullptr;
  if (!host || port < 0 || port > 65535) return WS_EINVAL;
  std::vector<int> fds;
  ws_server* s = nullptr;
  try {
    auto o = std::make_shared<ws_options>(opts ? *opts : ws_options{});
    // Any certificate or key makes a wss server; what is missing or wrong is
    // an error now, never a silent fall back to plain text.
    std::shared_ptr<net::TlsContext> tls_ctx;
    if (!o->tls_cert_file.empty() || !o->tls_cert_pem.empty() || !o->tls_key_file.empty() ||
        !o->tls_key_pem.empty()) {
      net::TlsServerConfig cfg;
      cfg.cert_file = o->tls_cert_file;
      cfg.key_file = o->tls_key_file;
      cfg.cert_pem = o->tls_cert_pem;
      cfg.key_pem = o->tls_key_pem;
      cfg.verify_client = o->tls_verify_client;
      cfg.ca_file = o->tls_ca_file;
      cfg.ca_dir = o->tls_ca_dir;
      tls_ctx = std::make_shared<net::TlsContext>();
      std::string err;
      if (!tls_ctx->init_server(cfg, &err)) {
        api::log(WS_LOG_WARN, "ws_listen: TLS: %s", err.c_str());
        return WS_ETLS;
      }
    }
    sockaddr_storage ss;
    int rc = resolve_bind_address(host, port, &ss);
    if (rc != WS_OK) return rc;
    // Bound here, in the caller, so that the address errors are synchronous;
    // with port 0 the first socket picks the port the others share.
    int n = o->threads;
    for (int i = 0; i < n; i++) {
      int err = WS_ESYS;
      int fd = bind_socket(ss, n > 1, &err);
      if (fd < 0) {
        for (int f : fds) close(f);
        return err;
      }
      fds.push_back(fd);
      if (i == 0) {
        sockaddr_storage bound;
        socklen_t len = sizeof bound;
        getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
        port = get_port(bound);
        set_port(&ss, port);
      }
    }
    s = new ws_server;
    s->opts = o;
    s->port = port;
    s->tls_ctx = std::move(tls_ctx);
    if (!o->callback_mode) {
      s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (s->efd < 0) {
        for (int f : fds) close(f);
        delete s;
        return WS_ESYS;
      }
    }
    for (int i = 0; i < n; i++) {
      auto l = std::make_unique<api::Listener>();
      l->server = s;
      l->loop = net::Loop::acquire(static_cast<size_t>(i));
      s->listeners.push_back(std::move(l));
    }
  } catch (...) {
    for (int f : fds) close(f);
    if (s) {
      for (auto& l : s->listeners) l->loop->release();
      if (s->efd >= 0) close(s->efd);
      delete s;
    }
    return WS_ENOMEM;
  }
  // From here the server is complete: every failure path goes through
  // ws_server_free, which closes whatever listeners did open.
  std::vector<std::promise<int>> results(fds.size());
  for (size_t i = 0; i < fds.size(); i++) {
    api::Listener* l = s->listeners[i].get();
    int fd = fds[i];
    std::promise<int>* result = &results[i];
    l->loop->post([l, fd, result] {
      api::server_retain(l->server);  // held by the socket until it is closed
      l->open = true;
      l->fd = fd;
      l->cb = on_listen_ready;
      l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      int r = listen(fd, 1024) == 0 ? 0 : -errno;
      if (r == 0) r = l->loop->io_watch(l, EPOLLIN);
      if (r < 0) listener_shutdown(l);
      result->set_value(r == 0 ? WS_OK : r == -EADDRINUSE ? WS_EADDRINUSE : WS_ESYS);
    });
  }
  int rc = WS_OK;
  for (auto& r : results) {
    int v = r.get_future().get();
    if (rc == WS_OK) rc = v;
  }
  if (rc != WS_OK) {
    ws_server_free(s);
    return rc;
  }
  *out = s;
  return WS_OK;
}

WS_EXTERN int ws_server_port(const ws_server* s) { return s ? s->port : WS_EINVAL; }

WS_EXTERN int ws_server_fileno(const ws_server* s) {
  if (!s) return WS_EINVAL;
  return s->efd >= 0 ? s->efd : WS_ENOTSUP;
}

WS_EXTERN int ws_accept(ws_server* s, ws_conn** out, int timeout_ms) {
  if (!s || !out) return WS_EINVAL;
  *out = nullptr;
  if (s->opts->callback_mode) return WS_ENOTSUP;
  auto deadline = api::Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  std::unique_lock<std::mutex> lk(s->mu);
  for (;;) {
    if (s->closed) return WS_ECANCELED;
    if (!s->acceptq.empty()) {
      *out = s->acceptq.front();
      s->acceptq.pop_front();
      s->update_fd_locked();
      return WS_OK;
    }
    if (timeout_ms == 0) return WS_EAGAIN;
    if (!api::wait_until(s->cv, lk, timeout_ms, deadline) && s->acceptq.empty() && !s->closed)
      return WS_ETIMEDOUT;
  }
}

WS_EXTERN int ws_server_close(ws_server* s) {
  if (!s) return WS_EINVAL;
  try {
    std::deque<ws_conn*> unaccepted;
    {
      std::lock_guard<std::mutex> g(s->mu);
      if (s->closed) return WS_OK;
      s->closed = true;
      unaccepted.swap(s->acceptq);  // ws_accept answers WS_ECANCELED from now on
      s->update_fd_locked();
    }
    s->cv.notify_all();
    // Connections nobody accepted hold a reference to the server: release them
    // now, or the two would keep each other alive.
    for (ws_conn* c : unaccepted) ws_free(c);
    for (auto& lp : s->listeners) {
      api::Listener* l = lp.get();
      api::server_retain(s);
      l->loop->post([l] {
        listener_shutdown(l);
        api::server_release(l->server);
      });
    }
    return WS_OK;
  } catch (...) {
    return WS_ENOMEM;
  }
}

WS_EXTERN void ws_server_free(ws_server* s) {
  if (!s) return;
  ws_server_close(s);
  api::server_release(s);
}

}  // extern "C"
