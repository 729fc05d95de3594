// src/proto/buffer.hpp: the session's byte buffer. Growth is amortised (a
// message in thousands of fragments must not reallocate per fragment), bytes
// survive growth, and a taken block is the caller's, NUL-terminated.
#include <cstdlib>
#include <cstring>
#include <string>

#include "proto/buffer.hpp"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

using wscore::proto::Buffer;

static void test_append_and_growth_keep_bytes(void**) {
  Buffer b;
  assert_true(b.empty());
  assert_non_null(b.data());  // never nullptr, even empty
  std::string want;
  for (int i = 0; i < 5000; i++) {
    std::string piece = std::to_string(i) + ",";
    b.append(reinterpret_cast<const uint8_t*>(piece.data()), piece.size());
    want += piece;
  }
  assert_int_equal(b.size(), want.size());
  assert_memory_equal(b.data(), want.data(), want.size());
  b.erase_front(10);
  assert_int_equal(b.size(), want.size() - 10);
  assert_memory_equal(b.data(), want.data() + 10, want.size() - 10);
  b.clear();
  assert_true(b.empty());
  assert_true(b.capacity() >= want.size());  // kept for the next message
  b.release_if_above(1u << 20);
  assert_true(b.capacity() > 0);  // small: kept
  b.release_if_above(16);
  assert_int_equal(b.capacity(), 0);
}

// ensure() for a size growing 64 bytes at a time reallocates O(log n) times.
static void test_ensure_is_amortised(void**) {
  Buffer b;
  int grows = 0;
  size_t cap = b.capacity();
  for (size_t n = 64; n <= (4u << 20); n += 64) {
    b.ensure(n);
    assert_true(b.capacity() >= n);
    if (b.capacity() != cap) {
      grows++;
      cap = b.capacity();
    }
  }
  assert_true(grows < 40);  // 65,536 requests
  // An exact first request is taken as it is (a single big frame's length).
  Buffer exact;
  exact.ensure(1000000);
  assert_int_equal(exact.capacity(), 1000000);
}

static void test_take_with_nul(void**) {
  Buffer b;
  b.append(reinterpret_cast<const uint8_t*>("hello"), 5);
  uint8_t* p = b.take_with_nul();
  assert_memory_equal(p, "hello", 6);  // with its NUL
  std::free(p);
  assert_true(b.empty());
  assert_int_equal(b.capacity(), 0);
  b.append(reinterpret_cast<const uint8_t*>("x"), 1);  // usable again
  assert_int_equal(b.size(), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_and_growth_keep_bytes),
      cmocka_unit_test(test_ensure_is_amortised),
      cmocka_unit_test(test_take_with_nul),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
