// src/net/timers.cpp: the per-loop timer heap. Timers come out in deadline
// order, only when due, once each; re-arming moves a timer, disarming removes
// it from anywhere in the heap. Checked against a plain model under random
// operations, and on the cases the loop relies on.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "net/timers.hpp"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

using wscore::net::Timer;
using wscore::net::TimerHeap;

static void test_pop_in_deadline_order_only_when_due(void**) {
  TimerHeap h;
  Timer t[5];
  const uint64_t due[5] = {50, 10, 40, 20, 30};
  for (int i = 0; i < 5; i++) h.arm(&t[i], due[i]);
  assert_int_equal(h.size(), 5);
  assert_ptr_equal(h.top(), &t[1]);
  assert_null(h.pop_due(9));  // nothing due yet
  assert_ptr_equal(h.pop_due(25), &t[1]);
  assert_false(t[1].armed());
  assert_ptr_equal(h.pop_due(25), &t[3]);
  assert_null(h.pop_due(25));
  assert_ptr_equal(h.pop_due(1000), &t[4]);
  assert_ptr_equal(h.pop_due(1000), &t[2]);
  assert_ptr_equal(h.pop_due(1000), &t[0]);
  assert_null(h.pop_due(1000));
  assert_null(h.top());
  assert_int_equal(h.size(), 0);
}

static void test_rearm_moves_and_disarm_removes(void**) {
  TimerHeap h;
  Timer a, b, c;
  h.arm(&a, 10);
  h.arm(&b, 20);
  h.arm(&c, 30);
  h.arm(&a, 40);  // later: no longer first
  assert_int_equal(h.size(), 3);
  assert_ptr_equal(h.top(), &b);
  h.arm(&c, 5);  // earlier: first now
  assert_ptr_equal(h.top(), &c);
  h.disarm(&c);
  assert_false(c.armed());
  h.disarm(&c);  // not armed: nothing
  assert_int_equal(h.size(), 2);
  assert_ptr_equal(h.pop_due(100), &b);
  assert_ptr_equal(h.pop_due(100), &a);
  assert_null(h.pop_due(100));
  h.arm(&a, 7);  // a popped timer can be armed again
  assert_true(a.armed());
  assert_ptr_equal(h.pop_due(7), &a);
}

// Random arms, re-arms, disarms and pops against a model: the same timers
// come out, in deadline order, and each one's armed() tells the truth.
static void test_random_operations_match_a_model(void**) {
  std::mt19937 rng(12345);
  const int kTimers = 200;
  std::vector<Timer> t(kTimers);
  std::vector<int64_t> model(kTimers, -1);  // deadline, -1: not armed
  uint64_t now = 0;
  TimerHeap h;
  for (int step = 0; step < 100000; step++) {
    int i = static_cast<int>(rng() % kTimers);
    unsigned op = rng() % 8;
    if (op < 4) {
      uint64_t due = now + rng() % 1000;
      h.arm(&t[i], due);
      model[i] = static_cast<int64_t>(due);
    } else if (op < 6) {
      h.disarm(&t[i]);
      model[i] = -1;
    } else {
      now += rng() % 50;
      for (;;) {
        // The model's earliest due timer, if any is due.
        int64_t best = -1;
        for (int k = 0; k < kTimers; k++)
          if (model[k] >= 0 && static_cast<uint64_t>(model[k]) <= now && (best < 0 || model[k] < best))
            best = model[k];
        Timer* p = h.pop_due(now);
        if (best < 0) {
          assert_null(p);
          break;
        }
        assert_non_null(p);
        int k = static_cast<int>(p - t.data());
        assert_int_equal(model[k], best);  // one of the earliest (ties in any order)
        assert_false(p->armed());
        model[k] = -1;
      }
    }
    size_t armed = 0;
    for (int k = 0; k < kTimers; k++) {
      assert_int_equal(t[k].armed(), model[k] >= 0);
      armed += model[k] >= 0;
    }
    assert_int_equal(h.size(), armed);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pop_in_deadline_order_only_when_due),
      cmocka_unit_test(test_rearm_moves_and_disarm_removes),
      cmocka_unit_test(test_random_operations_match_a_model),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
