#include "proto/utf8.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#define WSCORE_UTF8_SSSE3 1
#endif

namespace wscore::proto {

namespace {

#if WSCORE_UTF8_SSSE3
// Block validation after Keiser & Lemire, "Validating UTF-8 in less than one
// instruction per byte" (2021): every error is a property of a byte pair
// (looked up from three nibbles with pshufb) or of a missing/extra
// continuation byte 2 or 3 positions after a 3- or 4-byte lead.
enum : uint8_t {
  kTooShort = 1 << 0,   // lead followed by a lead or ASCII
  kTooLong = 1 << 1,    // ASCII followed by a continuation
  kOverlong3 = 1 << 2,  // E0 80..9F
  kTooLarge = 1 << 3,   // F4 90..BF, F5..FF
  kSurrogate = 1 << 4,  // ED A0..BF
  kOverlong2 = 1 << 5,  // C0/C1 any
  kTooLarge1000 = 1 << 6,
  kOverlong4 = 1 << 6,  // F0 80..8F
  kTwoConts = 1 << 7,   // continuation after continuation (fine only 2-3 after a long lead)
};
constexpr uint8_t kCarry = kTooShort | kTooLong | kTwoConts;

__attribute__((target("ssse3"))) inline __m128i lookup(__m128i nibbles, __m128i table) {
  return _mm_shuffle_epi8(table, nibbles);
}

// Validates whole 16-byte blocks of p[0..n) (n a multiple of 16), starting at
// a character boundary, as a valid PREFIX: a character left open by the last
// block is not an error here (the caller re-checks it with what follows).
__attribute__((target("ssse3"))) bool blocks_prefix_valid_ssse3(const uint8_t* p, size_t n) {
  const __m128i t1_high = _mm_setr_epi8(
      kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTwoConts, kTwoConts,
      kTwoConts, kTwoConts, kTooShort | kOverlong2, kTooShort, kTooShort | kOverlong3 | kSurrogate,
      static_cast<char>(kTooShort | kTooLarge | kTooLarge1000 | kOverlong4));
  const __m128i t1_low = _mm_setr_epi8(
      static_cast<char>(kCarry | kOverlong3 | kOverlong2 | kOverlong4), static_cast<char>(kCarry | kOverlong2),
      static_cast<char>(kCarry), static_cast<char>(kCarry), static_cast<char>(kCarry | kTooLarge),
      static_cast<char>(kCarry | kTooLarge | kTooLarge1000), static_cast<char>(kCarry | kTooLarge | kTooLarge1000),
      static_cast<char>(kCarry | kTooLarge | kTooLarge1000), static_cast<char>(kCarry | kTooLarge | kTooLarge1000),
      static_cast<char>(kCarry | kTooLarge | kTooLarge1000), static_cast<char>(kCarry | kTooLarge | kTooLarge1000),
      static_cast<char>(kCarry | kTooLarge | kTooLarge1000), static_cast<char>(kCarry | kTooLarge | kTooLarge1000),
      static_cast<char>(kCarry | kTooLarge | kTooLarge1000 | kSurrogate),
      static_cast<char>(kCarry | kTooLarge | kTooLarge1000), static_cast<char>(kCarry | kTooLarge | kTooLarge1000));
  const __m128i t2_high = _mm_setr_epi8(
      kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort,
      static_cast<char>(kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge1000 | kOverlong4),
      static_cast<char>(kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge),
      static_cast<char>(kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge),
      static_cast<char>(kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge), kTooShort, kTooShort,
      kTooShort, kTooShort);
  const __m128i nib = _mm_set1_epi8(0x0F);
  // Each lane's threshold for "a continuation is still owed at the end":
  // the last byte >= C0, the second to last >= E0, the third to last >= F0.
  const __m128i incomplete_max = _mm_setr_epi8(
      -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, static_cast<char>(0xF0 - 1),
      static_cast<char>(0xE0 - 1), static_cast<char>(0xC0 - 1));
  __m128i prev = _mm_setzero_si128();
  __m128i err = _mm_setzero_si128();
  __m128i prev_incomplete = _mm_setzero_si128();
  for (size_t i = 0; i < n; i += 16) {
    __m128i in = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    if (_mm_movemask_epi8(in) == 0) {
      // ASCII: only a character left open by the previous block can be wrong.
      err = _mm_or_si128(err, prev_incomplete);
      prev = in;
      prev_incomplete = _mm_setzero_si128();
      continue;
    }
    __m128i prev1 = _mm_alignr_epi8(in, prev, 15);
    __m128i sc = _mm_and_si128(
        _mm_and_si128(lookup(_mm_and_si128(_mm_srli_epi16(prev1, 4), nib), t1_high),
                      lookup(_mm_and_si128(prev1, nib), t1_low)),
        lookup(_mm_and_si128(_mm_srli_epi16(in, 4), nib), t2_high));
    __m128i prev2 = _mm_alignr_epi8(in, prev, 14);
    __m128i prev3 = _mm_alignr_epi8(in, prev, 13);
    __m128i third = _mm_subs_epu8(prev2, _mm_set1_epi8(static_cast<char>(0xE0 - 0x80)));
    __m128i fourth = _mm_subs_epu8(prev3, _mm_set1_epi8(static_cast<char>(0xF0 - 0x80)));
    __m128i must23_80 = _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8(static_cast<char>(0x80)));
    err = _mm_or_si128(err, _mm_xor_si128(must23_80, sc));
    prev_incomplete = _mm_subs_epu8(in, incomplete_max);
    prev = in;
  }
  return _mm_movemask_epi8(_mm_cmpeq_epi8(err, _mm_setzero_si128())) == 0xFFFF;
}
#endif

}  // namespace

}  // namespace wscore::proto

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
#if WSCORE_UTF8_SSSE3
  // Long runs: validate whole blocks with SIMD up to the start of the last
  // character, then let the scalar loop finish (and, on an error, find the
  // exact failing byte: errors are the rare path).
  static const bool ssse3 = __builtin_cpu_supports("ssse3");
  if (ssse3 && n - i >= 64) {
    size_t end = i + ((n - i) & ~size_t(15));
    if (blocks_prefix_valid_ssse3(p + i, end - i)) {
      // Resume at the start of the last character of the blocks, which may
      // continue past them (chunks and fragments end anywhere): in a valid
      // prefix it is at most 3 continuation bytes back, behind its lead. The
      // scalar loop checks that character again, whole. (Demanding that the
      // blocks end on a boundary instead sent ~half of all chunks of mixed
      // text down the scalar path: 0.45 instead of 6.3 GB/s in 4 KiB chunks.)
      size_t b = end;
      for (int k = 0; k < 3 && (p[b - 1] & 0xC0) == 0x80; k++) b--;
      if (p[b - 1] >= 0xC0) b--;
      i = b;
    }
    // On an error the scalar loop runs from the start of the blocks to find
    // the exact byte: errors end the connection, so that cost is paid once.
  }
#endif
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
