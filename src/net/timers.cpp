#include "net/timers.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace wscore::net {

namespace {
std::atomic<TimerFn> g_kinds[kMaxTimerKinds];
std::atomic<uint32_t> g_kind_count{0};
std::mutex g_kinds_mu;
}  // namespace

uint32_t timer_kind(TimerFn fn) {
  uint32_t n = g_kind_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; i++)
    if (g_kinds[i].load(std::memory_order_relaxed) == fn) return i;
  std::lock_guard<std::mutex> g(g_kinds_mu);
  n = g_kind_count.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < n; i++)
    if (g_kinds[i].load(std::memory_order_relaxed) == fn) return i;
  if (n == kMaxTimerKinds) std::abort();  // a programming error: the table is sized for the library's callbacks
  g_kinds[n].store(fn, std::memory_order_relaxed);
  g_kind_count.store(n + 1, std::memory_order_release);
  return n;
}

void run_timer(Timer* t) { g_kinds[t->kind].load(std::memory_order_relaxed)(t); }

void TimerHeap::sift_up(size_t i) {
  Timer* t = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent]->due <= t->due) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void TimerHeap::sift_down(size_t i) {
  Timer* t = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->due < heap_[child]->due) child++;
    if (t->due <= heap_[child]->due) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

void TimerHeap::remove_at(size_t i) {
  Timer* gone = heap_[i];
  Timer* last = heap_.back();
  heap_.pop_back();
  gone->pos = 0;
  if (last == gone) return;
  place(i, last);
  if (i > 0 && heap_[(i - 1) / 2]->due > last->due)
    sift_up(i);
  else
    sift_down(i);
}

void TimerHeap::arm(Timer* t, uint64_t due) {
  if (t->armed()) {
    size_t i = t->pos - 1;
    uint64_t was = t->due;
    t->due = due;
    if (due < was)
      sift_up(i);
    else if (due > was)
      sift_down(i);
    return;
  }
  t->due = due;
  heap_.push_back(t);
  sift_up(heap_.size() - 1);
}

void TimerHeap::disarm(Timer* t) {
  if (t->armed()) remove_at(t->pos - 1);
}

Timer* TimerHeap::pop_due(uint64_t now) {
  if (heap_.empty() || heap_[0]->due > now) return nullptr;
  Timer* t = heap_[0];
  remove_at(0);
  return t;
}

}  // namespace wscore::net
