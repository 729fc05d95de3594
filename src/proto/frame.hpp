// RFC 6455 section 5 frame codec: an incremental header decoder and an encoder.
// Sans-I/O, no allocation.
// CONTRACT for other layers: Role, Opcode, kMaxHeaderSize, encode_header,
// mask_bytes, mask_copy. FrameDecoder and MaskSource serve the Session.
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

inline bool is_control(Opcode op) { return (static_cast<uint8_t>(op) & 0x8) != 0; }

constexpr size_t kMaxHeaderSize = 14;  // 2 + 8 (length) + 4 (mask)
constexpr size_t kMaxControlPayload = 125;

// Writes a frame header for a payload of `len` bytes into out[kMaxHeaderSize];
// returns its size. mask_key == nullptr: unmasked (server); else masked with it.
size_t encode_header(uint8_t* out, Opcode op, bool fin, uint64_t len, const uint8_t* mask_key,
                     uint8_t rsv = 0);

// XORs `len` bytes of `data` in place with the 4-byte key, starting at key
// offset `key_offset` (0..3). Returns the key offset for the next byte.
// 16 bytes at a time (vector registers), any alignment.
size_t mask_bytes(uint8_t* data, size_t len, const uint8_t key[4], size_t key_offset = 0);
// Same, copying from src to dst (may not overlap).
size_t mask_copy(uint8_t* dst, const uint8_t* src, size_t len, const uint8_t key[4],
                 size_t key_offset = 0);

struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;  // the three RSV bits, as 0b0rrr (RSV1 = 4)
  Opcode opcode = Opcode::continuation;
  bool masked = false;
  uint8_t mask[4] = {0, 0, 0, 0};
  uint64_t length = 0;
};

// Incremental header decoder. Feed it bytes until it reports `header`; the
// header may arrive split anywhere (it keeps up to 14 bytes). Checks what a
// header alone can show: role-dependent masking, RSV bits not negotiated,
// reserved opcodes, control frames fragmented or longer than 125 bytes, the
// 64-bit length's high bit. Every such error is a protocol error (close 1002).
class FrameDecoder {
 public:
  enum class Status : uint8_t { need_more, header, error };

  explicit FrameDecoder(Role role, uint8_t allowed_rsv = 0) : role_(role), allowed_rsv_(allowed_rsv) {}

  // Consumes header bytes from data[0..len) (never payload bytes) and sets
  // *consumed. On `header`, header() is valid until reset().
  Status parse(const uint8_t* data, size_t len, size_t* consumed);
  const FrameHeader& header() const { return h_; }
  const char* error() const { return error_; }
  void reset() { have_ = 0; }
  // No header bytes held (between frames).
  bool idle() const { return have_ == 0; }

 private:
  Status finish(const uint8_t* hdr, size_t size);
  Role role_;
  uint8_t allowed_rsv_;
  uint8_t buf_[kMaxHeaderSize];
  size_t have_ = 0;
  FrameHeader h_;
  const char* error_ = "";
};

// Size of the header that begins with these two bytes.
inline size_t header_size(uint8_t b0, uint8_t b1) {
  (void)b0;
  size_t n = 2;
  uint8_t len7 = b1 & 0x7F;
  if (len7 == 126) n += 2;
  else if (len7 == 127) n += 8;
  if (b1 & 0x80) n += 4;
  return n;
}

// Client mask keys from a CSPRNG (OpenSSL RAND_bytes), fetched in blocks so
// that a key costs a few instructions.
class MaskSource {
 public:
  void next(uint8_t key[4]);

 private:
  uint8_t pool_[512];
  size_t pos_ = sizeof(pool_);
};

}  // namespace wscore::proto
