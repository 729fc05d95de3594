// The library's event loops: libuv loops, each on its own thread, started on
// first use and stopped when the last handle using them goes. Loop 0 serves
// every client and single-threaded server; a server asking for N threads also
// uses loops 1..N-1. Other threads hand a loop work through a lock-protected
// queue and one eventfd; the loop drains the whole queue per wakeup, so
// many sends cost one wakeup. Knows nothing of the C ABI.
#pragma once

#include <uv.h>

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "net/timers.hpp"

namespace wscore::net {

// A socket on its loop's own epoll set, where the loop thread waits (libuv's
// backend descriptor is in the same set), so a socket needs no libuv handle
// of its own (a uv_tcp_t is 248 bytes; this is 16). Level-triggered. Embedded as the first base of its
// owner (a connection, a listener), which the callback casts back to.
struct IoWatch {
  void (*cb)(IoWatch* w, uint32_t events) = nullptr;  // EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP
  int fd = -1;
  uint32_t events = 0;  // what the set watches fd for; 0: fd is not in the set
};

class Loop {
 public:
  // Loop number `index`, started if it is not running; the caller owns one
  // reference and gives it back with release(). Any thread.
  static Loop* acquire(size_t index);
  // One more reference, for a caller that holds one already. Any thread.
  void retain();
  // Drops a reference; the last one stops the thread (after everything posted
  // before it ran). Any thread, the loop's own included.
  void release();

  uv_loop_t* uv() { return &loop_; }
  // Asked on every send: the thread pointer (one register read on x86-64)
  // where the compiler has it, rather than a call to pthread_self.
  bool on_loop_thread() const { return current_thread() == loop_thread_; }

  // Runs fn on the loop thread (soon; in order of posting). From the loop
  // thread itself it is queued too (never re-entrant).
  void post(std::function<void()> fn);

  // One read buffer per loop: reads are consumed before the next one, so idle
  // connections own no buffer.
  char* read_buffer() { return read_buf_.get(); }
  // A read takes at most kReadBufferSize; one that streams a large payload
  // through (parts, not joined) takes up to the whole buffer: fewer, larger
  // reads and writes of its parts.
  static constexpr size_t kReadBufferSize = 64 * 1024;
  static constexpr size_t kReadBufferCapacity = 256 * 1024;
  bool in_read_buffer(const void* p, size_t n) const {
    auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(read_buf_.get());
    return a >= b && a - b <= kReadBufferCapacity && n <= kReadBufferCapacity - (a - b);
  }

  // Payloads that the output of the connection being fed refers to instead
  // of holding a copy: bytes of the read buffer, valid until the next read
  // (see conn.cpp, frame_data and flush). `at`: the output's size just after
  // the payload's frame header.
  struct OutRef {
    size_t at;
    const uint8_t* p;
    size_t n;
  };
  std::vector<OutRef> out_refs;
  const void* out_refs_owner = nullptr;

  // Objects that the layer above keeps for this loop's connections to reuse
  // (conn.cpp: sessions at rest), freed with the loop by `destroy`. Here
  // rather than thread_local: a shared library's thread_local costs a call
  // to __tls_get_addr on each use. Loop thread.
  struct Spares {
    std::vector<void*> items;
    size_t bytes = 0;  // the owner's count of the memory they hold
    void (*destroy)(void*) = nullptr;
    ~Spares() {
      for (void* p : items) destroy(p);
    }
  } spares;

  // Watches w->fd for `events` (EPOLLIN and/or EPOLLOUT); 0 takes it out of
  // the set (do that before closing fd). 0 or -errno. Loop thread only. An
  // event already fetched for a watch taken out is dropped, so its owner may
  // go away, but not before the callback under way returns: free it from a
  // post()ed task.
  int io_watch(IoWatch* w, uint32_t events);

  // Runs t->cb(t) once, `ms` milliseconds from the loop's current time (at
  // least 1); moves t when it is armed already. Loop thread only, as is
  // stop_timer. One uv_timer_t drives every timer of the loop.
  void start_timer(Timer* t, uint64_t ms);
  void stop_timer(Timer* t);

 private:
  explicit Loop(size_t index);
  ~Loop() = default;
  static void on_wake(IoWatch* w, uint32_t events);
  static void on_timers(uv_timer_t* d);
  void reschedule();
  void drain();
  void run();

  size_t index_;
  size_t users_ = 0;  // under the pool's mutex
  uv_loop_t loop_;
  struct Wake : IoWatch {
    Loop* loop = nullptr;
  } wake_;  // an eventfd: posts from other threads
  bool stopping_ = false;  // release()'s last task ran
  bool woken_ = false;     // the eventfd fired in this pass
  bool sleeping_ = false;  // under mu_: the thread is in (or about to enter) epoll_wait
  bool wake_sent_ = false; // under mu_: the eventfd was written since it went to sleep
  std::atomic<int> waking_{0};  // posters between mu_ and their eventfd write
  uv_timer_t driver_;
  int epfd_ = -1;  // the loop's sockets (IoWatch) and libuv's backend descriptor; the thread waits here
  TimerHeap timers_;
  uint64_t driver_due_ = UINT64_MAX;  // what driver_ is set for; UINT64_MAX: stopped
  bool firing_ = false;
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  std::vector<std::function<void()>> running_;
  std::unique_ptr<char[]> read_buf_;
  std::thread thread_;  // handed to the pool's stopping list by the last release()
#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 11)
  using ThreadTag = void*;  // unique to each live thread
  static ThreadTag current_thread() { return __builtin_thread_pointer(); }
#else
  using ThreadTag = std::thread::id;
  static ThreadTag current_thread() { return std::this_thread::get_id(); }
#endif
  ThreadTag loop_thread_{};
};

}  // namespace wscore::net
