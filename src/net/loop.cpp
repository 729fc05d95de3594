#include "net/loop.hpp"

#include <csignal>
#include <cstdlib>
#include <future>

namespace wscore::net {

Loop& Loop::get() {
  // Never destroyed: the loop thread may still be running at exit, and
  // destroying a running loop from a static destructor would race it.
  static Loop* loop = new Loop();
  return *loop;
}

Loop::Loop() {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, &Loop::on_async);
  async_.data = this;
  // Writes to a peer that vanished must return EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, &started] {
    thread_id_ = std::this_thread::get_id();
    started.set_value();
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  ready.wait();  // thread_id_ is set before anyone asks on_loop_thread()
  thread_.detach();
}

void Loop::post(std::function<void()> fn) {
  bool wake;
  {
    std::lock_guard<std::mutex> g(mu_);
    wake = queue_.empty();
    queue_.push_back(std::move(fn));
  }
  if (wake) uv_async_send(&async_);
}

void Loop::on_async(uv_async_t* a) { static_cast<Loop*>(a->data)->drain(); }

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
