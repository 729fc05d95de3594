// RFC 6455 section 5 frame codec: an incremental decoder and an encoder.
// Sans-I/O, no allocation. Owned by the protocol core (src/proto/frame.cpp).
// CONTRACT for other layers: Role, Opcode, encode_header, mask_bytes. The rest
// (FrameDecoder, MaskSource) is the protocol core's to shape.
#pragma once

#include <cstddef>
#include <cstdint>

namespace wscore::proto {

enum class Role : uint8_t { client, server };

enum class Opcode : uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

constexpr size_t kMaxHeaderSize = 14;  // 2 + 8 (length) + 4 (mask)

// Writes a frame header for a payload of `len` bytes into out[kMaxHeaderSize];
// returns its size. mask_key == nullptr: unmasked (server); else masked with it.
size_t encode_header(uint8_t* out, Opcode op, bool fin, uint64_t len, const uint8_t* mask_key,
                     uint8_t rsv = 0);

// XORs `len` bytes of `data` in place with the 4-byte key, starting at key
// offset `key_offset` (0..3). Returns the key offset for the next byte. Fast
// (word at a time / SIMD).
size_t mask_bytes(uint8_t* data, size_t len, const uint8_t key[4], size_t key_offset = 0);
// Same, copying from src to dst (may not overlap).
size_t mask_copy(uint8_t* dst, const uint8_t* src, size_t len, const uint8_t key[4],
                 size_t key_offset = 0);

}  // namespace wscore::proto
