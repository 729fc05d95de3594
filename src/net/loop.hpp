// The library's event loop: one libuv loop on its own thread, started on first
// use. Other threads hand it work through a lock-protected queue and one
// uv_async_t; the loop drains the whole queue per wakeup, so many sends cost
// one wakeup. Knows nothing of the C ABI.
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace wscore::net {

class Loop {
 public:
  // The process-wide loop, started lazily.
  static Loop& get();

  uv_loop_t* uv() { return &loop_; }
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_id_; }

  // Runs fn on the loop thread (soon; in order of posting). From the loop
  // thread itself it is queued too (never re-entrant).
  void post(std::function<void()> fn);

 private:
  Loop();
  static void on_async(uv_async_t* a);
  void drain();

  uv_loop_t loop_;
  uv_async_t async_;
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  std::vector<std::function<void()>> running_;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace wscore::net
