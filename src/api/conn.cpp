// Connections: the loop-thread side (reads, writes, handshake, session events,
// timers) and the caller-thread side (ws_open, ws_send, ws_receive, ws_close,
// accessors). Caller threads never touch libuv: they queue commands.
#include <linux/futex.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <strings.h>

#include "api/internal.hpp"

using namespace wscore;
using api::Clock;
using api::Cmd;
using api::Phase;

#define WS_GUARD_BEGIN try {
#define WS_GUARD_END                  \
  }                                   \
  catch (const std::bad_alloc&) {     \
    return WS_ENOMEM;                 \
  }                                   \
  catch (...) {                       \
    return WS_ESYS;                   \
  }

namespace {

void close_transport(ws_conn* c, int code_if_unset, const char* why, bool linger = false);
void flush(ws_conn* c);
void enqueue(ws_conn* c, wscore::api::Cmd&& cmd, const uint8_t* p = nullptr, size_t n = 0);
void flush_unless_batching(ws_conn* c);
void feed(ws_conn* c, uint8_t* data, size_t len);

// The connection's notes, made on first use; nullptr when out of memory
// (the note is then lost, nothing else). Under c->mu.
api::Notes* notes_locked(ws_conn* c) {
  if (!c->notes) c->notes.reset(new (std::nothrow) api::Notes);
  return c->notes.get();
}

// The steady clock in milliseconds, modulo 2^32 (ws_conn::last_rx).
uint32_t now_ms32() {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count());
}

// ---- the session: busy or parked ----

// Sessions at rest, in their loop's spares (Loop::spares), for its
// connections to take when they next read or send: an idle connection holds
// none (its session would be most of its memory), and a busy one reuses a
// pooled session's buffers rather than allocating its own. Bounded in count
// and in buffer bytes.
constexpr size_t kPooledSessions = 64;
constexpr size_t kPooledBytes = 8u << 20;

proto::SessionConfig session_config(ws_conn* c);

__attribute__((noinline)) proto::Session& unpark(ws_conn* c) {
  net::Loop::Spares& p = c->loop->spares;
  if (p.items.empty()) {
    c->session = std::make_unique<proto::Session>(session_config(c));
  } else {
    auto* s = static_cast<proto::Session*>(p.items.back());
    p.items.pop_back();
    p.bytes -= s->held_bytes();
    s->reset(session_config(c));
    c->session.reset(s);
  }
  return *c->session;
}

// The connection's session, taken from the pool (or made) when it is
// parked. Loop thread, once upgraded.
inline proto::Session& busy(ws_conn* c) {
  if (c->session) [[likely]]
    return *c->session;
  return unpark(c);
}

// Gives the session back to the pool when it is at rest (a parked session
// acts as a new one would: flush, commit_close and the reads see its absence
// as nothing under way). Loop thread, between events: never while a feed
// may still hold its pointers.
void park(ws_conn* c) {
  proto::Session* s = c->session.get();
  if (!s || c->in_feed || !s->at_rest()) return;
  net::Loop& l = *c->loop;
  if (l.out_refs_owner == c && !l.out_refs.empty()) return;
  c->session.release();
  net::Loop::Spares& p = l.spares;
  size_t held = s->held_bytes();
  if (p.items.size() < kPooledSessions && held <= kPooledBytes - p.bytes) {
    if (!p.destroy) p.destroy = [](void* q) { delete static_cast<proto::Session*>(q); };
    p.items.push_back(s);
    p.bytes += held;
  } else {
    delete s;
  }
}

// The handshake's buffers, from the first handshake byte until the upgrade.
// Loop thread.
api::Handshaking& hsb(ws_conn* c) {
  api::Extras& x = c->extras();
  if (!x.hs) x.hs = std::make_unique<api::Handshaking>();
  return *x.hs;
}

void set_detail(ws_conn* c, const std::string& d) {
  std::lock_guard<api::SmallMutex> g(c->mu);
  if (api::Notes* n = notes_locked(c)) n->error_detail = d;
}

// A message of its own: `owned` (malloc'd, NUL after len bytes) is taken
// over as it is; without it the payload is copied behind the message's
// header, in the same allocation (one malloc and one free per message).
ws_message* make_message(int type, const uint8_t* data, size_t len, uint8_t* owned = nullptr) {
  if (!owned && len > SIZE_MAX - sizeof(ws_message) - 1) return nullptr;
  ws_message* m = static_cast<ws_message*>(std::malloc(sizeof(ws_message) + (owned ? 0 : len + 1)));
  if (!m) {
    std::free(owned);
    return nullptr;
  }
  if (owned) {
    m->data = owned;
  } else {
    m->data = reinterpret_cast<uint8_t*>(m + 1);
    if (len) std::memcpy(m->data, data, len);
    m->data[len] = 0;
  }
  m->next = nullptr;
  m->size = len;
  m->type = type;
  return m;
}

}  // namespace

const char* api::PeerAddr::format(char* buf) const {
  char host[INET6_ADDRSTRLEN] = "";
  buf[0] = 0;
  if (family == AF_INET || family == AF_INET6) {
    inet_ntop(family, addr, host, sizeof host);
    std::snprintf(buf, kText, family == AF_INET ? "%s:%u" : "[%s]:%u", host, static_cast<unsigned>(port));
  }
  return buf;
}

namespace {

// 0, or the errno of getpeername (ENOTCONN: not connected yet).
int record_peer(ws_conn* c) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(c->fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return errno;
  api::PeerAddr& p = c->peer;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    p.family = AF_INET;
    p.port = ntohs(a->sin_port);
    std::memcpy(p.addr, &a->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    p.family = AF_INET6;
    p.port = ntohs(a->sin6_port);
    std::memcpy(p.addr, &a->sin6_addr, 16);
  }
  return 0;
}

// ---- the socket ----

// Reads are wanted, and the inbox has room for what they bring.
bool wants_read(const ws_conn* c) { return c->reading && !c->rx_paused; }

// What the socket is watched for: reads while wanted, writability while
// bytes wait or a connect is under way.
void watch(ws_conn* c) {
  if (c->fd < 0) return;
  uint32_t ev = (wants_read(c) ? EPOLLIN : 0u) | (c->wq_head || c->connecting ? EPOLLOUT : 0u);
  int rc = c->loop->io_watch(c, ev);
  if (rc < 0 && !c->transport_closing) close_transport(c, WS_CLOSE_ABNORMAL, uv_strerror(rc));
}

void read_start(ws_conn* c) {
  c->reading = true;
  watch(c);
}

void read_stop(ws_conn* c) {
  c->reading = false;
  watch(c);
}

// The write queue's first chunk is done with (written, or the socket is gone).
void pop_write_chunk(ws_conn* c) {
  api::WriteChunk* w = c->wq_head;
  c->wq_head = w->next;
  if (c->wq_head) {
    c->wq_head->tail = w->tail;
    c->wq_head->off = 0;
  }
  c->buffered -= w->size;
  std::free(w);
}

// The queue's chunks are dropped (the socket is gone).
void drop_write_queue(ws_conn* c) {
  while (c->wq_head) pop_write_chunk(c);
}

// One write of the pieces: bytes taken, 0 when the socket is full, or -errno.
ssize_t write_socket(int fd, const iovec* iov, int pieces) {
  ssize_t n;
  do n = pieces == 1 ? ::write(fd, iov[0].iov_base, iov[0].iov_len) : ::writev(fd, iov, pieces);
  while (n < 0 && errno == EINTR);
  if (n >= 0) return n;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
}

// Closes the socket now; its reference goes back from a task, after any
// event of this loop pass that was fetched for it (see Loop::io_watch).
void close_socket(ws_conn* c) {
  if (c->fd < 0) return;
  c->reading = c->connecting = false;
  c->loop->io_watch(c, 0);
  ::close(c->fd);
  c->fd = -1;
  drop_write_queue(c);
  c->loop->post([c] { api::conn_release(c); });
}

void send_fin(ws_conn* c) {
  c->shutdown_wanted = false;
  ::shutdown(c->fd, SHUT_WR);  // fails only on a socket that is not connected: then there is nothing to end
}

// The queue went out (all of it or some): what a finished write lets happen.
void after_write(ws_conn* c) {
  if (!c->transport_closing) {
    if (!c->wq_head && c->shutdown_wanted) send_fin(c);
    flush(c);
  }
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
  }
  c->cv.notify_all();
  if (c->drain_wanted && !c->transport_closing &&
      c->buffered < c->opts->send_queue_limit) {
    c->drain_wanted = false;
    if (c->opts->cbs.on_drain) c->opts->cbs.on_drain(c, c->opts->cb_user);
  }
}

// The socket is writable: as much of the queue as it takes.
void write_queue(ws_conn* c) {
  iovec iov[64];
  int k = 0;
  size_t off = c->wq_head->off;
  for (api::WriteChunk* w = c->wq_head; w && k < 64; w = w->next, off = 0)
    iov[k++] = {w->data + off, w->size - off};
  ssize_t n = write_socket(c->fd, iov, k);
  if (n == 0) return;
  if (n < 0) {
    close_transport(c, WS_CLOSE_ABNORMAL, std::strerror(static_cast<int>(-n)));
    after_write(c);
    return;
  }
  size_t done = static_cast<size_t>(n);
  while (done > 0) {
    size_t left = c->wq_head->size - c->wq_head->off;
    if (done < left) {
      c->wq_head->off += done;
      break;
    }
    done -= left;
    pop_write_chunk(c);
  }
  if (!c->wq_head) watch(c);
  after_write(c);
}

// Writes socket bytes (pieces, in order) in order with everything written
// before: at once if the socket takes them, and what it does not take is
// copied and queued.
void write_wire(ws_conn* c, const iovec* iov, int pieces) {
  size_t len = 0;
  for (int i = 0; i < pieces; i++) len += iov[i].iov_len;
  if (len == 0 || c->transport_closing || c->fd < 0) return;
  size_t done = 0;  // bytes the socket took
  if (!c->wq_head) {
    ssize_t n = write_socket(c->fd, iov, pieces);
    if (n < 0) {
      close_transport(c, WS_CLOSE_ABNORMAL, std::strerror(static_cast<int>(-n)));
      return;
    }
    done = static_cast<size_t>(n);
    if (done == len) return;
  }
  len -= done;
  auto* w = static_cast<api::WriteChunk*>(std::malloc(offsetof(api::WriteChunk, data) + len));
  if (!w) {
    close_transport(c, WS_CLOSE_ABNORMAL, "out of memory");
    return;
  }
  w->next = nullptr;
  w->tail = w;
  w->off = 0;
  w->size = len;
  for (int i = 0, at = 0; i < pieces; i++) {  // the pieces' unwritten tails
    size_t skip = std::min(done, iov[i].iov_len);
    done -= skip;
    std::memcpy(w->data + at, static_cast<const char*>(iov[i].iov_base) + skip, iov[i].iov_len - skip);
    at += static_cast<int>(iov[i].iov_len - skip);
  }
  bool first = !c->wq_head;
  if (first) {
    c->wq_head = w;
  } else {
    c->wq_head->tail->next = w;
    c->wq_head->tail = w;
  }
  c->buffered += len;
  if (first) watch(c);
}

void write_wire(ws_conn* c, const uint8_t* const* data, const size_t* lens, int pieces) {
  iovec iov[2];
  for (int i = 0; i < pieces; i++) iov[i] = {const_cast<uint8_t*>(data[i]), lens[i]};
  write_wire(c, iov, pieces);
}

void write_wire(ws_conn* c, const uint8_t* data, size_t len) { write_wire(c, &data, &len, 1); }

// Hands whatever TLS has for the socket (records, handshake messages,
// alerts, close_notify) to the socket.
void tls_push(ws_conn* c) {
  // One buffer per loop thread, reused. Taken out while in use: a write error
  // runs on_close, whose ws_send on another wss connection comes back here.
  thread_local std::vector<uint8_t> scratch;
  std::vector<uint8_t> out;
  out.swap(scratch);
  c->tls_engine()->flush();
  out.clear();
  if (c->tls_engine()->take_ciphertext(&out)) write_wire(c, out.data(), out.size());
  out.clear();
  if (out.capacity() <= (1u << 20)) out.swap(scratch);  // a big burst is not kept
}

// Writes bytes of the connection (HTTP head or frames), through TLS for wss.
void write_bytes(ws_conn* c, const uint8_t* data, size_t len) {
  if (!c->tls_engine()) {
    write_wire(c, data, len);
    return;
  }
  // In slices of whole records, each taken and written before the next: the
  // ciphertext of a big message never piles up in one buffer (that buffer
  // would be allocated, grown and page-faulted anew for every message).
  constexpr size_t kSlice = 4 * net::TlsEngine::kRecordPlaintext;
  while (len > 0 && !c->transport_closing) {
    size_t n = std::min(len, kSlice);
    c->tls_engine()->write_plaintext(data, n);  // refused (0) only after a failure or shutdown
    tls_push(c);
    data += n;
    len -= n;
  }
}

// The session's output with the payloads it refers to (Loop::out_refs) in
// their places, in one write. Plain TCP only (frame_data makes refs for no other).
void write_output_with_refs(ws_conn* c) {
  net::Loop& l = *c->loop;
  const uint8_t* out = c->session->output_data();
  size_t n = c->session->output_size();
  constexpr int kMaxPieces = 256;
  iovec iov[kMaxPieces];
  int k = 0;
  size_t from = 0;
  for (const net::Loop::OutRef& r : l.out_refs) {
    if (k + 2 > kMaxPieces) {  // write what is gathered so far
      write_wire(c, iov, k);
      k = 0;
    }
    if (r.at > from) iov[k++] = {const_cast<uint8_t*>(out + from), r.at - from};
    iov[k++] = {const_cast<uint8_t*>(r.p), r.n};
    from = r.at;
  }
  if (n > from) iov[k++] = {const_cast<uint8_t*>(out + from), n - from};
  write_wire(c, iov, k);
  l.out_refs.clear();
  c->session->consume_output(n);
}

// Writes the session's output; closes TCP once the close handshake is over and
// everything is written.
void flush(ws_conn* c) {
  if (c->transport_closing) return;
  if (c->phase == Phase::closed && !c->upgraded) {
    // An HTTP error answer (send_error_and_close): close once it is written.
    if (!c->wq_head) close_transport(c, WS_CLOSE_ABNORMAL, nullptr, true);
    return;
  }
  if (c->session) {
    size_t n = c->session->output_size();
    net::Loop& l = *c->loop;
    if (l.out_refs_owner == c && !l.out_refs.empty()) {
      write_output_with_refs(c);
    } else if (n) {
      write_bytes(c, c->session->output_data(), n);
      c->session->consume_output(n);
    }
    if (c->session->should_close_transport() && c->tls_engine() && !c->tls_engine()->shutdown_sent()) {
      // close_notify after the close frame; TCP closes once it is written.
      c->tls_engine()->shutdown();
      tls_push(c);
    }
    if (c->session->should_close_transport() && !c->wq_head && !c->transport_closing) {
      int code;
      {
        std::lock_guard<api::SmallMutex> g(c->mu);
        code = c->close_code ? c->close_code : WS_CLOSE_ABNORMAL;
      }
      // We failed the connection: the peer may still be sending.
      close_transport(c, code, nullptr, !c->session->close_received());
    }
  }
}

// ---- the connection's timer ----

// One timer per connection (handshake, close, held close, keepalive, linger),
// on the loop's timer heap. Armed, it holds a reference to the connection.
template <void (*Fn)(ws_conn*)>
void timer_fired(net::Timer* t) {
  ws_conn* c = static_cast<ws_conn*>(t);
  Fn(c);  // may arm the timer again, with a reference of its own
  park(c);
  api::conn_release(c);
}

template <void (*Fn)(ws_conn*)>
void start_timer(ws_conn* c, uint64_t ms) {
  if (!c->timer().armed()) api::conn_retain(c);
  static const uint32_t kind = net::timer_kind(&timer_fired<Fn>);
  c->timer().kind = kind;
  c->loop->start_timer(&c->timer(), ms);
}

// The caller holds a reference of its own (the timer's may be the last but one).
void stop_timer(ws_conn* c) {
  if (!c->timer().armed()) return;
  c->loop->stop_timer(&c->timer());
  api::conn_release(c);
}

void on_close_timeout(ws_conn* c);
void unpause_reading(ws_conn* c);
void start_close_timer(ws_conn* c) {
  unpause_reading(c);  // the peer's close must be read
  start_timer<on_close_timeout>(c, static_cast<uint64_t>(std::max(c->opts->close_timeout, 1)));
}

// ---- transport shutdown ----

void notify_closed(ws_conn* c) {
  int code;
  std::string reason;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    c->closed = true;
    c->state = WS_STATE_CLOSED;
    c->update_fd_locked();
    code = c->close_code;
    if (c->notes) reason = c->notes->close_reason;
  }
  c->cv.notify_all();
  if (c->open_notified && !c->close_cb_done) {
    c->close_cb_done = true;
    if (c->opts->callback_mode && c->opts->cbs.on_close)
      c->opts->cbs.on_close(c, code, reason.c_str(), c->opts->cb_user);
  }
}

// The longest a lingering close waits for the peer's FIN.
constexpr int kLingerMs = 2000;

void end_linger(ws_conn* c) {
  c->lingering = false;
  close_socket(c);
  stop_timer(c);
}

// We close first while the peer may still be sending (it broke the protocol,
// or its request was refused). Closing the socket now would answer its unread
// bytes with a reset, and a reset can destroy our close frame or error
// response before the peer reads it. So: FIN once the queued bytes are out,
// then read and discard until the peer's FIN or kLingerMs, then close.
bool start_linger(ws_conn* c) {
  if (c->fd < 0 || c->connecting) return false;
  if (c->wq_head)
    c->shutdown_wanted = true;
  else
    send_fin(c);
  c->lingering = true;
  c->rx_paused = false;
  read_start(c);  // it may be reading already
  start_timer<end_linger>(c, static_cast<uint64_t>(std::min(kLingerMs, std::max(c->opts->close_timeout, 1))));
  return true;
}

void close_transport(ws_conn* c, int code_if_unset, const char* why, bool linger) {
  if (c->transport_closing) return;
  c->transport_closing = true;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (!c->close_code) c->close_code = static_cast<uint16_t>(code_if_unset);
    if (why && (!c->notes || c->notes->error_detail.empty()))
      if (api::Notes* n = notes_locked(c)) n->error_detail = why;
  }
  if (c->phase != Phase::closed) c->phase = Phase::closed;
  if (c->listener) c->listener->conns.erase(c);
  if (c->fd >= 0 && !(linger && start_linger(c))) close_socket(c);
  if (!c->lingering) stop_timer(c);
  bool was_open = c->open_notified;
  notify_closed(c);
  // In callback mode the library owned the connection since on_open.
  if (was_open && c->opts->callback_mode) api::conn_release(c);
}

// ---- timers ----

void on_close_timeout(ws_conn* c) {
  char peer[api::PeerAddr::kText];
  api::log(WS_LOG_INFO, "close handshake timed out with %s", c->peer.format(peer));
  close_transport(c, WS_CLOSE_ABNORMAL, "the peer did not answer the close in time");
}

// Sends the held-back close (pull mode: a protocol error's, or the answer to
// the peer's close), then bounds the close.
void commit_close(ws_conn* c) {
  if (!c->session || !c->session->pending_close() || c->transport_closing) return;
  c->session->commit_close();
  c->state = WS_STATE_CLOSING;
  start_close_timer(c);
  flush(c);
}

void on_handshake_timeout(ws_conn* c) {
  close_transport(c, WS_CLOSE_ABNORMAL, "handshake timed out");
}

int keepalive_period(const ws_options& o) {
  int period = 0;
  if (o.keepalive_interval > 0) period = o.keepalive_interval;
  if (o.idle_timeout > 0) period = period ? std::min(period, o.idle_timeout) : o.idle_timeout;
  return period <= 0 ? 0 : std::max(period / 2, 10);
}

void start_keepalive(ws_conn* c);

void on_keepalive(ws_conn* c) {
  if (!c->upgraded || c->phase != Phase::open) return;
  const ws_options& o = *c->opts;
  // Not reading because the application is behind (flow control) is no sign
  // of a dead peer: it sent so much that we stopped.
  if (c->rx_paused) c->last_rx = now_ms32();
  const int64_t idle = static_cast<uint32_t>(now_ms32() - c->last_rx);
  if (o.idle_timeout > 0 && idle >= o.idle_timeout) {
    api::conn_shutdown(c, WS_CLOSE_GOING_AWAY, "idle timeout");
    return;
  }
  if (o.keepalive_interval > 0) {
    if (o.keepalive_timeout > 0 && idle >= o.keepalive_interval + o.keepalive_timeout) {
      close_transport(c, WS_CLOSE_ABNORMAL, "keepalive: no answer from the peer");
      return;
    }
    if (idle >= o.keepalive_interval && busy(c).send_ping(nullptr, 0) == proto::SendResult::ok)
      flush(c);
  }
  if (!c->transport_closing && !c->timer().armed()) start_keepalive(c);  // the next check
}

void start_keepalive(ws_conn* c) {
  if (int period = keepalive_period(*c->opts)) start_timer<on_keepalive>(c, static_cast<uint64_t>(period));
}

// ---- opening ----

proto::SessionConfig session_config(ws_conn* c) {
  proto::SessionConfig sc;
  sc.role = c->is_server ? proto::Role::server : proto::Role::client;
  sc.max_message_size = c->opts->max_message_size;
  sc.auto_pong = true;
  // Pull mode: replies to messages the application has not read yet must be
  // able to precede the close that came after them (a protocol error's, or
  // our answer to the peer's close). Callbacks have answered them already.
  sc.defer_close = !c->opts->callback_mode;
  sc.stream = c->opts->callback_mode && c->opts->cbs.on_message_part;
  return sc;
}

// The connection is upgraded: start the session and hand it to the application.
void became_open(ws_conn* c, std::string leftover) {
  if (c->x) {  // answered: an open connection keeps no handshake buffers
    c->x->hs.reset();
    if (!c->x->tls && !c->x->client) c->x.reset();
  }
  c->upgraded = true;  // its session is made when it first reads or sends
  c->phase = Phase::open;
  c->last_rx = now_ms32();
  stop_timer(c);
  start_keepalive(c);
  c->state = WS_STATE_OPEN;
  c->open_notified = true;
  if (c->is_server) {
    if (c->opts->callback_mode) {
      api::conn_retain(c);  // the library's own reference until on_close
      if (c->opts->cbs.on_open) c->opts->cbs.on_open(c, c->opts->cb_user);
    }
  } else {
    if (c->opts->callback_mode) {
      api::conn_retain(c);
      if (c->opts->cbs.on_open) c->opts->cbs.on_open(c, c->opts->cb_user);
    }
    {
      std::lock_guard<api::SmallMutex> g(c->mu);
      c->open_result = WS_OK;
    }
    c->cv.notify_all();
  }
  if (!leftover.empty() && !c->transport_closing)
    feed(c, reinterpret_cast<uint8_t*>(leftover.data()), leftover.size());
}

void finish_open_error(ws_conn* c, int err, const std::string& detail) {
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (c->open_result != 1) return;
    if (api::Notes* n = notes_locked(c)) n->error_detail = detail;
  }
  if (c->client() && c->client()->resolver) uv_cancel(reinterpret_cast<uv_req_t*>(c->client()->resolver));
  // Closed first, then published: the caller of ws_open sees a closed handle.
  close_transport(c, WS_CLOSE_ABNORMAL, detail.c_str());
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    c->open_result = static_cast<int16_t>(err);
  }
  c->cv.notify_all();
}

void send_error_and_close(ws_conn* c, int status, const std::string& body) {
  std::string resp = proto::build_error_response(status, body);
  write_bytes(c, reinterpret_cast<const uint8_t*>(resp.data()), resp.size());
  set_detail(c, body);
  // Close once the response is written (flush() does, now or after the write).
  c->phase = Phase::closed;
  flush(c);
}

void server_accept_upgrade(ws_conn* c, const std::string& subprotocol, std::string leftover);

bool origin_allowed(const ws_options& o, const std::string& origin) {
  if (origin.empty()) return !o.require_origin;
  if (o.origins.empty()) return true;
  for (const auto& a : o.origins)
    if (a.size() == origin.size() &&
        std::equal(a.begin(), a.end(), origin.begin(),
                   [](char x, char y) { return std::tolower(x) == std::tolower(y); }))
      return true;
  return false;
}

void server_handshake_data(ws_conn* c) {
  proto::HandshakeLimits lim;
  lim.max_head_size = c->opts->max_handshake_size;
  proto::Request req;
  proto::RequestParse r = proto::parse_request(hsb(c).in.data(), hsb(c).in.size(), lim, &req);
  if (r.status == proto::ParseStatus::incomplete) return;
  if (r.status == proto::ParseStatus::error) {
    api::log(WS_LOG_INFO, "bad upgrade request: %s", r.error.c_str());
    send_error_and_close(c, r.error_status, r.error + "\n");
    return;
  }
  std::string leftover = hsb(c).in.substr(r.consumed);
  hsb(c).in.clear();
  hsb(c).in.shrink_to_fit();
  proto::UpgradeCheck chk = proto::check_upgrade(req);
  c->head.assign(req.target, req.path, req.query, req.headers);  // kept for ws_request_header & co.
  if (!chk.ok) {
    send_error_and_close(c, chk.error_status, chk.error + "\n");
    return;
  }
  if (!origin_allowed(*c->opts, chk.origin)) {
    send_error_and_close(c, 403, "origin not allowed\n");
    return;
  }
  hsb(c).key = chk.key;
  if (!chk.subprotocols.empty()) {
    c->up = std::make_unique<api::UpgradeInfo>();
    c->up->offered = chk.subprotocols;
  }
  std::string chosen;
  for (const auto& offer : chk.subprotocols) {
    for (const auto& mine : c->opts->subprotocols)
      if (offer == mine) {
        chosen = offer;
        break;
      }
    if (!chosen.empty()) break;
  }
  if (c->opts->manual_upgrade && !c->opts->callback_mode) {
    c->phase = Phase::pending_upgrade;
    hsb(c).in = std::move(leftover);  // frames that came early wait for the 101
    ws_server* s = c->server();
    {
      std::lock_guard<std::mutex> g(s->mu);
      api::conn_retain(c);  // the accept queue's reference, handed to ws_accept
      s->acceptq.push_back(c);
      s->update_fd_locked();
    }
    s->cv.notify_all();
    return;
  }
  server_accept_upgrade(c, chosen, std::move(leftover));
}

void server_accept_upgrade(ws_conn* c, const std::string& subprotocol, std::string leftover) {
  proto::Headers extra = c->opts->headers;
  if (c->up) extra.insert(extra.end(), c->up->headers.begin(), c->up->headers.end());
  if (!subprotocol.empty()) {
    if (!c->up) c->up = std::make_unique<api::UpgradeInfo>();
    c->up->subprotocol = subprotocol;
  }
  std::string resp = proto::build_response_101(hsb(c).key, subprotocol, "", extra);
  write_bytes(c, reinterpret_cast<const uint8_t*>(resp.data()), resp.size());
  if (c->transport_closing) return;
  bool manual = c->phase == Phase::pending_upgrade;
  became_open(c, std::move(leftover));
  if (!manual && !c->opts->callback_mode) {
    ws_server* s = c->server();
    {
      std::lock_guard<std::mutex> g(s->mu);
      api::conn_retain(c);
      s->acceptq.push_back(c);
      s->update_fd_locked();
    }
    s->cv.notify_all();
  }
}

void client_handshake_data(ws_conn* c) {
  proto::HandshakeLimits lim;
  lim.max_head_size = c->opts->max_handshake_size;
  proto::Response resp;
  proto::ResponseParse r = proto::parse_response(hsb(c).in.data(), hsb(c).in.size(), lim, &resp);
  if (r.status == proto::ParseStatus::incomplete) return;
  if (r.status == proto::ParseStatus::error) {
    finish_open_error(c, WS_EHANDSHAKE, "bad handshake response: " + r.error);
    return;
  }
  c->http_status = static_cast<uint16_t>(resp.status);
  c->head.assign("", "", "", resp.headers);
  proto::ResponseCheck chk = proto::check_response(resp, hsb(c).key, c->opts->subprotocols, "");
  if (!chk.ok) {
    finish_open_error(c, WS_EHANDSHAKE, chk.error);
    return;
  }
  if (!chk.subprotocol.empty()) {
    c->up = std::make_unique<api::UpgradeInfo>();
    c->up->subprotocol = chk.subprotocol;
  }
  std::string leftover = hsb(c).in.substr(r.consumed);
  hsb(c).in.clear();
  hsb(c).in.shrink_to_fit();
  became_open(c, std::move(leftover));
}

// ---- reading ----

void deliver(ws_conn* c, int type, const uint8_t* data, size_t len, uint8_t* owned = nullptr) {
  if (c->opts->callback_mode) {
    if (c->opts->cbs.on_message) c->opts->cbs.on_message(c, type, data, len, c->opts->cb_user);
    return;
  }
  ws_message* m = make_message(type, data, len, owned);
  if (!m) {
    close_transport(c, WS_CLOSE_ABNORMAL, "out of memory");
    return;
  }
  bool full;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    c->inbox.push(m);
    c->app_caught_up = false;
    // Flow control: while the application is this far behind, the socket is
    // not read, so TCP makes the peer wait instead of our memory growing.
    full = c->inbox.bytes() >= c->opts->receive_queue_limit && !c->transport_closing &&
           c->state.load(std::memory_order_relaxed) == WS_STATE_OPEN;
    if (full) c->inbox_full = c->rx_paused = true;
    c->update_fd_locked();
  }
  c->cv.notify_all();
  if (full) watch(c);
}

// The application read the inbox down to half the limit (ws_receive posts it).
void resume_reading(ws_conn* c) {
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (c->inbox_full) return;  // full again meanwhile
  }
  if (!c->rx_paused) return;
  c->rx_paused = false;
  watch(c);
}

// The close handshake or a linger reads whatever the inbox holds: no pause.
void unpause_reading(ws_conn* c) {
  if (!c->rx_paused) return;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    c->inbox_full = false;
  }
  c->rx_paused = false;
  watch(c);
}

// One event of the session, from feed() or feed_in_place().
void on_event(ws_conn* c, proto::Event& ev) {
  switch (ev.type) {
    case proto::EventType::none:
      break;
    case proto::EventType::message:
      if (c->opts->cbs.on_message_part) {  // stream (callback mode): a message that came whole
        c->opts->cbs.on_message_part(c, ev.is_text ? WS_TEXT : WS_BINARY, ev.data, ev.size,
                                     WS_PART_FIRST | WS_PART_LAST, c->opts->cb_user);
        break;
      }
      // Pull mode: a big joined message changes hands without a copy.
      deliver(c, ev.is_text ? WS_TEXT : WS_BINARY, ev.data, ev.size,
              c->opts->callback_mode ? nullptr : c->session->take_message(ev));
      break;
    case proto::EventType::part:
      c->opts->cbs.on_message_part(c, ev.is_text ? WS_TEXT : WS_BINARY, ev.data, ev.size,
                                   (ev.first ? WS_PART_FIRST : 0) | (ev.fin ? WS_PART_LAST : 0), c->opts->cb_user);
      break;
    case proto::EventType::ping:
      if (c->opts->deliver_control) deliver(c, WS_PING, ev.data, ev.size);
      break;
    case proto::EventType::pong:
      if (c->opts->deliver_control) deliver(c, WS_PONG, ev.data, ev.size);
      break;
    case proto::EventType::close: {
      {
        std::lock_guard<api::SmallMutex> g(c->mu);
        if (ev.failed) {
          c->close_code = ev.close_code;
          if (api::Notes* n = notes_locked(c)) n->error_detail = std::string(ev.close_reason);
        } else {
          c->close_code = ev.close_code;
          if (!ev.close_reason.empty())
            if (api::Notes* n = notes_locked(c)) n->close_reason.assign(ev.close_reason);
          c->peer_close_received = true;
        }
      }
      if (c->session->pending_close()) {
        bool unread;
        {
          std::lock_guard<api::SmallMutex> g(c->mu);
          // Not caught up: a message was delivered that the application has
          // not come back from yet (it may be about to answer it).
          unread = !c->app_caught_up;
          c->close_pending = unread;
          c->update_fd_locked();
        }
        if (unread) {
          // The application reads the messages before the close first and
          // may answer them (the state stays OPEN for that); its next
          // ws_receive (or the close timeout) sends the close.
          read_stop(c);
          start_timer<commit_close>(c, static_cast<uint64_t>(std::max(c->opts->close_timeout, 1)));
          break;
        }
        // Behind whatever the application already queued (replies to earlier
        // messages); at once when nothing is.
        bool queued;
        {
          std::lock_guard<api::SmallMutex> g(c->mu);
          queued = c->sendq && !c->sendq->cmds.empty();
        }
        if (queued)
          enqueue(c, Cmd{Cmd::commit_close});
        else
          commit_close(c);
        break;  // commit_close moves to CLOSING and bounds the close
      }
      c->state = WS_STATE_CLOSING;
      // Bound the wait for the peer's FIN / our flush.
      start_close_timer(c);
      break;
    }
  }
}

void feed(ws_conn* c, uint8_t* data, size_t len) {
  c->last_rx = now_ms32();
  // Replies sent from on_message go out together, in one write after the
  // whole read is parsed, rather than one write per message (submit()).
  c->in_feed = true;
  net::Loop& l = *c->loop;
  l.out_refs.clear();  // (left by a feed whose connection closed before its flush)
  l.out_refs_owner = c;
  // Callback mode's whole messages go straight to on_message (what
  // on_event and deliver would do, less two calls a message).
  const ws_options& o = *c->opts;
  const ws_message_cb on_message = o.callback_mode && !o.cbs.on_message_part ? o.cbs.on_message : nullptr;
  size_t pos = 0;
  while (pos < len && !c->transport_closing) {
    proto::Event ev;
    pos += busy(c).receive(data + pos, len - pos, ev);
    if (ev.type == proto::EventType::message && on_message)
      on_message(c, ev.is_text ? WS_TEXT : WS_BINARY, ev.data, ev.size, o.cb_user);
    else if (ev.type != proto::EventType::none)
      on_event(c, ev);
    if (busy(c).state() == proto::State::closed) break;
  }
  c->in_feed = false;
  flush(c);
  l.out_refs.clear();
  l.out_refs_owner = nullptr;
}

// n bytes of a large payload were read into the session's payload window.
void feed_in_place(ws_conn* c, size_t n) {
  c->last_rx = now_ms32();
  c->in_feed = true;
  proto::Event ev;
  busy(c).receive_in_place(n, ev);
  on_event(c, ev);
  c->in_feed = false;
  flush(c);
}

// Reads of at least this much payload go straight into the message being
// assembled (one copy less); smaller ones into the loop's buffer, where
// several frames are parsed per read.
constexpr size_t kReadInPlaceMin = 64u << 10;

// Where the next read goes: the payload window of a large message under way,
// else the loop's buffer.
char* read_buffer_for(ws_conn* c, size_t* len) {
  c->read_in_place = false;
  if (c->phase == Phase::open && c->session && !c->tls_engine() && !c->lingering && !c->transport_closing) {
    size_t room;
    if (uint8_t* w = c->session->payload_window(kReadInPlaceMin, &room)) {
      c->read_in_place = true;
      *len = std::min<size_t>(room, 1u << 30);
      return reinterpret_cast<char*>(w);
    }
    if (c->session->data_payload_pending() > net::Loop::kReadBufferSize) {  // stream
      *len = net::Loop::kReadBufferCapacity;
      return c->loop->read_buffer();
    }
  }
  *len = net::Loop::kReadBufferSize;
  return c->loop->read_buffer();
}

// The peer's bytes are over (EOF, reset, TLS close_notify).
void on_end_of_input(ws_conn* c, const char* why) {
  if (c->phase == Phase::connecting || c->phase == Phase::handshake) {
    if (!c->is_server) {
      finish_open_error(c, WS_EHANDSHAKE, std::string("connection closed during the handshake: ") + why);
      return;
    }
  }
  // A clean EOF after the close handshake keeps the peer's code; otherwise 1006.
  close_transport(c, WS_CLOSE_ABNORMAL, why);
}

// Bytes of the connection (plaintext for wss), by phase.
void on_plain(ws_conn* c, char* data, size_t n) {
  switch (c->phase) {
    case Phase::handshake:
      hsb(c).in.append(data, n);
      if (c->is_server)
        server_handshake_data(c);
      else
        client_handshake_data(c);
      break;
    case Phase::pending_upgrade:
      if (hsb(c).in.size() + n > c->opts->max_message_size + 64 * 1024) {
        close_transport(c, WS_CLOSE_ABNORMAL, "too much data before the upgrade was accepted");
        return;
      }
      hsb(c).in.append(data, n);
      break;
    case Phase::open:
      feed(c, reinterpret_cast<uint8_t*>(data), n);
      break;
    default:
      break;
  }
}

void tls_failed(ws_conn* c) {
  std::string why = "TLS: " + c->tls_engine()->error();
  tls_push(c);  // the alert, if OpenSSL made one
  if (!c->is_server && (c->phase == Phase::connecting || c->phase == Phase::handshake)) {
    finish_open_error(c, WS_ETLS, why);
    return;
  }
  char peer[api::PeerAddr::kText];
  api::log(WS_LOG_INFO, "%s with %s", why.c_str(), c->peer.format(peer));
  close_transport(c, WS_CLOSE_ABNORMAL, why.c_str());
}

// wss: ciphertext in, plaintext up. The read buffer is free again once the
// engine took the ciphertext, so the plaintext is read into it.
void on_tls_read(ws_conn* c, char* buf, size_t n) {
  net::TlsEngine& e = *c->tls_engine();
  e.feed_ciphertext(reinterpret_cast<uint8_t*>(buf), n);
  auto* p = reinterpret_cast<uint8_t*>(buf);
  while (!c->transport_closing) {
    // A large payload under way: decrypted straight into the message being
    // assembled (as plain TCP reads go there, see read_buffer_for).
    size_t room;
    uint8_t* w = c->phase == Phase::open && c->session ? c->session->payload_window(kReadInPlaceMin, &room) : nullptr;
    if (w) {
      size_t m = e.read_plaintext(w, room);
      if (m == 0) break;
      feed_in_place(c, m);
      continue;
    }
    // Every record that is in, back to back: frames that span records then
    // lie whole in one buffer and are delivered in place, not assembled.
    // (Only while a whole record still fits: one split across two reads
    // would be kept and copied by OpenSSL.)
    size_t filled = 0, m;
    do {
      m = e.read_plaintext(p + filled, net::Loop::kReadBufferSize - filled);
      filled += m;
    } while (m > 0 && net::Loop::kReadBufferSize - filled > net::TlsEngine::kRecordPlaintext);
    if (filled == 0) break;
    on_plain(c, buf, filled);
  }
  if (c->transport_closing) return;
  if (e.state() == net::TlsState::failed) {
    tls_failed(c);
    return;
  }
  tls_push(c);  // handshake replies, tickets
  if (e.state() == net::TlsState::closed && !c->transport_closing) on_end_of_input(c, "the peer closed TLS");
}

constexpr ssize_t kEof = 0;

// nread bytes read into buf (read_buffer_for), or kEof, or -errno.
void on_read(ws_conn* c, ssize_t nread, char* buf) {
  if (c->lingering) {  // discarded; the peer's FIN (or an error) ends the linger
    if (nread <= 0) end_linger(c);
    return;
  }
  if (c->read_in_place) {
    c->read_in_place = false;
    if (nread > 0) {
      feed_in_place(c, static_cast<size_t>(nread));
      return;
    }
  }
  if (nread <= 0) {
    on_end_of_input(c, nread == kEof ? "the peer closed the connection" : uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (c->tls_engine())
    on_tls_read(c, buf, static_cast<size_t>(nread));
  else
    on_plain(c, buf, static_cast<size_t>(nread));
}

// The socket is readable: read until it has less than a buffer's worth (a
// few times at most; the rest comes with the next pass, level-triggered).
void read_socket(ws_conn* c) {
  for (int i = 0; i < 8 && wants_read(c) && c->fd >= 0; i++) {
    size_t len;
    char* buf = read_buffer_for(c, &len);
    ssize_t n;
    do n = ::read(c->fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->read_in_place = false;
      return;
    }
    bool in_place = c->read_in_place;
    on_read(c, n < 0 ? -errno : n, buf);
    // Again only after a full loop buffer: a read into a message's payload
    // window took at most what the message still lacked, so a full one ended
    // it, and a peer waiting for the echo has sent nothing more (EAGAIN).
    if (n <= 0 || static_cast<size_t>(n) < len || in_place) return;
  }
}

void connect_done(ws_conn* c);

void on_io(net::IoWatch* w, uint32_t events) {
  ws_conn* c = static_cast<ws_conn*>(w);
  if (c->connecting) {
    connect_done(c);
    return;
  }
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->wq_head) write_queue(c);
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && wants_read(c)) read_socket(c);
  park(c);
}

// ---- client connect ----

void try_connect(ws_conn* c);

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// The socket under connect() became writable (or failed).
void connect_done(ws_conn* c) {
  bool aborted;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    aborted = c->open_result != 1;
  }
  if (aborted || c->transport_closing) return;
  int err = 0;
  socklen_t elen = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = errno;
  if (!err) {
    err = record_peer(c);
    if (err == ENOTCONN) return;  // an event of an earlier socket: still under way
  }
  c->connecting = false;
  if (err) {
    c->client()->connect_error = -err;
    close_socket(c);  // this socket is spent: a new one for the next address
    try_connect(c);
    return;
  }
  set_nodelay(c->fd);
  c->phase = Phase::handshake;
  proto::ClientRequestSpec spec;
  spec.host_header = c->client()->url.host_header;
  spec.target = c->client()->url.target;
  spec.key = hsb(c).key = proto::generate_key();
  spec.subprotocols = c->opts->subprotocols;
  spec.extra = c->opts->headers;
  std::string reqs = proto::build_request(spec);
  if (c->client()->tls_ctx) {
    // The request is held by the engine until the TLS handshake is done.
    c->extras().tls = std::make_unique<net::TlsEngine>();
    std::string terr;
    if (!c->tls_engine()->init_client(*c->client()->tls_ctx, c->client()->url.host, &terr)) {
      c->extras().tls.reset();
      finish_open_error(c, WS_ETLS, "TLS: " + terr);
      return;
    }
  }
  read_start(c);  // and no longer EPOLLOUT but for queued bytes
  write_bytes(c, reinterpret_cast<const uint8_t*>(reqs.data()), reqs.size());
}

void try_connect(ws_conn* c) {
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (c->open_result != 1) return;
  }
  for (;;) {
    if (!c->client()->next_addr) {
      int e = c->client()->connect_error;
      finish_open_error(c, e == UV_ECONNREFUSED ? WS_ECONNREFUSED : WS_ECONNECT,
                        std::string("connect to ") + c->client()->url.host + ": " + (e ? uv_strerror(e) : "no address"));
      return;
    }
    struct addrinfo* ai = c->client()->next_addr;
    c->client()->next_addr = ai->ai_next;
    int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
      c->client()->connect_error = -errno;
      continue;
    }
    // EINTR: the connect goes on by itself, as with EINPROGRESS.
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS && errno != EINTR) {
      c->client()->connect_error = -errno;
      ::close(fd);
      continue;
    }
    c->fd = fd;
    c->cb = on_io;
    c->connecting = true;
    api::conn_retain(c);  // the socket's, until it is closed
    watch(c);
    return;
  }
}

void on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  ws_conn* c = static_cast<ws_conn*>(req->data);
  delete req;
  c->client()->resolver = nullptr;
  c->client()->addrs = res;
  c->client()->next_addr = res;
  if (status < 0) {
    finish_open_error(c, WS_ERESOLVE, "resolve " + c->client()->url.host + ": " + uv_strerror(status));
  } else {
    try_connect(c);
  }
  api::conn_release(c);
}

void start_open(ws_conn* c) {
  auto* req = new uv_getaddrinfo_t;
  req->data = c;
  c->client()->resolver = req;
  struct addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  api::conn_retain(c);
  std::string port = std::to_string(c->client()->url.port);
  int rc = uv_getaddrinfo(c->loop->uv(), req, on_resolved, c->client()->url.host.c_str(), port.c_str(), &hints);
  if (rc < 0) {
    delete req;
    c->client()->resolver = nullptr;
    api::conn_release(c);
    finish_open_error(c, WS_ERESOLVE, std::string("resolve: ") + uv_strerror(rc));
  }
}

// The connect timeout fired in the caller: give up wherever the open is.
void abort_open(ws_conn* c, int err, const char* why) { finish_open_error(c, err, why); }

// ---- commands from caller threads ----

// A data frame into the session's output (the API layer validated the text).
// A payload this large goes from the caller's buffer to the socket, behind
// the output and its header, instead of being copied into the output first.
constexpr size_t kWriteByReference = 64u << 10;
// Payloads from the read buffer at least this large are referred to by the
// output rather than copied into it while a read is fed (an iovec entry
// costs less than copying this much).
constexpr size_t kRefInOutput = 2048;

proto::SendResult frame_large(ws_conn* c, proto::Session& s, bool fragment, proto::Opcode op, bool fin,
                              const uint8_t* p, size_t n);

inline proto::SendResult frame_data(ws_conn* c, bool fragment, int type, bool fin, const uint8_t* p, size_t n) {
  proto::Opcode op = type == WS_TEXT ? proto::Opcode::text : proto::Opcode::binary;
  proto::Session& s = busy(c);
  // A small whole message (an echo's, a request's answer) goes into the
  // output, inline; larger ones may be written from where they lie.
  if (n < kRefInOutput && !fragment) return s.send_message(op, p, n, proto::Utf8Checked::yes);
  return frame_large(c, s, fragment, op, fin, p, n);
}

proto::SendResult frame_large(ws_conn* c, proto::Session& s, bool fragment, proto::Opcode op, bool fin,
                              const uint8_t* p, size_t n) {
  // The frame's header only: the payload is written from where it lies.
  auto by_reference = [&] {
    return fragment ? s.send_fragment_by_reference(op, p, n, fin, proto::Utf8Checked::yes)
                    : s.send_message_by_reference(op, p, n, proto::Utf8Checked::yes);
  };
  net::Loop& l = *c->loop;
  if (n >= kRefInOutput && n < kWriteByReference && l.out_refs_owner == c && c->in_feed && c->is_server &&
      !c->tls_engine() && l.in_read_buffer(p, n)) {
    // An echo of what is being fed, from the read buffer: the frame header
    // goes to the output and the payload is written from where it lies, with
    // the rest of the batch after the feed (flush), not copied into the output.
    proto::SendResult r = by_reference();
    if (r == proto::SendResult::ok) l.out_refs.push_back({s.output_size(), p, n});
    return r;
  }
  if (n >= kWriteByReference && c->is_server && !c->tls_engine()) {
    if (l.out_refs_owner == c && !l.out_refs.empty()) write_output_with_refs(c);  // in order
    proto::SendResult r = by_reference();
    if (r != proto::SendResult::ok) return r;
    const uint8_t* pieces[2] = {s.output_data(), p};
    size_t lens[2] = {s.output_size(), n};
    write_wire(c, pieces, lens, 2);
    s.consume_output(lens[0]);
    return r;
  }
  return fragment ? s.send_fragment(op, p, n, fin, proto::Utf8Checked::yes)
                  : s.send_message(op, p, n, proto::Utf8Checked::yes);
}

// A command's payload: in the connection's send buffer (small ones, see
// enqueue_payload) or its own string.
struct Payload {
  const uint8_t* p;
  size_t n;
};
Payload payload_of(const Cmd& cmd, const std::string& buf) {
  if (cmd.in_buf) return {reinterpret_cast<const uint8_t*>(buf.data()) + cmd.buf_off, cmd.buf_len};
  return {reinterpret_cast<const uint8_t*>(cmd.data.data()), cmd.data.size()};
}
size_t counted_bytes(const Cmd& cmd) { return cmd.kind <= Cmd::pong ? (cmd.in_buf ? cmd.buf_len : cmd.data.size()) : 0; }

void apply(ws_conn* c, Cmd& cmd, Payload pl);
void apply(ws_conn* c, Cmd& cmd) { apply(c, cmd, {reinterpret_cast<const uint8_t*>(cmd.data.data()), cmd.data.size()}); }

void apply(ws_conn* c, Cmd& cmd, Payload pl) {
  if (cmd.kind == Cmd::upgrade_accept) {
    if (c->phase == Phase::pending_upgrade) {
      std::string leftover = std::move(hsb(c).in);
      server_accept_upgrade(c, cmd.data, std::move(leftover));
    }
    return;
  }
  if (cmd.kind == Cmd::commit_close) {
    commit_close(c);
    return;
  }
  if (cmd.kind == Cmd::upgrade_reject) {
    if (c->phase == Phase::pending_upgrade) send_error_and_close(c, cmd.status, cmd.data);
    return;
  }
  if (!c->upgraded || c->transport_closing) return;
  proto::Session& s = busy(c);
  switch (cmd.kind) {
    case Cmd::message:
    case Cmd::fragment: frame_data(c, cmd.kind == Cmd::fragment, cmd.type, cmd.fin, pl.p, pl.n); break;
    case Cmd::ping: s.send_ping(pl.p, pl.n); break;
    case Cmd::pong: s.send_pong(pl.p, pl.n); break;
    case Cmd::close:
      if (s.send_close(cmd.code, cmd.data) == proto::SendResult::ok) {
        c->state = s.state() == proto::State::closed ? WS_STATE_CLOSED : WS_STATE_CLOSING;
        start_close_timer(c);
      }
      break;
    default: break;
  }
}

// What a connection keeps of its command queue's memory between batches.
constexpr size_t kKeptCmds = 64;
constexpr size_t kKeptSendBuffer = 16u << 10;

void process_cmds(ws_conn* c) {
  std::vector<Cmd> cmds;
  std::string buf;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (c->sendq) {
      cmds.swap(c->sendq->cmds);
      buf.swap(c->sendq->bytes);
    }
    c->scheduled = false;
  }
  for (auto& cmd : cmds) {
    size_t n = counted_bytes(cmd);
    apply(c, cmd, payload_of(cmd, buf));
    c->buffered -= n;
  }
  flush(c);
  // The memory goes back for the next batch (no allocation per send in a
  // steady stream); what an idle connection keeps of it is bounded.
  cmds.clear();
  buf.clear();
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (c->sendq && c->sendq->cmds.empty() && cmds.capacity() <= kKeptCmds) c->sendq->cmds.swap(cmds);
    if (c->sendq && c->sendq->bytes.empty() && buf.capacity() <= kKeptSendBuffer) c->sendq->bytes.swap(buf);
  }
  c->cv.notify_all();
  park(c);
}

// Runs cmd now on the loop thread, or queues it for the loop.
// Output batched in feed() is written once it reaches this much, whatever
// the callbacks still send (and backpressure then sees it as wire bytes).
constexpr size_t kFeedBatchLimit = 256u << 10;

void flush_unless_batching(ws_conn* c) {
  if (c->in_feed && c->session && c->session->output_size() < kFeedBatchLimit) return;
  flush(c);
  park(c);  // (not while fed: feed() parks nothing, on_io does after it)
}

void submit(ws_conn* c, Cmd&& cmd) {
  if (c->loop->on_loop_thread()) {
    size_t n = cmd.kind <= Cmd::pong ? cmd.data.size() : 0;
    c->buffered += n;
    apply(c, cmd);
    c->buffered -= n;
    flush_unless_batching(c);
    return;
  }
  enqueue(c, std::move(cmd));
}

// Queues cmd behind every command already queued; the loop runs them in
// order. A small payload (p, n) goes into the connection's send buffer under
// the lock (no allocation of its own); a larger one is copied into the
// command before the lock is taken.
constexpr size_t kBufferedPayload = 4096;

void enqueue(ws_conn* c, Cmd&& cmd, const uint8_t* p, size_t n) {
  if (n > kBufferedPayload) {
    cmd.data.assign(reinterpret_cast<const char*>(p), n);
    n = 0;
  }
  bool post;
  {
    std::lock_guard<api::SmallMutex> g(c->mu);
    if (!c->sendq) c->sendq = std::make_unique<api::SendQueue>();
    api::SendQueue& q = *c->sendq;
    if (n && q.bytes.size() + n > UINT32_MAX) {  // offsets are 32-bit: this one on its own
      cmd.data.assign(reinterpret_cast<const char*>(p), n);
      n = 0;
    }
    if (n) {
      cmd.in_buf = true;
      cmd.buf_off = static_cast<uint32_t>(q.bytes.size());
      cmd.buf_len = static_cast<uint32_t>(n);
      q.bytes.append(reinterpret_cast<const char*>(p), n);
    }
    c->buffered += counted_bytes(cmd);
    q.cmds.push_back(std::move(cmd));
    post = !c->scheduled;
    c->scheduled = true;
  }
  if (post) {
    api::conn_retain(c);
    c->loop->post([c] {
      process_cmds(c);
      api::conn_release(c);
    });
  }
}

// Waits for room in the send queue. Caller thread.
int wait_for_room(ws_conn* c) {
  const ws_options& o = *c->opts;
  auto full = [&] { return c->buffered >= o.send_queue_limit; };
  if (!full()) return WS_OK;
  if (c->loop->on_loop_thread() || o.send_timeout == 0) {
    c->drain_wanted = true;  // loop thread: on_drain when there is room again
    return WS_EAGAIN;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(o.send_timeout);
  std::unique_lock<api::SmallMutex> lk(c->mu);
  while (full()) {
    if (c->closed) return WS_ECLOSED;
    auto soon = Clock::now() + std::chrono::milliseconds(50);
    if (o.send_timeout < 0) {
      c->cv.wait_until(lk, soon);
    } else if (!c->cv.wait_until(lk, std::min(deadline, soon)) && Clock::now() >= deadline) {
      return full() ? WS_ETIMEDOUT : WS_OK;
    }
  }
  return WS_OK;
}

int send_data(ws_conn* c, const void* data, size_t len, int type, bool fragment, int fin) {
  if (!c || (len && !data)) return WS_EINVAL;
  if (type != WS_TEXT && type != WS_BINARY) return WS_EINVAL;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  api::SendGuard sg(c);
  if (c->state.load() == WS_STATE_CONNECTING) return WS_ESTATE;
  if (c->closed) return WS_ECLOSED;
  if (c->close_started || c->state.load() >= WS_STATE_CLOSING) return WS_ESTATE;
  proto::Utf8Validator v = c->tx_utf8;
  if (!fragment) {
    if (c->tx_frag_type) return WS_ESTATE;
    if (type == WS_TEXT && !proto::utf8_valid(p, len)) return WS_EUTF8;
  } else {
    if (c->tx_frag_type && c->tx_frag_type != type) return WS_ESTATE;
    if (!c->tx_frag_type) v.reset();
    if (type == WS_TEXT && (v.feed(p, len) != proto::Utf8Validator::npos || (fin && !v.complete())))
      return WS_EUTF8;
  }
  int rc = wait_for_room(c);
  if (rc != WS_OK) return rc;
  auto sent_fragment = [&] {  // the message in progress moves on only once the fragment is taken
    if (!fragment) return;
    c->tx_utf8 = v;
    c->tx_frag_type = static_cast<uint8_t>(fin ? 0 : type);
  };
  if (c->loop->on_loop_thread()) {
    // A callback's send: straight into the session, no command, no copy but
    // the frame's (and no write until feed() is done, see submit()).
    if (!c->upgraded || c->transport_closing) return WS_ECLOSED;
    // Refused only when the library's own close went first (a protocol error's).
    if (frame_data(c, fragment, type, fragment ? fin != 0 : true, p, len) != proto::SendResult::ok) return WS_ESTATE;
    sent_fragment();
    flush_unless_batching(c);
    return WS_OK;
  }
  sent_fragment();
  Cmd cmd{fragment ? Cmd::fragment : Cmd::message};
  cmd.type = static_cast<uint8_t>(type);
  cmd.fin = fragment ? fin != 0 : true;
  enqueue(c, std::move(cmd), p, len);  // another thread's send (the loop's went straight in above)
  return WS_OK;
}

int send_control(ws_conn* c, Cmd::Kind kind, const void* data, size_t len) {
  if (!c || (len && !data)) return WS_EINVAL;
  if (len > 125) return WS_EINVAL;
  api::SendGuard sg(c);
  if (c->state.load() == WS_STATE_CONNECTING) return WS_ESTATE;
  if (c->closed) return WS_ECLOSED;
  if (c->close_started || c->state.load() >= WS_STATE_CLOSING) return WS_ESTATE;
  Cmd cmd{kind};
  cmd.data.assign(static_cast<const char*>(data), len);
  submit(c, std::move(cmd));
  return WS_OK;
}

bool valid_close_request(int code, const char* reason) {
  if (code != 0 && !proto::sendable_close_code(static_cast<uint16_t>(code))) return false;
  if (code < 0 || code > 65535) return false;
  size_t n = reason ? std::strlen(reason) : 0;
  if (code == 0 && n) return false;
  if (n > 123) return false;
  return proto::utf8_valid(reinterpret_cast<const uint8_t*>(reason ? reason : ""), n);
}

}  // namespace

// ---- internal API shared with server.cpp ----

void ws_conn::update_fd_locked() {
  // A pending close keeps it readable too: the next ws_receive sends it.
  api::set_fd_ready(efd, &efd_signaled, !inbox.empty() || closed || (close_pending && !commit_requested));
}

namespace wscore::api {

void set_fd_ready(int efd, bool* signaled, bool want) {
  if (efd < 0 || want == *signaled) return;
  uint64_t v = 1;
  ssize_t r = want ? write(efd, &v, sizeof v) : read(efd, &v, sizeof v);
  (void)r;  // an eventfd write/read of 8 bytes cannot fail short
  *signaled = want;
}

void revoke_send_bias(ws_conn* c) {
  uint8_t b = kBiased;
  if (c->send_bias.compare_exchange_strong(b, kRevoking, std::memory_order_acq_rel)) {
    conn_retain(c);
    c->loop->post([c] {
      c->send_bias.store(kUnbiased, std::memory_order_release);
      c->send_bias.notify_all();
      conn_release(c);
    });
  }
  while ((b = c->send_bias.load(std::memory_order_acquire)) != kUnbiased) c->send_bias.wait(b, std::memory_order_acquire);
}

bool WaitWord::wait_until(std::unique_lock<SmallMutex>& lk, Clock::time_point deadline) {
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  uint32_t s = seq_.load(std::memory_order_seq_cst);
  lk.unlock();
  bool timed_out = false;
  timespec ts{}, *tp = nullptr;
  if (deadline != Clock::time_point::max()) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
    if (ns < 0) ns = 0;
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    tp = &ts;
  }
  // The steady clock is CLOCK_MONOTONIC, FUTEX_WAIT_BITSET's clock for an
  // absolute deadline. Returns at once when seq_ moved since it was read.
  long r = syscall(SYS_futex, reinterpret_cast<uint32_t*>(&seq_), FUTEX_WAIT_BITSET_PRIVATE, s, tp, nullptr,
                   FUTEX_BITSET_MATCH_ANY);
  if (r != 0 && errno == ETIMEDOUT) timed_out = true;
  lk.lock();
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  return !timed_out;
}

void WaitWord::wake() {
  seq_.fetch_add(1, std::memory_order_seq_cst);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&seq_), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

void conn_retain(ws_conn* c) { c->refs.fetch_add(1, std::memory_order_relaxed); }

void conn_release(ws_conn* c) {
  if (c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  while (ws_message* m = c->inbox.pop()) ws_message_free(m);
  if (c->efd >= 0) close(c->efd);
  if (c->client() && c->client()->addrs) uv_freeaddrinfo(c->client()->addrs);
  ws_server* s = c->server();
  net::Loop* loop = c->loop;
  delete c;
  if (s) server_release(s);
  loop->release();
}

// A connection on `loop`, whose reference it takes over.
ws_conn* new_conn(const ws_options* opts, bool is_server, net::Loop* loop) {
  int efd = -1;
  if (!opts->callback_mode) {
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
      loop->release();
      return nullptr;
    }
  }
  ws_conn* c;
  try {
    c = new ws_conn;
  } catch (...) {
    if (efd >= 0) close(efd);
    loop->release();
    throw;
  }
  c->loop = loop;
  c->opts = opts;
  c->is_server = is_server;
  c->efd = efd;
  // Callback mode: sends come from the loop's callbacks (see SendGuard).
  if (c->opts->callback_mode) c->send_bias.store(api::kBiased, std::memory_order_relaxed);
  return c;
}

// Loop thread: a connection arrived on one of the server's listeners.
void server_on_connection(Listener* l, int fd) {
  ws_server* s = l->server;
  ws_conn* c = nullptr;
  try {
    l->loop->retain();
    c = new_conn(s->opts.get(), true, l->loop);
  } catch (...) {
  }
  if (!c) {
    log(WS_LOG_ERROR, "cannot allocate a connection (eventfd: out of descriptors?)");
    ::close(fd);
    return;
  }
  server_retain(s);  // given back in conn_release (c->server() is s from here on)
  c->listener = l;
  // The socket holds the initial reference until it is closed; whoever gets
  // the connection (ws_accept, callback mode's on_open) takes its own.
  c->fd = fd;
  c->cb = on_io;
  set_nodelay(fd);
  record_peer(c);
  c->phase = Phase::handshake;
  if (s->tls_ctx) {
    c->tls = true;
    c->extras().tls = std::make_unique<net::TlsEngine>();
    std::string err;
    if (!c->tls_engine()->init_server(*s->tls_ctx, &err)) {
      c->extras().tls.reset();
      log(WS_LOG_WARN, "TLS: %s", err.c_str());
      close_transport(c, WS_CLOSE_ABNORMAL, err.c_str());
      return;
    }
  }
  l->conns.insert(c);
  if (c->opts->handshake_timeout > 0)
    start_timer<on_handshake_timeout>(c, static_cast<uint64_t>(c->opts->handshake_timeout));
  read_start(c);
}

void conn_shutdown(ws_conn* c, uint16_t code, const char* reason) {
  if (c->transport_closing) return;
  if (c->phase == Phase::open && c->upgraded && !(c->session && c->session->close_sent())) {
    {
      api::SendGuard g(c);
      c->close_started = true;
    }
    Cmd cmd{Cmd::close};
    cmd.code = code;
    cmd.data = reason;
    apply(c, cmd);
    flush(c);
  } else if (c->phase != Phase::open) {
    close_transport(c, WS_CLOSE_GOING_AWAY, reason);
  }
}

}  // namespace wscore::api

// ======================= the C ABI: connections =======================

extern "C" {

WS_EXTERN int ws_open(const char* url, const ws_options* opts, ws_conn** out) {
  if (!out) return WS_EINVAL;
  *out = nullptr;
  if (!url) return WS_EINVAL;
  WS_GUARD_BEGIN
  net::Url u;
  std::string err = net::parse_url(url, &u);
  if (!err.empty()) {
    api::log(WS_LOG_INFO, "ws_open: %s", err.c_str());
    return WS_EURL;
  }
  auto o = std::make_shared<ws_options>(opts ? *opts : ws_options{});
  ws_conn* c = api::new_conn(o.get(), false, net::Loop::acquire(0));
  if (!c) return WS_ESYS;
  c->extras().client = std::make_unique<api::ClientSide>();
  c->client()->opts = o;
  c->client()->url = u;
  if (u.tls) {
    c->tls = true;
    net::TlsClientConfig cfg;
    cfg.ca_file = o->tls_ca_file;
    cfg.ca_dir = o->tls_ca_dir;
    cfg.cert_file = o->tls_cert_file;
    cfg.key_file = o->tls_key_file;
    cfg.cert_pem = o->tls_cert_pem;
    cfg.key_pem = o->tls_key_pem;
    cfg.insecure_skip_verify = o->tls_insecure;
    auto ctx = std::make_shared<net::TlsContext>();
    std::string err;
    if (!ctx->init_client(cfg, &err)) {
      // A closed connection that says why, as for a failed TLS handshake.
      std::lock_guard<api::SmallMutex> g(c->mu);
      if (api::Notes* n = notes_locked(c)) n->error_detail = "TLS: " + err;
      c->close_code = WS_CLOSE_ABNORMAL;
      c->closed = true;
      c->state = WS_STATE_CLOSED;
      c->open_result = WS_ETLS;
      c->update_fd_locked();
      *out = c;
      return WS_ETLS;
    }
    c->client()->tls_ctx = std::move(ctx);
  }
  c->phase = Phase::connecting;
  int timeout = o->connect_timeout;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout < 0 ? 0 : timeout);
  if (c->loop->on_loop_thread()) {
    api::conn_release(c);
    return WS_ESTATE;  // a blocking open from a callback would deadlock the loop
  }
  api::conn_retain(c);
  c->loop->post([c] {
    start_open(c);
    api::conn_release(c);
  });
  int result;
  {
    std::unique_lock<api::SmallMutex> lk(c->mu);
    while (c->open_result == 1) {
      if (!api::wait_until(c->cv, lk, timeout, deadline) && c->open_result == 1) break;
    }
    result = c->open_result;
  }
  if (result == 1) {
    api::conn_retain(c);
    c->loop->post([c] {
      abort_open(c, WS_ETIMEDOUT, "connect timed out");
      api::conn_release(c);
    });
    std::unique_lock<api::SmallMutex> lk(c->mu);
    while (c->open_result == 1) c->cv.wait_until(lk, Clock::time_point::max());
    result = c->open_result;
  }
  if (result == WS_OK) {
    *out = c;
    return WS_OK;
  }
  if (result == WS_EHANDSHAKE || result == WS_ETLS) {
    *out = c;  // closed; kept for diagnostics
    return result;
  }
  api::conn_release(c);
  return result;
  WS_GUARD_END
}

WS_EXTERN int ws_receive(ws_conn* c, ws_message** out, int timeout_ms) {
  if (!c || !out) return WS_EINVAL;
  *out = nullptr;
  if (c->opts->callback_mode) return WS_ENOTSUP;
  if (c->state.load() == WS_STATE_CONNECTING && !c->closed) return WS_ESTATE;
  // The clock is read only for a wait that can time out.
  Clock::time_point deadline{};
  if (timeout_ms > 0) deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<api::SmallMutex> lk(c->mu);
  for (;;) {
    if (!c->inbox.empty()) {
      *out = c->inbox.pop();
      c->update_fd_locked();
      if (c->inbox_full && c->inbox.bytes() <= c->opts->receive_queue_limit / 2) {
        c->inbox_full = false;
        api::conn_retain(c);
        c->loop->post([c] {
          resume_reading(c);
          api::conn_release(c);
        });
      }
      return WS_OK;
    }
    c->app_caught_up = true;  // it asks for more than it was given
    if (c->closed) return WS_ECLOSED;
    if (c->close_pending && !c->commit_requested) {
      // Everything before the close was read (and answered, in order, through
      // the same queue): now the loop may send our close.
      c->commit_requested = true;
      c->update_fd_locked();
      lk.unlock();
      submit(c, Cmd{Cmd::commit_close});
      lk.lock();
      continue;
    }
    if (timeout_ms == 0) return WS_EAGAIN;
    if (!api::wait_until(c->cv, lk, timeout_ms, deadline) && c->inbox.empty() && !c->closed)
      return WS_ETIMEDOUT;
  }
}

WS_EXTERN const void* ws_message_data(const ws_message* m) { return m ? m->data : nullptr; }
WS_EXTERN size_t ws_message_size(const ws_message* m) { return m ? m->size : 0; }
WS_EXTERN int ws_message_type(const ws_message* m) { return m ? m->type : WS_EINVAL; }
WS_EXTERN void ws_message_free(ws_message* m) {
  if (!m) return;
  if (m->data != reinterpret_cast<uint8_t*>(m + 1)) std::free(m->data);  // a block taken over
  std::free(m);
}

WS_EXTERN int ws_send(ws_conn* c, const void* data, size_t len, int type) {
  WS_GUARD_BEGIN
  return send_data(c, data, len, type, false, 1);
  WS_GUARD_END
}

WS_EXTERN int ws_send_fragment(ws_conn* c, const void* data, size_t len, int type, int fin) {
  WS_GUARD_BEGIN
  return send_data(c, data, len, type, true, fin);
  WS_GUARD_END
}

WS_EXTERN int ws_ping(ws_conn* c, const void* data, size_t len) {
  WS_GUARD_BEGIN
  return send_control(c, Cmd::ping, data, len);
  WS_GUARD_END
}

WS_EXTERN int ws_pong(ws_conn* c, const void* data, size_t len) {
  WS_GUARD_BEGIN
  return send_control(c, Cmd::pong, data, len);
  WS_GUARD_END
}

WS_EXTERN int ws_close(ws_conn* c, int code, const char* reason) {
  if (!c) return WS_EINVAL;
  if (!valid_close_request(code, reason)) return WS_EINVAL;
  WS_GUARD_BEGIN
  {
    api::SendGuard sg(c);
    if (c->closed) return WS_ECLOSED;
    if (c->state.load() == WS_STATE_CONNECTING) return WS_ESTATE;
    if (!c->close_started) {
      c->close_started = true;
      Cmd cmd{Cmd::close};
      cmd.code = static_cast<uint16_t>(code);
      cmd.data = reason ? reason : "";
      submit(c, std::move(cmd));
    }
  }
  if (c->loop->on_loop_thread()) return WS_OK;
  // The loop bounds the wait with the close timeout; the margin covers the hop.
  int timeout = c->opts->close_timeout;
  auto deadline = Clock::now() + std::chrono::milliseconds((timeout < 0 ? 0 : timeout) + 2000);
  std::unique_lock<api::SmallMutex> lk(c->mu);
  while (!c->closed) {
    if (!api::wait_until(c->cv, lk, timeout < 0 ? -1 : timeout + 2000, deadline) && !c->closed)
      return WS_ETIMEDOUT;
  }
  return c->peer_close_received ? WS_OK : WS_ETIMEDOUT;
  WS_GUARD_END
}

WS_EXTERN int ws_close_code(const ws_conn* c) {
  if (!c) return WS_EINVAL;
  std::lock_guard<api::SmallMutex> g(const_cast<ws_conn*>(c)->mu);
  return c->closed || c->peer_close_received ? c->close_code : 0;
}

WS_EXTERN const char* ws_close_reason(const ws_conn* c) {
  if (!c) return "";
  std::lock_guard<api::SmallMutex> g(const_cast<ws_conn*>(c)->mu);
  // Written once, before closed is set; stable afterwards.
  return c->notes ? c->notes->close_reason.c_str() : "";
}

WS_EXTERN int ws_state(const ws_conn* c) { return c ? static_cast<int>(c->state.load()) : WS_EINVAL; }

WS_EXTERN int ws_fileno(const ws_conn* c) {
  if (!c) return WS_EINVAL;
  if (c->efd < 0) return WS_ENOTSUP;
  return c->efd;
}

WS_EXTERN size_t ws_buffered_amount(const ws_conn* c) {
  return c ? c->buffered.load() : 0;
}

WS_EXTERN const char* ws_error_detail(const ws_conn* c) {
  if (!c) return "";
  ws_conn* m = const_cast<ws_conn*>(c);
  std::lock_guard<api::SmallMutex> g(m->mu);
  if (!m->notes) return "";
  m->notes->detail_copy = m->notes->error_detail;
  return m->notes->detail_copy.c_str();
}

WS_EXTERN void ws_free(ws_conn* c) {
  if (!c) return;
  try {
    bool open;
    {
      api::SendGuard sg(c);
      open = !c->closed && !c->close_started;
      c->close_started = true;
    }
    if (open || c->state.load() == WS_STATE_CONNECTING) {
      api::conn_retain(c);
      c->loop->post([c] {
        if (c->phase == Phase::pending_upgrade) {
          send_error_and_close(c, 503, "the application did not accept the connection\n");
        } else if (c->phase == Phase::open) {
          api::conn_shutdown(c, WS_CLOSE_GOING_AWAY, "");
          // Nobody waits for the peer any more: bound the close by the timer.
        }
        api::conn_release(c);
      });
    }
  } catch (...) {
  }
  api::conn_release(c);
}

WS_EXTERN ws_conn* ws_retain(ws_conn* c) {
  if (c) api::conn_retain(c);
  return c;
}

WS_EXTERN void ws_set_user_data(ws_conn* c, void* data) {
  if (c) c->user_data = data;
}
WS_EXTERN void* ws_get_user_data(const ws_conn* c) { return c ? c->user_data.load() : nullptr; }

WS_EXTERN const char* ws_subprotocol(const ws_conn* c) { return c && c->up ? c->up->subprotocol.c_str() : ""; }
WS_EXTERN int ws_is_server(const ws_conn* c) { return c ? (c->is_server ? 1 : 0) : WS_EINVAL; }
WS_EXTERN int ws_is_tls(const ws_conn* c) { return c ? (c->tls ? 1 : 0) : WS_EINVAL; }
WS_EXTERN int ws_http_status(const ws_conn* c) { return c ? static_cast<int>(c->http_status) : WS_EINVAL; }
WS_EXTERN const char* ws_request_target(const ws_conn* c) { return c ? c->head.target() : nullptr; }
WS_EXTERN const char* ws_request_path(const ws_conn* c) { return c ? c->head.path() : nullptr; }
WS_EXTERN const char* ws_request_query(const ws_conn* c) { return c ? c->head.query() : nullptr; }

// A header's value; several of one name are joined with ", " into a string the
// connection keeps (stable until ws_free or ws_release_handshake).
static const char* header_lookup(const ws_conn* c, const char* name) {
  if (!name) return nullptr;
  const api::HeadBlock& h = c->head;
  std::string joined;
  const char* first = nullptr;
  int n = 0;
  for (int i = 0; i < h.count(); i++) {
    if (strcasecmp(h.name(i), name) != 0) continue;
    if (n++) joined += ", ";
    else first = h.value(i);
    joined += h.value(i);
  }
  if (n <= 1) return first;
  ws_conn* m = const_cast<ws_conn*>(c);
  std::lock_guard<api::SmallMutex> g(m->mu);
  api::Notes* notes = notes_locked(m);
  if (!notes) return nullptr;
  notes->joined_headers.push_front(std::move(joined));
  return notes->joined_headers.front().c_str();
}

WS_EXTERN const char* ws_request_header(const ws_conn* c, const char* name) {
  return c && c->is_server ? header_lookup(c, name) : nullptr;
}
WS_EXTERN const char* ws_response_header(const ws_conn* c, const char* name) {
  return c && !c->is_server ? header_lookup(c, name) : nullptr;
}
WS_EXTERN int ws_header_count(const ws_conn* c) { return c ? c->head.count() : WS_EINVAL; }
WS_EXTERN const char* ws_header_name(const ws_conn* c, int i) { return c ? c->head.name(i) : nullptr; }
WS_EXTERN const char* ws_header_value(const ws_conn* c, int i) { return c ? c->head.value(i) : nullptr; }
// The text is made on the first call and kept (in the notes: most
// connections are never asked).
WS_EXTERN const char* ws_peer_address(const ws_conn* c) {
  if (!c || !c->peer.family) return "";
  auto* m = const_cast<ws_conn*>(c);
  std::lock_guard<api::SmallMutex> g(m->mu);
  api::Notes* n = notes_locked(m);
  if (!n) return "";
  if (n->peer.empty()) {
    char buf[api::PeerAddr::kText];
    try {
      n->peer = c->peer.format(buf);
    } catch (...) {
      return "";
    }
  }
  return n->peer.c_str();
}
// The loop writes the head before the handle is shared and never reads it
// after; the caller vouches that no other thread of its own reads it now.
WS_EXTERN int ws_release_handshake(ws_conn* c) {
  if (!c) return WS_EINVAL;
  c->head.clear();
  std::lock_guard<api::SmallMutex> g(c->mu);
  if (c->notes) c->notes->joined_headers.clear();
  return WS_OK;
}

WS_EXTERN int ws_upgrade_accept(ws_conn* c, const char* subprotocol) {
  if (!c) return WS_EINVAL;
  WS_GUARD_BEGIN
  std::string sp = subprotocol ? subprotocol : "";
  api::SendGuard sg(c);  // c->up may be made by ws_upgrade_add_header
  if (!sp.empty() &&
      (!c->up || std::find(c->up->offered.begin(), c->up->offered.end(), sp) == c->up->offered.end()))
    return WS_EINVAL;
  if (!c->is_server || c->state.load() != WS_STATE_CONNECTING || c->close_started) return WS_ESTATE;
  c->close_started = false;
  Cmd cmd{Cmd::upgrade_accept};
  cmd.data = sp;
  c->state = WS_STATE_OPEN;  // sends may be queued right away; the loop sends the 101 first
  submit(c, std::move(cmd));
  return WS_OK;
  WS_GUARD_END
}

WS_EXTERN int ws_upgrade_add_header(ws_conn* c, const char* name, const char* value) {
  if (!c || !name || !value) return WS_EINVAL;
  if (!proto::valid_header_name(name) || !proto::valid_header_value(value)) return WS_EINVAL;
  WS_GUARD_BEGIN
  api::SendGuard sg(c);
  if (!c->is_server || c->state.load() != WS_STATE_CONNECTING) return WS_ESTATE;
  // Read by the loop only when it handles the accept command queued after this.
  if (!c->up) c->up = std::make_unique<api::UpgradeInfo>();
  c->up->headers.emplace_back(name, value);
  return WS_OK;
  WS_GUARD_END
}

WS_EXTERN int ws_upgrade_reject(ws_conn* c, int status, const void* body, size_t len) {
  if (!c || status < 100 || status > 599 || status == 101 || (len && !body)) return WS_EINVAL;
  WS_GUARD_BEGIN
  api::SendGuard sg(c);
  if (!c->is_server || c->state.load() != WS_STATE_CONNECTING || c->close_started) return WS_ESTATE;
  c->close_started = true;
  Cmd cmd{Cmd::upgrade_reject};
  cmd.status = status;
  cmd.data.assign(static_cast<const char*>(body), len);
  submit(c, std::move(cmd));
  return WS_OK;
  WS_GUARD_END
}

}  // extern "C"
