// libFuzzer: the incremental UTF-8 validator against a slow reference written
// from RFC 3629's table, whole and split at a fuzzer-chosen point.
#include <cstdint>
#include <cstdlib>

#include "proto/utf8.hpp"

using namespace wscore::proto;

// Index of the first invalid byte, size if valid-but-incomplete prefix handling
// is needed: returns {fail_index or npos, complete}.
static void reference(const uint8_t* p, size_t n, size_t* fail, bool* complete) {
  size_t i = 0;
  *fail = Utf8Validator::npos;
  while (i < n) {
    uint8_t b = p[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) { i++; continue; }
    else if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else { *fail = i; *complete = false; return; }
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n) { *complete = false; return; }
      uint8_t c = p[i + k];
      uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (c < l || c > h) { *fail = i + k; *complete = false; return; }
    }
    i += need + 1;
  }
  *complete = true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t want_fail;
  bool want_complete;
  reference(data, size, &want_fail, &want_complete);
  Utf8Validator v;
  size_t got = v.feed(data, size);
  if (got != want_fail || v.complete() != want_complete) std::abort();
  if (utf8_valid(data, size) != want_complete) std::abort();
  size_t split = size ? data[0] % (size + 1) : 0;
  Utf8Validator w;
  size_t r = w.feed(data, split), fail = r;
  if (r == Utf8Validator::npos) {
    r = w.feed(data + split, size - split);
    fail = r == Utf8Validator::npos ? r : split + r;
  }
  if (fail != want_fail || w.complete() != want_complete) std::abort();
  // Many chunks of one fuzzer-chosen size: block validation that stops
  // inside a character must hand over to the next chunk exactly.
  size_t chunk = size ? 1 + data[size - 1] % 131 : 1;
  Utf8Validator c;
  fail = Utf8Validator::npos;
  for (size_t at = 0; at < size && fail == Utf8Validator::npos; at += chunk) {
    size_t n = size - at < chunk ? size - at : chunk;
    r = c.feed(data + at, n);
    if (r != Utf8Validator::npos) fail = at + r;
  }
  if (fail != want_fail || c.complete() != want_complete) std::abort();
  return 0;
}
