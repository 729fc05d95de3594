// Servers: the listener on the loop thread, the accept queue for callers.
#include <netdb.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <future>

#include "api/internal.hpp"

using namespace wscore;

void ws_server::update_fd_locked() { api::set_fd_ready(efd, &efd_signaled, !acceptq.empty() || closed); }

namespace wscore::api {

void server_retain(ws_server* s) { s->refs.fetch_add(1, std::memory_order_relaxed); }

void server_release(ws_server* s) {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  for (ws_conn* c : s->acceptq) ws_free(c);
  if (s->efd >= 0) close(s->efd);
  delete s;
}

}  // namespace wscore::api

namespace {

void on_connection(uv_stream_t* listener, int status) {
  ws_server* s = static_cast<ws_server*>(listener->data);
  if (status < 0) {
    api::log(WS_LOG_WARN, "accept: %s", uv_strerror(status));
    return;
  }
  api::server_on_connection(s);
}

// Loop thread: stop listening and close every connection with 1001.
void server_shutdown(ws_server* s) {
  if (s->listener_open) {
    s->listener_open = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&s->listener), [](uv_handle_t* h) {
      api::server_release(static_cast<ws_server*>(h->data));
    });
  }
  std::vector<ws_conn*> conns(s->conns.begin(), s->conns.end());
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
  if (ss->ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(ss)->sin_port = htons(static_cast<uint16_t>(port));
  else
    reinterpret_cast<sockaddr_in6*>(ss)->sin6_port = htons(static_cast<uint16_t>(port));
  return WS_OK;
}

}  // namespace

extern "C" {

WS_EXTERN int ws_listen(const char* host, int port, const ws_options* opts, ws_server** out) {
  if (!out) return WS_EINVAL;
  *out = nullptr;
  if (!host || port < 0 || port > 65535) return WS_EINVAL;
  try {
    auto o = std::make_shared<ws_options>(opts ? *opts : ws_options{});
    // Not built yet: refuse rather than silently serve plain text or one thread.
    if (!o->tls_cert_file.empty() || !o->tls_cert_pem.empty()) return WS_ENOTSUP;
    if (o->threads > 1) return WS_ENOTSUP;
    sockaddr_storage ss;
    int rc = resolve_bind_address(host, port, &ss);
    if (rc != WS_OK) return rc;
    auto* s = new ws_server;
    s->loop = &net::Loop::get();
    s->opts = o;
    if (!o->callback_mode) {
      s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (s->efd < 0) {
        delete s;
        return WS_ESYS;
      }
    }
    std::promise<int> result;
    auto fut = result.get_future();
    s->loop->post([s, &ss, &result] {
      uv_tcp_init(s->loop->uv(), &s->listener);
      s->listener.data = s;
      int r = uv_tcp_bind(&s->listener, reinterpret_cast<sockaddr*>(&ss), 0);
      if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(&s->listener), 1024, on_connection);
      if (r < 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&s->listener), nullptr);
        result.set_value(r == UV_EADDRINUSE ? WS_EADDRINUSE : r == UV_EACCES ? WS_ESYS : WS_ESYS);
        return;
      }
      sockaddr_storage bound;
      int len = sizeof bound;
      uv_tcp_getsockname(&s->listener, reinterpret_cast<sockaddr*>(&bound), &len);
      s->port = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                                 : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
      s->listener_open = true;
      api::server_retain(s);  // held by the listener handle
      result.set_value(WS_OK);
    });
    rc = fut.get();
    if (rc != WS_OK) {
      // The listener handle was closed without a callback reference: wait for
      // the loop to finish with it before freeing.
      std::promise<void> done;
      s->loop->post([&done] { done.set_value(); });
      done.get_future().wait();
      std::promise<void> done2;  // the close callback runs one iteration later
      s->loop->post([&done2] { done2.set_value(); });
      done2.get_future().wait();
      api::server_release(s);
      return rc;
    }
    *out = s;
    return WS_OK;
  } catch (const std::bad_alloc&) {
    return WS_ENOMEM;
  } catch (...) {
    return WS_ESYS;
  }
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
    api::server_retain(s);
    s->loop->post([s] {
      server_shutdown(s);
      api::server_release(s);
    });
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
