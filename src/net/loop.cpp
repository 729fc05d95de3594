#include "net/loop.hpp"

#include <openssl/crypto.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>

namespace wscore::net {

namespace {
// Never destroyed: a loop thread may still be stopping at exit.
struct Pool {
  std::mutex mu;
  std::vector<Loop*> loops;
  // Threads of loops that lost their last user and are finishing: joined
  // before OpenSSL's exit handler runs (see quiesce_at_exit).
  std::vector<std::thread> stopping;
  bool atexit_registered = false;
};
Pool& pool() {
  static auto* p = new Pool;
  return *p;
}

std::vector<std::thread> take_stopping_locked(Pool& p) {
  std::vector<std::thread> ts;
  ts.swap(p.stopping);
  return ts;
}

void join_all(std::vector<std::thread>& ts) {
  for (auto& t : ts) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // exit() called from a loop callback: it cannot wait for itself
    else
      t.join();
  }
}

// At exit, OpenSSL's exit handler frees its global state. A loop thread that
// kept working meanwhile (a client's close frame needs a random mask key)
// would race it. So every loop thread is brought to a standstill first: the
// stopping ones are joined, the running ones parked between two callbacks,
// where they stay until the process is gone. A loop stuck in a callback of
// the application's is given a second, then left alone.
void quiesce_at_exit() {
  struct Parking {
    std::mutex mu;
    std::condition_variable cv;
    size_t parked = 0;
  };
  static auto* park = new Parking;  // parked threads use it until the end
  std::vector<std::thread> ts;
  size_t posted = 0;
  {
    std::lock_guard<std::mutex> g(pool().mu);
    ts = take_stopping_locked(pool());
    for (Loop* l : pool().loops) {
      if (!l || l->on_loop_thread()) continue;  // exit() from a callback: it is this thread
      l->post([] {
        // Parked for good: free this thread's OpenSSL state (its random
        // generators) now, as OpenSSL would when the thread exits, which it
        // never does. Nothing on this thread uses OpenSSL after this.
        OPENSSL_thread_stop();
        std::unique_lock<std::mutex> lk(park->mu);
        park->parked++;
        park->cv.notify_all();
        for (;;) park->cv.wait(lk);
      });
      posted++;
    }
  }
  join_all(ts);
  std::unique_lock<std::mutex> lk(park->mu);
  park->cv.wait_for(lk, std::chrono::seconds(1), [&] { return park->parked == posted; });
}
}  // namespace

Loop* Loop::acquire(size_t index) {
  Pool& p = pool();
  std::vector<std::thread> finished;
  Loop* loop;
  {
    std::lock_guard<std::mutex> g(p.mu);
    if (!p.atexit_registered) {
      // OpenSSL registers its exit handler on first init; ours, registered
      // after it, runs before it. The options must not be 0: OpenSSL 3
      // returns early for options already done, and 0 always counts as
      // done, before any handler is registered (LSan then saw loop threads'
      // random generators freed under them, or lost).
      OPENSSL_init_crypto(OPENSSL_INIT_ADD_ALL_DIGESTS, nullptr);
      std::atexit(quiesce_at_exit);
      p.atexit_registered = true;
    }
    // Bound the list in programs that start and stop loops many times; these
    // threads have no user left and finish within one loop iteration.
    if (p.stopping.size() >= 8) finished = take_stopping_locked(p);
    if (p.loops.size() <= index) p.loops.resize(index + 1, nullptr);
    if (!p.loops[index]) p.loops[index] = new Loop(index);
    loop = p.loops[index];
    loop->users_++;
  }
  join_all(finished);
  return loop;
}

void Loop::retain() {
  std::lock_guard<std::mutex> g(pool().mu);
  users_++;
}

void Loop::release() {
  {
    std::lock_guard<std::mutex> g(pool().mu);
    if (--users_ != 0) return;
    // From now on acquire() starts a fresh loop; this one finishes its queue.
    pool().loops[index_] = nullptr;
    pool().stopping.push_back(std::move(thread_));
  }
  post([this] {
    stopping_ = true;  // run() ends once libuv's last handle is closed
    uv_close(reinterpret_cast<uv_handle_t*>(&driver_), nullptr);
  });
}

Loop::Loop(size_t index) : index_(index), read_buf_(new char[kReadBufferCapacity]) {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_timer_init(&loop_, &driver_);
  driver_.data = this;
  // The thread waits in this set (run()); libuv's own descriptor is in it too.
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // libuv's
  if (epfd_ < 0 || epoll_ctl(epfd_, EPOLL_CTL_ADD, uv_backend_fd(&loop_), &ev) != 0) {
    // Without it no socket of this loop could be watched: nothing to run on.
    std::fprintf(stderr, "wscore: epoll: %s\n", std::strerror(errno));
    std::abort();
  }
  // Other threads' posts wake the thread through this eventfd in the same set.
  wake_.loop = this;
  wake_.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  wake_.cb = &Loop::on_wake;
  if (wake_.fd < 0 || io_watch(&wake_, EPOLLIN) != 0) {
    std::fprintf(stderr, "wscore: eventfd: %s\n", std::strerror(errno));
    std::abort();
  }
  // Writes to a peer that vanished must return EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, &started] {
    loop_thread_ = current_thread();
    started.set_value();
    run();
  });
  ready.wait();  // loop_thread_ is set before anyone asks on_loop_thread()
}

// The thread waits in the loop's own epoll set, where the sockets are, so a
// socket's event wakes it with one epoll_wait (nested in libuv's set, it took
// two and a nested wakeup). Posts from other threads come through an eventfd
// in the same set. libuv keeps the timer driver and name resolution; its
// backend descriptor is in the set as well, and uv_run(UV_RUN_NOWAIT) runs it
// when that is readable or libuv's next timer is due. The loop ends once
// release()'s last task has run and libuv's last handle is closed.
void Loop::run() {
  uv_run(&loop_, UV_RUN_NOWAIT);
  epoll_event ev[128];  // more stay for the next pass (level-triggered)
  for (;;) {
    bool uv_alive = uv_loop_alive(&loop_) != 0;
    if (stopping_ && !uv_alive) break;
    // -1: no libuv timer (or nothing of libuv's at all); 0: libuv work waits.
    int timeout = uv_alive ? uv_backend_timeout(&loop_) : -1;
    bool posted = false;
    if (timeout != 0) {
      // About to sleep: from here a post writes the eventfd (see post()).
      std::lock_guard<std::mutex> g(mu_);
      posted = !queue_.empty();
      if (!posted) {
        sleeping_ = true;
        wake_sent_ = false;
      }
    }
    int n = timeout == 0 || posted ? 0 : epoll_wait(epfd_, ev, 128, timeout);
    if (sleeping_) {
      std::lock_guard<std::mutex> g(mu_);
      sleeping_ = false;
    }
    bool uv_due = uv_alive && n == 0 && !posted;  // timed out, or libuv work was waiting
    for (int i = 0; i < n; i++) {
      auto* w = static_cast<IoWatch*>(ev[i].data.ptr);
      if (!w)
        uv_due = true;
      else if (w->events)  // else taken out by an earlier callback of this pass
        w->cb(w, ev[i].events);
    }
    // Posted tasks run after the pass, never inside it: one may free the
    // owner of an event fetched in this pass (a closed connection's last
    // reference goes back from a task; see io_watch).
    drain();
    if (woken_) {
      // Woken by another thread's post: let that thread run on (it may be
      // sharing this core, and about to post more) before sleeping again.
      // Without this, a blocking-API application on the loop's core was
      // preempted by the wakeup of each of its sends, two thread switches a
      // message ((b) with the blocking API: 0.23x raw, against 0.57x).
      woken_ = false;
      sched_yield();
    }
    if (!uv_due && timeout > 0) {  // busy with sockets: libuv's timer must not starve
      uv_update_time(&loop_);
      uv_due = uv_backend_timeout(&loop_) == 0;
    }
    if (uv_due || (n < 0 && uv_alive)) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  // A poster still inside post(): under mu_, or writing its wakeup after it.
  { std::lock_guard<std::mutex> g(mu_); }
  while (waking_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  if (uv_loop_close(&loop_) != 0) {
    // A handle outlived its owner: keep the memory rather than free it under libuv.
    std::fprintf(stderr, "wscore: loop %zu stopped with open handles\n", index_);
    return;
  }
  close(wake_.fd);
  close(epfd_);
  delete this;
}

void Loop::post(std::function<void()> fn) {
  int fd = -1;
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(fn));
    // Only a sleeping loop is woken, once: an awake one drains the queue at
    // the end of its pass anyway.
    if (sleeping_ && !wake_sent_) {
      wake_sent_ = true;
      fd = wake_.fd;
      waking_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (fd < 0) return;
  // After the lock: woken while this thread held it, the loop thread (on the
  // same core, say) would preempt it and then wait for the lock, two thread
  // switches a post (a benchmark with the blocking API spent a third of its
  // time switching). run() keeps the eventfd and the loop until waking_ is 0,
  // which is this poster's last touch of them.
  uint64_t one = 1;
  ssize_t r = write(fd, &one, sizeof one);  // cannot fail short: the counter is far from its limit
  (void)r;
  waking_.fetch_sub(1, std::memory_order_release);
}

void Loop::start_timer(Timer* t, uint64_t ms) {
  // libuv's clock moves only in uv_run, which run() calls only for libuv's own
  // work: a loop busy with sockets alone may not have run it for a long time.
  uv_update_time(&loop_);
  timers_.arm(t, uv_now(&loop_) + (ms ? ms : 1));
  if (!firing_) reschedule();
}

void Loop::stop_timer(Timer* t) {
  if (!t->armed()) return;
  timers_.disarm(t);
  if (!firing_) reschedule();
}

// Points the driver at the earliest deadline (a restart only when it moved).
void Loop::reschedule() {
  Timer* top = timers_.top();
  if (!top) {
    if (driver_due_ != UINT64_MAX) uv_timer_stop(&driver_);
    driver_due_ = UINT64_MAX;
    return;
  }
  if (top->due == driver_due_) return;
  uint64_t now = uv_now(&loop_);
  uv_timer_start(&driver_, &Loop::on_timers, top->due > now ? top->due - now : 0, 0);
  driver_due_ = top->due;
}

void Loop::on_timers(uv_timer_t* d) {
  Loop* l = static_cast<Loop*>(d->data);
  l->driver_due_ = UINT64_MAX;
  uint64_t now = uv_now(&l->loop_);
  // Timers armed by these callbacks are due 1 ms after `now` at the
  // earliest, so this pass ends.
  l->firing_ = true;
  while (Timer* t = l->timers_.pop_due(now)) run_timer(t);
  l->firing_ = false;
  l->reschedule();
}

int Loop::io_watch(IoWatch* w, uint32_t events) {
  if (events == w->events) return 0;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = w;
  int op = !events ? EPOLL_CTL_DEL : w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(epfd_, op, w->fd, &ev) != 0 && op != EPOLL_CTL_DEL) return -errno;
  w->events = events;
  return 0;
}

void Loop::on_wake(IoWatch* w, uint32_t) {
  Loop* l = static_cast<Wake*>(w)->loop;
  uint64_t v;
  ssize_t r = read(l->wake_.fd, &v, sizeof v);  // resets it; a post after this writes again
  (void)r;
  l->woken_ = true;  // run() drains the queue once this pass is over
}

void Loop::drain() {
  for (;;) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (queue_.empty()) return;
      running_.swap(queue_);
    }
    for (auto& fn : running_) fn();
    running_.clear();
  }
}

}  // namespace wscore::net
