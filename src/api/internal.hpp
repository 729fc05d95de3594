// The C ABI's handle types and the glue between caller threads and the loop
// thread. The only place that knows both the handles and the threads.
#pragma once

#include <uv.h>
#include <wscore.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "api/headers.hpp"
#include "net/loop.hpp"
#include "net/tls.hpp"
#include "net/url.hpp"
#include "proto/handshake.hpp"
#include "proto/session.hpp"
#include "proto/utf8.hpp"

struct ws_options {
  int connect_timeout = 10000;
  int handshake_timeout = 10000;
  int close_timeout = 5000;
  int idle_timeout = -1;
  int keepalive_interval = 0;
  int keepalive_timeout = 0;
  uint64_t max_message_size = 16u << 20;
  size_t max_handshake_size = 16 * 1024;
  size_t send_queue_limit = 16u << 20;
  size_t receive_queue_limit = 16u << 20;
  int send_timeout = -1;
  wscore::proto::Headers headers;
  std::vector<std::string> subprotocols;
  std::vector<std::string> origins;
  bool require_origin = false;
  bool deliver_control = false;
  int threads = 1;
  bool manual_upgrade = false;
  std::string tls_ca_file, tls_ca_dir, tls_cert_file, tls_key_file, tls_cert_pem, tls_key_pem;
  bool tls_verify_client = false;
  bool tls_insecure = false;
  bool callback_mode = false;
  ws_callbacks cbs{};
  void* cb_user = nullptr;
};

// Made with malloc (make_message in conn.cpp), freed by ws_message_free.
struct ws_message {
  int type;
  size_t size;
  uint8_t* data;  // size + 1 bytes, NUL-terminated: right behind this header, or a block of its own
  ws_message* next;  // in a connection's inbox
};

namespace wscore::api {
// A connection's received messages in order: an intrusive circular list
// reached through its last message, so an idle connection carries one
// pointer and a count rather than a deque's first block.
class Inbox {
 public:
  bool empty() const { return !tail_; }
  size_t bytes() const { return bytes_; }  // payload bytes of the messages in it
  void push(ws_message* m) {
    bytes_ += m->size;
    m->next = tail_ ? tail_->next : m;  // the first message
    if (tail_) tail_->next = m;
    tail_ = m;
  }
  ws_message* pop() {
    if (!tail_) return nullptr;
    ws_message* m = tail_->next;
    bytes_ -= m->size;
    if (m == tail_)
      tail_ = nullptr;
    else
      tail_->next = m->next;
    m->next = nullptr;
    return m;
  }

 private:
  ws_message* tail_ = nullptr;  // tail_->next is the first
  size_t bytes_ = 0;
};
}  // namespace wscore::api

namespace wscore::api {

// Keeps an eventfd readable exactly while `want` holds (one write when it
// becomes true, one read when it becomes false). Call under the owner's mutex.
void set_fd_ready(int efd, bool* signaled, bool want);

using Clock = std::chrono::steady_clock;

enum class Phase : uint8_t { connecting, handshake, pending_upgrade, open, closed };

struct Cmd {
  // message..pong carry payload bytes counted in ws_conn::buffered; keep them first.
  enum Kind : uint8_t { message, fragment, ping, pong, close, upgrade_accept, upgrade_reject, commit_close } kind;
  explicit Cmd(Kind k) : kind(k) {}
  uint8_t type = 0;  // WS_TEXT / WS_BINARY
  bool fin = true;
  bool in_buf = false;  // the payload is SendQueue::bytes[buf_off, +buf_len), not data
  uint16_t code = 0;
  int status = 0;
  uint32_t buf_off = 0;
  uint32_t buf_len = 0;
  std::string data;  // payload, close reason, subprotocol or reject body
};

// Commands from other threads for the loop, in order; small payloads side by
// side in one buffer rather than a string each.
struct SendQueue {
  std::vector<Cmd> cmds;
  std::string bytes;
};

void log(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A 4-byte mutex for the send path (std::mutex is 40 bytes and a call into
// pthread each way): one atomic exchange to lock and one to unlock when
// uncontended; contended waiters sleep in the kernel (C++20 atomic wait,
// a futex on Linux), never spin. 0 free, 1 locked, 2 locked with waiters.
class SmallMutex {
 public:
  void lock() {
    int c = 0;
    if (s_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    if (c != 2) c = s_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      s_.wait(2, std::memory_order_relaxed);
      c = s_.exchange(2, std::memory_order_acquire);
    }
  }
  void unlock() {
    if (s_.exchange(0, std::memory_order_release) == 2) s_.notify_one();
  }

 private:
  std::atomic<int> s_{0};
};

// What a connection's callers sleep on, beside its SmallMutex: a futex word
// bumped by each notification that finds a sleeper. 8 bytes, where a
// std::condition_variable is 48 (and wants a 40-byte std::mutex). Used as a
// condition variable is: the waiter checks its condition under the mutex and
// calls wait_until with the mutex held; whoever changes what it waits for
// does so under the mutex (or takes it once after) and then calls
// notify_all. notify_all costs one load when nobody sleeps.
class WaitWord {
 public:
  // Releases m, sleeps until notified or deadline (steady clock;
  // time_point::max() for none), takes m again. False when it timed out.
  // Spurious wakeups happen: callers loop on their condition.
  bool wait_until(std::unique_lock<SmallMutex>& lk, Clock::time_point deadline);
  void notify_all() {
    if (sleepers_.load(std::memory_order_seq_cst) != 0) wake();
  }

 private:
  void wake();
  std::atomic<uint32_t> seq_{0};
  std::atomic<uint32_t> sleepers_{0};
};

// Deadline helpers for timeout_ms (-1 forever).
inline bool wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lk, int timeout_ms,
                       Clock::time_point deadline) {
  if (timeout_ms < 0) {
    cv.wait(lk);
    return true;
  }
  return cv.wait_until(lk, deadline) == std::cv_status::no_timeout;
}
inline bool wait_until(WaitWord& w, std::unique_lock<SmallMutex>& lk, int timeout_ms, Clock::time_point deadline) {
  return w.wait_until(lk, timeout_ms < 0 ? Clock::time_point::max() : deadline);
}

}  // namespace wscore::api

struct ws_server;

namespace wscore::api {
// A connection's words, made on first use (an idle open connection has none
// to keep). Under the connection's mu; the strings are stable once written.
struct UpgradeInfo {
  wscore::proto::Headers headers;      // manual upgrade: extra 101 headers
  std::vector<std::string> offered;    // server: the client's subprotocol offers
  std::string subprotocol;             // the one chosen
};

struct Handshaking {
  std::string in;   // handshake bytes received so far (and, pending a manual upgrade, frames that came early)
  std::string key;  // client: the key sent; server: the key received
};

struct Notes {
  std::string close_reason;  // the peer's
  std::string error_detail;
  std::string detail_copy;   // returned by ws_error_detail
  std::forward_list<std::string> joined_headers;  // values of repeated headers, joined (stable addresses)
  std::string peer;          // ws_peer_address's text, made on its first call
};

// The peer's address as bytes: 20 where its text would be a 32-byte string
// in every connection. Written before the handle is shared; read-only after.
struct PeerAddr {
  uint8_t family = 0;  // 0 unknown, AF_INET or AF_INET6
  uint16_t port = 0;
  uint8_t addr[16] = {};
  // "1.2.3.4:80" or "[::1]:80" ("" when unknown) into buf[kText].
  static constexpr size_t kText = 64;
  const char* format(char* buf) const;
};

struct ClientSide;
// A connection's parts that most connections lack or drop early, behind one
// pointer (ws_conn::x). Loop thread, but for a client's opening (its caller
// fills them before it hands the connection to the loop).
struct Extras {
  // wss: the transport filter between the socket and everything above it
  // (plaintext in and out; the HTTP upgrade and the frames ride inside).
  std::unique_ptr<wscore::net::TlsEngine> tls;
  std::unique_ptr<Handshaking> hs;      // until the upgrade
  std::unique_ptr<ClientSide> client;   // clients only
};

// What only a client connection needs, to open (a server's has none of it).
struct ClientSide {
  std::shared_ptr<const ws_options> opts;  // the connection's (ws_conn::opts)
  wscore::net::Url url;
  std::shared_ptr<wscore::net::TlsContext> tls_ctx;  // wss
  uv_getaddrinfo_t* resolver = nullptr;
  struct addrinfo* addrs = nullptr;
  struct addrinfo* next_addr = nullptr;
  int connect_error = 0;
};
}  // namespace wscore::api

namespace wscore::api {
// A listener's open connections: linked through the connections themselves
// (no node allocated per connection). Loop thread of the listener.
class ConnList {
 public:
  inline void insert(ws_conn* c);
  inline void erase(ws_conn* c);  // nothing when c is not in the list
  inline std::vector<ws_conn*> snapshot() const;

 private:
  ws_conn* head_ = nullptr;
};

// One listening socket of a server, on its own loop (SO_REUSEPORT spreads
// connections over a server's listeners). Its fields belong to that loop.
// The IoWatch base is its listening socket.
struct Listener : wscore::net::IoWatch {
  ws_server* server = nullptr;
  wscore::net::Loop* loop = nullptr;
  bool open = false;
  int reserve_fd = -1;  // a spare descriptor, given up to refuse a connection when out of them
  ConnList conns;  // every connection of this listener not yet closed
};
}  // namespace wscore::api

namespace wscore::api {
// Bytes the socket did not take yet, in order (a connection's write queue).
// The connection points at the first chunk only; the queue's tail and how
// much of the first chunk is written are kept in that chunk (valid in the
// first one only), so an empty queue costs one pointer.
struct WriteChunk {
  WriteChunk* next;
  WriteChunk* tail;  // first chunk: the last one
  size_t off;        // first chunk: its bytes written already
  size_t size;
  char data[1];  // `size` bytes
};
}  // namespace wscore::api

// The IoWatch base is the connection's socket on its loop's epoll set; the
// Timer base its one timer, on the loop's heap (armed, it holds a reference).
struct ws_conn : wscore::net::IoWatch, wscore::net::Timer {
  // Grouped by size rather than by owner, so that nothing is padding: an idle
  // connection is mostly this struct (its owner is named on every field).
  std::atomic<int> refs{1};
  // Loop thread: when bytes last came, in steady-clock milliseconds modulo
  // 2^32 (conn.cpp: now_ms32; differences hold for 49 days, and the
  // keepalive checks it every 12 at the longest).
  uint32_t last_rx = 0;
  wscore::net::Loop* loop = nullptr;
  // Owned by the server (a server side connection holds a reference to it)
  // or by ClientSide::opts.
  const ws_options* opts = nullptr;
  wscore::api::Listener* listener = nullptr;  // server side: the one that accepted it (server())
  ws_conn* list_prev = nullptr;  // in listener->conns (loop thread)
  ws_conn* list_next = nullptr;

  // ---- loop thread only ----
  // The socket: IoWatch::fd, open from connect/accept until closed; while
  // open it holds a reference (given back by a posted task once closed).
  wscore::api::WriteChunk* wq_head = nullptr;  // what the socket did not take yet
  // From the upgrade, while something is under way: a connection at rest
  // (Session::at_rest) gives its session back to the loop thread's pool and
  // takes one again when it next reads or sends (conn.cpp: busy, park).
  std::unique_ptr<wscore::proto::Session> session;
  // What not every connection has: made on first use, freed when it holds
  // nothing (a plain server connection's once it is upgraded).
  std::unique_ptr<wscore::api::Extras> x;

  // ---- shared, under mu ----
  wscore::api::SmallMutex mu;
  int efd = -1;
  wscore::api::WaitWord cv;  // callers waiting on this connection
  wscore::api::Inbox inbox;
  std::unique_ptr<wscore::api::Notes> notes;  // made when there is something to say
  std::unique_ptr<wscore::api::SendQueue> sendq;  // made by the first send from another thread
  // What the application sent that is not on the socket yet: the payloads of
  // commands not yet framed, then the framed bytes the socket did not take
  // (the write queue). Any thread; the send queue limit applies to it.
  std::atomic<size_t> buffered{0};

  // ---- handshake details: written by the loop before the handle is shared ----
  wscore::api::HeadBlock head;  // server: the request's target and headers; client: the response's headers
  // Subprotocols and manual-upgrade headers, made only when there are any:
  // by the loop before the handle is shared (offers), by ws_upgrade_add_header
  // before the accept command that the loop reads them after, by the loop at
  // the upgrade (the chosen subprotocol).
  std::unique_ptr<wscore::api::UpgradeInfo> up;
  std::atomic<void*> user_data{nullptr};

  // ---- caller side send state, under send_mu (or the loop's bias: SendGuard) ----
  wscore::api::SmallMutex send_mu;
  wscore::proto::Utf8Validator tx_utf8;

  // ---- two-byte fields ----
  wscore::api::PeerAddr peer;    // handshake detail
  uint16_t close_code = 0;       // under mu
  int16_t open_result = 1;       // under mu; client: 1 pending, else WS_OK / WS_E*
  uint16_t http_status = 0;      // handshake detail

  // ---- one-byte fields and bit-fields: a bit-field shares its memory
  // location with its neighbours, so only fields of one owner share one ----
  std::atomic<uint8_t> state{WS_STATE_CONNECTING};  // written under mu, read anywhere
  // loop thread only
  wscore::api::Phase phase = wscore::api::Phase::connecting;
  bool listed : 1 = false;           // in listener->conns
  bool reading : 1 = false;          // EPOLLIN wanted
  bool connecting : 1 = false;       // client: connect() under way (EPOLLOUT)
  bool shutdown_wanted : 1 = false;  // FIN once the write queue is out
  bool transport_closing : 1 = false;
  bool in_feed : 1 = false;          // feed() is delivering: sends from its callbacks batch up
  bool lingering : 1 = false;        // closed for the application; TCP waits for the peer's FIN
  bool read_in_place : 1 = false;    // read_buffer_for lent the session's payload window to this read
  bool rx_paused : 1 = false;        // the inbox is full: no reads until the application catches up
  bool close_cb_done : 1 = false;
  bool open_notified : 1 = false;
  bool upgraded : 1 = false;         // a session's events and sends apply (it may be parked)
  uint8_t loop_send_depth = 0;  // its SendGuards in progress once unbiased
  std::atomic<bool> drain_wanted{false};
  // under mu
  bool efd_signaled = false;  // (not a bit-field: set_fd_ready takes its address)
  std::atomic<bool> closed{false};  // transport closed: nothing more will arrive (written under mu)
  bool peer_close_received : 1 = false;
  bool close_pending : 1 = false;     // our close (a protocol error's, or the answer to the peer's)
                                      // waits until the app read what came before it
  bool commit_requested : 1 = false;  // ws_receive asked the loop to send that close
  bool app_caught_up : 1 = true;      // the app asked for more after the last delivered message
  bool inbox_full : 1 = false;        // the inbox reached receive_queue_limit; the loop stops reading
  bool scheduled : 1 = false;         // a task to run the send queue is posted
  // send state (send_mu)
  std::atomic<uint8_t> send_bias{0};  // not kUnbiased: the loop thread skips send_mu (SendGuard)
  uint8_t tx_frag_type = 0;     // WS_TEXT / WS_BINARY while a fragmented message is being sent
  bool close_started = false;
  // handshake details (set before the handle is shared, read-only after)
  bool is_server = false;
  bool tls = false;

  void update_fd_locked();
  wscore::net::Timer& timer() { return *this; }
  wscore::api::Extras& extras() {
    if (!x) x = std::make_unique<wscore::api::Extras>();
    return *x;
  }
  inline wscore::net::TlsEngine* tls_engine() const;
  inline wscore::api::ClientSide* client() const;
  inline ws_server* server() const;  // server side: the server that accepted it (it holds a reference)
};

namespace wscore::api {
// The send state's lock, biased towards the loop thread. In callback mode
// nearly every send comes from a callback on the loop thread, and the lock's
// two atomic read-modify-writes were three quarters of ws_send's cost in the
// (b) echo. So a callback-mode connection starts biased: on the loop thread
// the guard is one plain load of send_bias, no lock. The first other thread
// to take the guard revokes the bias for good (revoke_send_bias): it marks
// it revoking and posts a task to the loop; the loop thread runs it between
// callbacks, so outside any section, and clears the bias there; the other
// thread waits for that (as it would have waited for the lock). From then on
// everyone takes send_mu. Happens-before goes through the bias's
// release/acquire, which ThreadSanitizer sees as well.
enum : uint8_t { kUnbiased = 0, kRevoking = 1, kBiased = 2 };
void revoke_send_bias(ws_conn* c);  // another thread's guard while biased; returns once unbiased

class SendGuard {
 public:
  // The biased loop thread's case inline (every callback-mode send), the
  // rest out of line.
  [[gnu::always_inline]] explicit SendGuard(ws_conn* c) : c_(c) {
    if (c->send_bias.load(std::memory_order_acquire) != kUnbiased && c->loop->on_loop_thread())
      return;  // the loop's clearing task has not run: nobody else is in
    enter(c);
  }
  ~SendGuard() {
    if (loop_) c_->loop_send_depth--;
    if (locked_) c_->send_mu.unlock();
  }
  SendGuard(const SendGuard&) = delete;
  SendGuard& operator=(const SendGuard&) = delete;

 private:
  [[gnu::noinline]] void enter(ws_conn* c) {
    if (c->send_bias.load(std::memory_order_acquire) != kUnbiased) revoke_send_bias(c);
    if (c->loop->on_loop_thread()) {
      // A callback that one of the loop thread's own sends ran (on_close,
      // when the send's write failed) may send again: the lock is held
      // already, by this thread.
      loop_ = true;
      if (c->loop_send_depth++) return;
    }
    c->send_mu.lock();
    locked_ = true;
  }
  ws_conn* c_;
  bool locked_ = false;
  bool loop_ = false;
};

void ConnList::insert(ws_conn* c) {
  if (c->listed) return;
  c->listed = true;
  c->list_prev = nullptr;
  c->list_next = head_;
  if (head_) head_->list_prev = c;
  head_ = c;
}
void ConnList::erase(ws_conn* c) {
  if (!c->listed) return;
  c->listed = false;
  (c->list_prev ? c->list_prev->list_next : head_) = c->list_next;
  if (c->list_next) c->list_next->list_prev = c->list_prev;
  c->list_prev = c->list_next = nullptr;
}
std::vector<ws_conn*> ConnList::snapshot() const {
  std::vector<ws_conn*> v;
  for (ws_conn* c = head_; c; c = c->list_next) v.push_back(c);
  return v;
}
}  // namespace wscore::api

struct ws_server {
  std::atomic<int> refs{1};
  std::shared_ptr<const ws_options> opts;
  std::vector<std::unique_ptr<wscore::api::Listener>> listeners;  // one per loop thread
  int port = 0;
  std::shared_ptr<wscore::net::TlsContext> tls_ctx;  // wss server: shared by its connections

  std::mutex mu;
  std::condition_variable cv;
  std::deque<ws_conn*> acceptq;
  int efd = -1;
  bool efd_signaled = false;
  bool closed = false;
  void update_fd_locked();
};

ws_server* ws_conn::server() const { return listener ? listener->server : nullptr; }
wscore::net::TlsEngine* ws_conn::tls_engine() const { return x ? x->tls.get() : nullptr; }
wscore::api::ClientSide* ws_conn::client() const { return x ? x->client.get() : nullptr; }

namespace wscore::api {
void conn_retain(ws_conn* c);
void conn_release(ws_conn* c);
void server_retain(ws_server* s);
void server_release(ws_server* s);
// Loop thread: a new server-side connection on `l`, socket fd (non-blocking).
void server_on_connection(Listener* l, int fd);
// Loop thread: start closing a connection with `code` (server shutdown).
void conn_shutdown(ws_conn* c, uint16_t code, const char* reason);
}  // namespace wscore::api
