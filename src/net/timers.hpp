// Per-loop timers: one min-heap of deadlines driven by a single uv_timer_t,
// instead of a libuv timer handle (152 bytes on x86-64) in every connection.
// A Timer is 16 bytes, lives inside its owner and costs nothing while unarmed.
// The heap itself knows no libuv and no time source (tested on its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace wscore::net {

struct Timer;
using TimerFn = void (*)(Timer*);

struct Timer {
  uint64_t due = 0;                  // milliseconds, on the owner's clock
  uint32_t pos = 0;                  // 1 + index in the heap; 0: not armed
  uint32_t kind = 0;                 // its callback, as timer_kind() numbered it
  bool armed() const { return pos != 0; }
};

// A timer names its callback by a number rather than a pointer, and its
// owner finds itself from the Timer (a base class of the owner, or a member
// at a known place): 16 bytes a timer rather than 32. timer_kind(fn) gives
// fn's number, the same on every call; at most kMaxTimerKinds callbacks.
// Any thread.
constexpr uint32_t kMaxTimerKinds = 32;
uint32_t timer_kind(TimerFn fn);
// Runs the callback that t->kind names.
void run_timer(Timer* t);

class TimerHeap {
 public:
  // Arms t for `due` (moves it when armed already).
  void arm(Timer* t, uint64_t due);
  // Unarms t; nothing if it is not armed.
  void disarm(Timer* t);
  // The earliest armed timer, nullptr when none is.
  Timer* top() const { return heap_.empty() ? nullptr : heap_[0]; }
  // Removes and returns the earliest timer due at `now` or before, unarmed
  // (its callback may arm it again); nullptr when none is due.
  Timer* pop_due(uint64_t now);
  size_t size() const { return heap_.size(); }

 private:
  void place(size_t i, Timer* t) {
    heap_[i] = t;
    t->pos = static_cast<uint32_t>(i + 1);
  }
  void sift_up(size_t i);
  void sift_down(size_t i);
  void remove_at(size_t i);

  std::vector<Timer*> heap_;
};

}  // namespace wscore::net
