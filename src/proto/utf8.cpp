#include "proto/utf8.hpp"

#include <cstring>

namespace wscore::proto {

namespace {

// For a lead byte: the number of continuation bytes (0 for ASCII, 0xFF for a
// byte that can never start a character) and the allowed range of the FIRST
// continuation byte, which is where overlongs, surrogates and code points
// above U+10FFFF are excluded (RFC 3629 section 4).
struct Lead {
  uint8_t need, lo, hi;
};

inline Lead lead_info(uint8_t b) {
  if (b < 0x80) return {0, 0, 0};
  if (b < 0xC2) return {0xFF, 0, 0};  // continuation byte, or overlong C0/C1
  if (b < 0xE0) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b < 0xF0) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b < 0xF4) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {0xFF, 0, 0};
}

inline bool cont(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

size_t Utf8Validator::feed(const uint8_t* p, size_t n) {
  if (failed_) return 0;
  size_t i = 0;
  // Finish a character begun in an earlier chunk.
  while (need_ && i < n) {
    uint8_t b = p[i];
    if (b < lo_ || b > hi_) {
      failed_ = true;
      return i;
    }
    lo_ = 0x80;
    hi_ = 0xBF;
    need_--;
    i++;
  }
  while (i < n) {
    // ASCII runs, 16 bytes at a time.
    while (i + 16 <= n) {
      uint64_t a, b;
      std::memcpy(&a, p + i, 8);
      std::memcpy(&b, p + i + 8, 8);
      if ((a | b) & 0x8080808080808080ULL) break;
      i += 16;
    }
    if (i >= n) break;
    uint8_t b = p[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    Lead l = lead_info(b);
    if (l.need == 0xFF) {
      failed_ = true;
      return i;
    }
    if (i + l.need < n) {
      // The whole character is here: check it in one go.
      uint8_t c1 = p[i + 1];
      if (c1 < l.lo || c1 > l.hi) {
        failed_ = true;
        return i + 1;
      }
      if (l.need >= 2 && !cont(p[i + 2])) {
        failed_ = true;
        return i + 2;
      }
      if (l.need == 3 && !cont(p[i + 3])) {
        failed_ = true;
        return i + 3;
      }
      i += 1 + l.need;
      continue;
    }
    // The character continues past this chunk: check what is here, remember the rest.
    need_ = l.need;
    lo_ = l.lo;
    hi_ = l.hi;
    i++;
    while (i < n) {
      uint8_t c = p[i];
      if (c < lo_ || c > hi_) {
        failed_ = true;
        return i;
      }
      lo_ = 0x80;
      hi_ = 0xBF;
      need_--;
      i++;
    }
  }
  return npos;
}

bool utf8_valid(const uint8_t* data, size_t len) {
  Utf8Validator v;
  return v.feed(data, len) == Utf8Validator::npos && v.complete();
}

}  // namespace wscore::proto
