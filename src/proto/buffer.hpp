// A growable byte buffer on malloc/realloc, for the session's output and
// message assembly. Unlike std::vector<uint8_t> it never zero-fills what it
// is about to overwrite, grows large buffers with realloc (which moves pages
// rather than bytes for big blocks), and can hand its block to a caller that
// frees it with free() (a ws_message takes a joined message without a copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace wscore::proto {

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(p_); }

  // Never nullptr (an empty buffer points at a static byte), so that an empty
  // message still has a payload address.
  uint8_t* data() { return p_ ? p_ : empty_byte(); }
  const uint8_t* data() const { return p_ ? p_ : empty_byte(); }
  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return size_ == 0; }

  // Room for at least n bytes in all; throws std::bad_alloc when there is none.
  void reserve(size_t n) {
    if (n <= cap_) return;
    void* q = std::realloc(p_, n);
    if (!q) throw std::bad_alloc();
    p_ = static_cast<uint8_t*>(q);
    cap_ = n;
  }
  // Room for at least n bytes, growing by half at least: many small
  // requests (a message in thousands of fragments) cost amortised O(1) each,
  // not a reallocation each.
  void ensure(size_t n) {
    if (n > cap_) reserve(n > cap_ + cap_ / 2 ? n : cap_ + cap_ / 2);
  }
  // n more bytes at the end, uninitialised: the caller fills them.
  uint8_t* extend(size_t n) {
    if (cap_ - size_ < n) reserve(size_ + (n > size_ ? n : size_));  // at least doubles
    uint8_t* at = p_ + size_;
    size_ += n;
    return at;
  }
  void append(const uint8_t* d, size_t n) {
    if (n) std::memcpy(extend(n), d, n);
  }
  void clear() { size_ = 0; }
  // Drops the first n bytes.
  void erase_front(size_t n) {
    if (n >= size_) {
      size_ = 0;
      return;
    }
    std::memmove(p_, p_ + n, size_ - n);
    size_ -= n;
  }
  // Gives the memory back when more than `keep` bytes are held and none used.
  void release_if_above(size_t keep) {
    if (size_ == 0 && cap_ > keep) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
    }
  }
  // The block (size() bytes, plus one spare byte set to 0 for text), owned
  // by the caller from now on (free() it); the buffer is left empty.
  uint8_t* take_with_nul() {
    reserve(size_ + 1);
    p_[size_] = 0;
    uint8_t* q = p_;
    p_ = nullptr;
    size_ = cap_ = 0;
    return q;
  }

 private:
  static uint8_t* empty_byte() {
    static uint8_t byte = 0;
    return &byte;
  }
  uint8_t* p_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace wscore::proto
