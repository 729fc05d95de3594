// A connection's handshake head, kept for its life (ws_request_header & co.)
// in one allocation: the request target, path and query, then every header's
// name and value, NUL-terminated, behind a table of their offsets. An idle
// connection pays for the bytes it was sent and little more, not for a vector
// of string pairs (~64 bytes a header before any heap string).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "proto/handshake.hpp"

namespace wscore::api {

class HeadBlock {
 public:
  // Empties it and frees its block.
  void clear() { data_.reset(); }
  // Replaces the contents (throws std::bad_alloc).
  void assign(std::string_view target, std::string_view path, std::string_view query,
              const proto::Headers& headers);
  const char* target() const { return str(0); }
  const char* path() const { return str(1); }
  const char* query() const { return str(2); }
  int count() const { return data_ ? static_cast<int>(word(0)) : 0; }
  // nullptr when i is out of range.
  const char* name(int i) const { return i >= 0 && i < count() ? str(kFixed + 2 * static_cast<uint32_t>(i)) : nullptr; }
  const char* value(int i) const {
    return i >= 0 && i < count() ? str(kFixed + 2 * static_cast<uint32_t>(i) + 1) : nullptr;
  }

 private:
  static constexpr uint32_t kFixed = 3;  // target, path, query
  // String k ("" when the block is empty).
  const char* str(uint32_t k) const { return data_ ? data_.get() + word(1 + k) : ""; }
  // The block's i-th 4-byte word (0: the count, 1 + k: string k's offset).
  uint32_t word(uint32_t i) const {
    uint32_t w;
    __builtin_memcpy(&w, data_.get() + 4 * i, 4);
    return w;
  }
  // [count][offset of each string][the strings, NUL-terminated]: 4-byte
  // words, the count in the block so that an empty head is one pointer.
  std::unique_ptr<char[]> data_;
};

}  // namespace wscore::api
