// libFuzzer: the frame header decoder, both roles. The first byte picks the
// role and a split point; decoding whole and in two pieces must agree.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "proto/frame.hpp"

using namespace wscore::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Role role = (data[0] & 1) ? Role::client : Role::server;
  size_t split = data[0] >> 1;
  data++;
  size--;
  FrameDecoder whole(role), parts(role);
  size_t used_w = 0;
  FrameDecoder::Status sw = whole.parse(data, size, &used_w);
  size_t s1 = split < size ? split : size, used1 = 0, used2 = 0;
  FrameDecoder::Status sp = parts.parse(data, s1, &used1);
  if (sp == FrameDecoder::Status::need_more) {
    sp = parts.parse(data + s1, size - s1, &used2);
    used1 += used2;
  }
  if (sw != sp) std::abort();
  if (sw == FrameDecoder::Status::header) {
    if (used_w != used1) std::abort();
    const FrameHeader& a = whole.header();
    const FrameHeader& b = parts.header();
    if (a.length != b.length || a.opcode != b.opcode || a.fin != b.fin || std::memcmp(a.mask, b.mask, 4))
      std::abort();
    // Re-encoding gives a header the decoder reads back the same.
    uint8_t h[kMaxHeaderSize];
    size_t n = encode_header(h, a.opcode, a.fin, a.length, a.masked ? a.mask : nullptr, a.rsv);
    FrameDecoder again(role, 7);
    size_t used = 0;
    if (again.parse(h, n, &used) == FrameDecoder::Status::header && again.header().length != a.length)
      std::abort();
  }
  // Masking round-trips.
  uint8_t buf[256];
  size_t m = size < sizeof buf ? size : sizeof buf;
  std::memcpy(buf, data, m);
  const uint8_t key[4] = {1, 2, 3, 4};
  mask_bytes(buf, m, key, split & 3);
  mask_bytes(buf, m, key, split & 3);
  if (std::memcmp(buf, data, m)) std::abort();
  return 0;
}
