// Incremental UTF-8 validation (RFC 3629): across fragment and chunk
// boundaries, failing at the first byte that makes the stream invalid.
#pragma once

#include <cstddef>
#include <cstdint>

namespace wscore::proto {

class Utf8Validator {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);

  // Validates data[0..len) as the continuation of everything fed since the
  // last reset(). Returns npos when the stream is still a valid prefix, or the
  // index in `data` of the first byte that makes it invalid (then the
  // validator stays failed until reset()).
  size_t feed(const uint8_t* data, size_t len);
  // True when the stream so far is valid and does not end inside a character.
  bool complete() const { return need_ == 0 && !failed_; }
  bool failed() const { return failed_; }
  void reset() {
    need_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
    failed_ = false;
  }

 private:
  uint8_t need_ = 0;  // continuation bytes still expected
  uint8_t lo_ = 0x80; // allowed range of the next continuation byte
  uint8_t hi_ = 0xBF;
  bool failed_ = false;
};

// One-shot check of a whole string.
bool utf8_valid(const uint8_t* data, size_t len);

}  // namespace wscore::proto
