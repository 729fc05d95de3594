#include "net/loop.hpp"

#include <csignal>
#include <cstdio>
#include <future>

namespace wscore::net {

namespace {
// Never destroyed: a loop thread may still be stopping at exit.
std::mutex& pool_mu() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::vector<Loop*>& pool() {
  static auto* p = new std::vector<Loop*>;
  return *p;
}
}  // namespace

Loop* Loop::acquire(size_t index) {
  std::lock_guard<std::mutex> g(pool_mu());
  auto& p = pool();
  if (p.size() <= index) p.resize(index + 1, nullptr);
  if (!p[index]) p[index] = new Loop(index);
  p[index]->users_++;
  return p[index];
}

void Loop::retain() {
  std::lock_guard<std::mutex> g(pool_mu());
  users_++;
}

void Loop::release() {
  {
    std::lock_guard<std::mutex> g(pool_mu());
    if (--users_ != 0) return;
    // From now on acquire() starts a fresh loop; this one finishes its queue.
    pool()[index_] = nullptr;
  }
  post([this] { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
}

Loop::Loop(size_t index) : index_(index), read_buf_(new char[kReadBufferSize]) {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_async_init(&loop_, &async_, &Loop::on_async);
  async_.data = this;
  // Writes to a peer that vanished must return EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  std::promise<void> started;
  auto ready = started.get_future();
  std::thread t([this, &started] {
    thread_id_ = std::this_thread::get_id();
    started.set_value();
    run();
  });
  ready.wait();  // thread_id_ is set before anyone asks on_loop_thread()
  t.detach();
}

void Loop::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Only the async handle kept the loop alive once every user was gone; a
  // poster still inside post() holds mu_ until its wakeup is sent.
  { std::lock_guard<std::mutex> g(mu_); }
  if (uv_loop_close(&loop_) != 0) {
    // A handle outlived its owner: keep the memory rather than free it under libuv.
    std::fprintf(stderr, "wscore: loop %zu stopped with open handles\n", index_);
    return;
  }
  delete this;
}

void Loop::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> g(mu_);
  bool wake = queue_.empty();
  queue_.push_back(std::move(fn));
  // Under the lock: the loop may finish and free itself as soon as fn ran.
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
