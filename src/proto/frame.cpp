#include "proto/frame.hpp"

#include <openssl/rand.h>

#include <cstring>
#include <cstdlib>

namespace wscore::proto {

size_t encode_header(uint8_t* out, Opcode op, bool fin, uint64_t len, const uint8_t* mask_key,
                     uint8_t rsv) {
  out[0] = static_cast<uint8_t>((fin ? 0x80 : 0) | ((rsv & 7) << 4) | static_cast<uint8_t>(op));
  uint8_t mbit = mask_key ? 0x80 : 0;
  size_t n;
  if (len < 126) {
    out[1] = static_cast<uint8_t>(mbit | len);
    n = 2;
  } else if (len <= 0xFFFF) {
    out[1] = mbit | 126;
    out[2] = static_cast<uint8_t>(len >> 8);
    out[3] = static_cast<uint8_t>(len);
    n = 4;
  } else {
    out[1] = mbit | 127;
    for (int i = 0; i < 8; i++) out[2 + i] = static_cast<uint8_t>(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask_key) {
    std::memcpy(out + n, mask_key, 4);
    n += 4;
  }
  return n;
}

namespace {

typedef uint8_t v16 __attribute__((vector_size(16)));

// The key rotated so that byte 0 of the result lines up with key_offset,
// repeated over a vector V.
template <typename V>
__attribute__((always_inline)) inline void key_vector(V* out, const uint8_t key[4], size_t off) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  // Rotate the 32-bit key and broadcast it (one shuffle or broadcast
  // instruction): a per-byte loop here showed up as 75% of the time decoding
  // 64-byte frames (perf, release build).
  typedef uint32_t Words __attribute__((vector_size(sizeof(V))));
  uint32_t w;
  std::memcpy(&w, key, 4);
  if (off) w = (w >> (8 * off)) | (w << (32 - 8 * off));
  Words k = Words{} + w;
  std::memcpy(out, &k, sizeof k);
#else
  for (size_t i = 0; i < sizeof(V); i++) (*out)[i] = key[(off + i) & 3];
#endif
}

// 64 bytes a round, in vectors of V (16 bytes; 32 in the AVX2 version below).
template <bool kCopy, typename V>
__attribute__((always_inline)) inline size_t mask_impl(uint8_t* dst, const uint8_t* src, size_t len,
                                                       const uint8_t key[4], size_t off) {
  constexpr size_t W = sizeof(V), N = 64 / W;
  off &= 3;
  size_t i = 0;
  if (len >= 16) {
    v16 k;
    key_vector(&k, key, off);
    if (len >= 64) {
      V kv;
      key_vector(&kv, key, off);
      for (; i + 64 <= len; i += 64) {
        V a[N];
        for (size_t j = 0; j < N; j++) std::memcpy(&a[j], src + i + j * W, W);
        for (size_t j = 0; j < N; j++) a[j] ^= kv;
        for (size_t j = 0; j < N; j++) std::memcpy(dst + i + j * W, &a[j], W);
      }
    }
    for (; i + 16 <= len; i += 16) {
      v16 a;
      std::memcpy(&a, src + i, 16);
      a ^= k;
      std::memcpy(dst + i, &a, 16);
    }
  }
  for (; i < len; i++) dst[i] = src[i] ^ key[(off + i) & 3];
  (void)kCopy;
  return (off + len) & 3;
}

size_t mask_bytes_base(uint8_t* data, size_t len, const uint8_t key[4], size_t off) {
  return mask_impl<false, v16>(data, data, len, key, off);
}
size_t mask_copy_base(uint8_t* dst, const uint8_t* src, size_t len, const uint8_t key[4], size_t off) {
  return mask_impl<true, v16>(dst, src, len, key, off);
}

}  // namespace

// On x86-64 Linux with GCC, an AVX2 version picked once at load time (an
// ifunc) beside the baseline one: unmasking was 7 % of the server's cycles
// echoing 16 KiB messages (perf). No AVX-512 version: on some Xeons 512-bit
// instructions lower the core's clock for everything else.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
namespace {
typedef uint8_t v32 __attribute__((vector_size(32)));
__attribute__((target("avx2"))) size_t mask_bytes_avx2(uint8_t* data, size_t len, const uint8_t key[4], size_t off) {
  return mask_impl<false, v32>(data, data, len, key, off);
}
__attribute__((target("avx2"))) size_t mask_copy_avx2(uint8_t* dst, const uint8_t* src, size_t len,
                                                      const uint8_t key[4], size_t off) {
  return mask_impl<true, v32>(dst, src, len, key, off);
}
}  // namespace

using MaskBytesFn = size_t (*)(uint8_t*, size_t, const uint8_t*, size_t);
using MaskCopyFn = size_t (*)(uint8_t*, const uint8_t*, size_t, const uint8_t*, size_t);
extern "C" {
// Resolvers run while the library is relocated, before any sanitizer's
// runtime is set up: nothing but the CPU check, and nothing instrumented.
#define WS_RESOLVER __attribute__((no_sanitize("address", "thread", "undefined"), no_instrument_function))
WS_RESOLVER static MaskBytesFn wscore_pick_mask_bytes() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? mask_bytes_avx2 : mask_bytes_base;
}
WS_RESOLVER static MaskCopyFn wscore_pick_mask_copy() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? mask_copy_avx2 : mask_copy_base;
}
}

size_t mask_bytes(uint8_t* data, size_t len, const uint8_t key[4], size_t key_offset)
    __attribute__((ifunc("wscore_pick_mask_bytes")));
size_t mask_copy(uint8_t* dst, const uint8_t* src, size_t len, const uint8_t key[4], size_t key_offset)
    __attribute__((ifunc("wscore_pick_mask_copy")));
#else
size_t mask_bytes(uint8_t* data, size_t len, const uint8_t key[4], size_t key_offset) {
  return mask_bytes_base(data, len, key, key_offset);
}
size_t mask_copy(uint8_t* dst, const uint8_t* src, size_t len, const uint8_t key[4], size_t key_offset) {
  return mask_copy_base(dst, src, len, key, key_offset);
}
#endif

FrameDecoder::Status FrameDecoder::parse(const uint8_t* data, size_t len, size_t* consumed) {
  *consumed = 0;
  if (have_ == 0 && len >= 2) {
    // Fast path: the whole header lies in the caller's buffer.
    size_t need = header_size(data[0], data[1]);
    if (len >= need) {
      *consumed = need;
      return finish(data, need);
    }
  }
  size_t need = have_ >= 2 ? header_size(buf_[0], buf_[1]) : 2;
  while (*consumed < len) {
    buf_[have_++] = data[(*consumed)++];
    if (have_ == 2) need = header_size(buf_[0], buf_[1]);
    if (have_ == need) return finish(buf_, need);
  }
  return Status::need_more;
}

FrameDecoder::Status FrameDecoder::finish(const uint8_t* p, size_t size) {
  have_ = size;  // complete; reset() before the next header
  h_.fin = (p[0] & 0x80) != 0;
  h_.rsv = static_cast<uint8_t>((p[0] >> 4) & 7);
  uint8_t op = p[0] & 0x0F;
  h_.opcode = static_cast<Opcode>(op);
  h_.masked = (p[1] & 0x80) != 0;
  uint8_t len7 = p[1] & 0x7F;
  size_t at = 2;
  if (len7 == 126) {
    h_.length = (uint64_t(p[2]) << 8) | p[3];
    at = 4;
  } else if (len7 == 127) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[2 + i];
    h_.length = v;
    at = 10;
    if (v >> 63) {
      error_ = "64-bit payload length has its most significant bit set";
      return Status::error;
    }
  } else {
    h_.length = len7;
  }
  if (h_.masked) std::memcpy(h_.mask, p + at, 4);

  if (h_.rsv & ~allowed_rsv_) {
    error_ = "RSV bit set without a negotiated extension";
    return Status::error;
  }
  switch (op) {
    case 0x0: case 0x1: case 0x2: case 0x8: case 0x9: case 0xA:
      break;
    default:
      error_ = "reserved opcode";
      return Status::error;
  }
  if (is_control(h_.opcode)) {
    if (!h_.fin) {
      error_ = "fragmented control frame";
      return Status::error;
    }
    if (h_.length > kMaxControlPayload) {
      error_ = "control frame payload longer than 125 bytes";
      return Status::error;
    }
  }
  if (role_ == Role::server && !h_.masked) {
    error_ = "unmasked frame from a client";
    return Status::error;
  }
  if (role_ == Role::client && h_.masked) {
    error_ = "masked frame from a server";
    return Status::error;
  }
  return Status::header;
}

void MaskSource::next(uint8_t key[4]) {
  if (pos_ + 4 > sizeof(pool_)) {
    if (RAND_bytes(pool_, sizeof(pool_)) != 1) {
      // A client must never send predictable masks (RFC 6455 10.3); without a
      // CSPRNG there is nothing safe to do.
      std::abort();
    }
    pos_ = 0;
  }
  std::memcpy(key, pool_ + pos_, 4);
  pos_ += 4;
}

}  // namespace wscore::proto
