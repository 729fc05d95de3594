// libFuzzer: the frame header decoder, both roles. The first byte picks the
// role and a split point; decoding whole, in two pieces and one byte at a time
// must agree. The rest of the input also checks masking against a bytewise
// reference at a fuzzer-chosen key offset and alignment.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "proto/frame.hpp"

using namespace wscore::proto;

static bool same(const FrameHeader& a, const FrameHeader& b) {
  return a.length == b.length && a.opcode == b.opcode && a.fin == b.fin && a.rsv == b.rsv &&
         a.masked == b.masked && std::memcmp(a.mask, b.mask, 4) == 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Role role = (data[0] & 1) ? Role::client : Role::server;
  size_t split = data[0] >> 1;
  data++;
  size--;
  FrameDecoder whole(role), parts(role), bytes(role);
  size_t used_w = 0;
  FrameDecoder::Status sw = whole.parse(data, size, &used_w);
  size_t s1 = split < size ? split : size, used1 = 0, used2 = 0;
  FrameDecoder::Status sp = parts.parse(data, s1, &used1);
  if (sp == FrameDecoder::Status::need_more) {
    sp = parts.parse(data + s1, size - s1, &used2);
    used1 += used2;
  }
  FrameDecoder::Status sb = FrameDecoder::Status::need_more;
  size_t used_b = 0;
  while (sb == FrameDecoder::Status::need_more && used_b < size) {
    size_t u = 0;
    sb = bytes.parse(data + used_b, 1, &u);
    if (u != 1) std::abort();  // one header byte consumed per call until done
    used_b += u;
  }
  if (sw != sp || sw != sb) std::abort();
  if (sw != FrameDecoder::Status::need_more && (used_w != used1 || used_w != used_b)) std::abort();
  if (sw == FrameDecoder::Status::error &&
      (std::strcmp(whole.error(), parts.error()) || std::strcmp(whole.error(), bytes.error())))
    std::abort();
  if (sw == FrameDecoder::Status::header) {
    const FrameHeader& a = whole.header();
    if (!same(a, parts.header()) || !same(a, bytes.header())) std::abort();
    if (used_w != header_size(data[0], data[1]) || a.length > (UINT64_MAX >> 1)) std::abort();
    if (a.masked != (role == Role::server)) std::abort();
    // Re-encoding gives a header the decoder reads back the same.
    uint8_t h[kMaxHeaderSize];
    size_t n = encode_header(h, a.opcode, a.fin, a.length, a.masked ? a.mask : nullptr, a.rsv);
    FrameDecoder again(role);
    size_t used = 0;
    if (again.parse(h, n, &used) != FrameDecoder::Status::header || used != n || !same(again.header(), a))
      std::abort();
  }
  // Masking: any length, alignment and key offset, in place and copying.
  size_t align = split % 16, off = (split >> 4) & 3;
  const uint8_t key[4] = {static_cast<uint8_t>(split), 0xA5, 0x3C, static_cast<uint8_t>(size)};
  std::vector<uint8_t> ref(data, data + size), inplace(size + 16), copy(size + 16);
  for (size_t i = 0; i < size; i++) ref[i] ^= key[(off + i) & 3];
  std::memcpy(inplace.data() + align, data, size);
  if (mask_bytes(inplace.data() + align, size, key, off) != ((off + size) & 3)) std::abort();
  if (size && std::memcmp(inplace.data() + align, ref.data(), size)) std::abort();
  mask_copy(copy.data() + (16 - align) % 16, data, size, key, off);
  if (size && std::memcmp(copy.data() + (16 - align) % 16, ref.data(), size)) std::abort();
  return 0;
}
