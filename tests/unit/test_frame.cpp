// src/proto/frame.cpp: header encoding byte for byte (RFC 6455 5.7), the
// incremental header decoder in every split, its protocol errors, masking.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <cstring>
#include <random>
#include <vector>

#include "proto/frame.hpp"

using namespace wscore::proto;

static void test_encode_rfc_examples(void**) {
  uint8_t h[kMaxHeaderSize];
  // A single-frame unmasked text message "Hello": 0x81 0x05.
  assert_int_equal(encode_header(h, Opcode::text, true, 5, nullptr), 2);
  assert_int_equal(h[0], 0x81);
  assert_int_equal(h[1], 0x05);
  // Masked "Hello": 0x81 0x85 0x37 0xfa 0x21 0x3d, then 0x7f 0x9f 0x4d 0x51 0x58.
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  assert_int_equal(encode_header(h, Opcode::text, true, 5, key), 6);
  const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d};
  assert_memory_equal(h, want, 6);
  uint8_t payload[] = {'H', 'e', 'l', 'l', 'o'};
  mask_bytes(payload, 5, key);
  const uint8_t masked[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
  assert_memory_equal(payload, masked, 5);
  // Fragmented: 0x01 0x03 "Hel", 0x80 0x02 "lo".
  encode_header(h, Opcode::text, false, 3, nullptr);
  assert_int_equal(h[0], 0x01);
  assert_int_equal(h[1], 0x03);
  encode_header(h, Opcode::continuation, true, 2, nullptr);
  assert_int_equal(h[0], 0x80);
  assert_int_equal(h[1], 0x02);
  // Unmasked ping "Hello": 0x89 0x05; pong 0x8a 0x05.
  encode_header(h, Opcode::ping, true, 5, nullptr);
  assert_int_equal(h[0], 0x89);
  encode_header(h, Opcode::pong, true, 5, nullptr);
  assert_int_equal(h[0], 0x8a);
  // 256 bytes binary: 0x82 0x7E 0x01 0x00.
  assert_int_equal(encode_header(h, Opcode::binary, true, 256, nullptr), 4);
  const uint8_t w256[] = {0x82, 0x7E, 0x01, 0x00};
  assert_memory_equal(h, w256, 4);
  // 64 KiB binary: 0x82 0x7F 0x00 0x00 0x00 0x00 0x00 0x01 0x00 0x00.
  assert_int_equal(encode_header(h, Opcode::binary, true, 65536, nullptr), 10);
  const uint8_t w64k[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0};
  assert_memory_equal(h, w64k, 10);
  // Boundaries of the length classes.
  assert_int_equal(encode_header(h, Opcode::binary, true, 125, nullptr), 2);
  assert_int_equal(encode_header(h, Opcode::binary, true, 126, nullptr), 4);
  assert_int_equal(encode_header(h, Opcode::binary, true, 65535, nullptr), 4);
  assert_int_equal(encode_header(h, Opcode::binary, true, 65536, key), 14);
}

static void decode_all_splits(const uint8_t* bytes, size_t n, Role role, FrameHeader* out) {
  // Whole, then every two-way split, then one byte at a time: same header.
  for (size_t split = 0; split <= n; split++) {
    FrameDecoder d(role);
    size_t used = 0;
    FrameDecoder::Status st = d.parse(bytes, split, &used);
    size_t pos = used;
    if (st == FrameDecoder::Status::need_more) {
      assert_int_equal(used, split);
      st = d.parse(bytes + pos, n - pos, &used);
      pos += used;
    }
    assert_int_equal(st, FrameDecoder::Status::header);
    assert_int_equal(pos, n);
    if (split == 0) *out = d.header();
    assert_int_equal(d.header().length, out->length);
    assert_int_equal(d.header().opcode, out->opcode);
    assert_int_equal(d.header().fin, out->fin);
    assert_memory_equal(d.header().mask, out->mask, 4);
  }
  FrameDecoder d(role);
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    FrameDecoder::Status st = d.parse(bytes + i, 1, &used);
    assert_int_equal(used, 1);
    assert_int_equal(st, i + 1 == n ? FrameDecoder::Status::header : FrameDecoder::Status::need_more);
  }
  assert_int_equal(d.header().length, out->length);
}

static void test_decode_lengths_any_split(void**) {
  const uint8_t key[4] = {1, 2, 3, 4};
  const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, (1ull << 32) + 7, (1ull << 63) - 1};
  for (uint64_t len : lens) {
    uint8_t h[kMaxHeaderSize];
    size_t n = encode_header(h, Opcode::binary, true, len, key);
    FrameHeader fh;
    decode_all_splits(h, n, Role::server, &fh);
    assert_true(fh.length == len);
    assert_true(fh.masked);
    assert_memory_equal(fh.mask, key, 4);
    n = encode_header(h, Opcode::text, false, len, nullptr);
    decode_all_splits(h, n, Role::client, &fh);
    assert_true(fh.length == len);
    assert_false(fh.fin);
  }
}

static FrameDecoder::Status decode(const std::vector<uint8_t>& b, Role role, const char** err) {
  FrameDecoder d(role);
  size_t used = 0;
  FrameDecoder::Status st = d.parse(b.data(), b.size(), &used);
  *err = d.error();
  return st;
}

static void test_decode_errors(void**) {
  const char* err;
  // Server receiving an unmasked frame.
  assert_int_equal(decode({0x81, 0x05}, Role::server, &err), FrameDecoder::Status::error);
  assert_string_equal(err, "unmasked frame from a client");
  // Client receiving a masked frame.
  assert_int_equal(decode({0x81, 0x85, 1, 2, 3, 4}, Role::client, &err), FrameDecoder::Status::error);
  // RSV1, RSV2, RSV3 without extensions.
  for (uint8_t rsv : {0x40, 0x20, 0x10})
    assert_int_equal(decode({static_cast<uint8_t>(0x81 | rsv), 0x00}, Role::client, &err),
                     FrameDecoder::Status::error);
  // Reserved opcodes 3-7 and 0xB-0xF.
  for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    assert_int_equal(decode({static_cast<uint8_t>(0x80 | op), 0x00}, Role::client, &err),
                     FrameDecoder::Status::error);
    assert_string_equal(err, "reserved opcode");
  }
  // Fragmented control frame, and a 126-byte ping.
  assert_int_equal(decode({0x09, 0x00}, Role::client, &err), FrameDecoder::Status::error);
  assert_string_equal(err, "fragmented control frame");
  assert_int_equal(decode({0x89, 0x7E, 0x00, 0x7E}, Role::client, &err), FrameDecoder::Status::error);
  // 64-bit length with the high bit set.
  assert_int_equal(decode({0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}, Role::client, &err),
                   FrameDecoder::Status::error);
  // Exact reasons for the rest.
  assert_int_equal(decode({0x81, 0x85, 1, 2, 3, 4}, Role::client, &err), FrameDecoder::Status::error);
  assert_string_equal(err, "masked frame from a server");
  decode({0xC1, 0x00}, Role::client, &err);
  assert_string_equal(err, "RSV bit set without a negotiated extension");
  decode({0x89, 0x7E, 0x00, 0x7E}, Role::client, &err);
  assert_string_equal(err, "control frame payload longer than 125 bytes");
  decode({0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}, Role::client, &err);
  assert_string_equal(err, "64-bit payload length has its most significant bit set");
  // A 125-byte ping is the largest allowed.
  assert_int_equal(decode({0x89, 0x7D}, Role::client, &err), FrameDecoder::Status::header);
  // An RSV bit the decoder was told is negotiated is fine.
  FrameDecoder d(Role::client, 0x4);
  size_t used;
  const uint8_t rsv1[] = {0xC1, 0x00};
  assert_int_equal(d.parse(rsv1, 2, &used), FrameDecoder::Status::header);
  assert_int_equal(d.header().rsv, 4);
}

// Non-minimal length encodings (5 in 16 or 64 bits) are accepted, and the
// decoder consumes the header only, never payload bytes.
static void test_decode_non_minimal_and_consumed(void**) {
  const uint8_t l16[] = {0x81, 0x7E, 0x00, 0x05, 'H', 'e', 'l', 'l', 'o'};
  const uint8_t l64[] = {0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x05, 'H', 'e', 'l', 'l', 'o'};
  const uint8_t l7[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  struct {
    const uint8_t* p;
    size_t n, hdr;
  } cases[] = {{l16, sizeof l16, 4}, {l64, sizeof l64, 10}, {l7, sizeof l7, 2}};
  for (const auto& c : cases) {
    FrameDecoder d(Role::client);
    size_t used = 0;
    assert_int_equal(d.parse(c.p, c.n, &used), FrameDecoder::Status::header);
    assert_int_equal(used, c.hdr);
    assert_int_equal(d.header().length, 5);
    // After reset() the decoder reads the next header; fed one byte at a
    // time it stops at the same place.
    d.reset();
    size_t pos = 0;
    FrameDecoder::Status st = FrameDecoder::Status::need_more;
    while (st == FrameDecoder::Status::need_more) {
      st = d.parse(c.p + pos, 1, &used);
      pos += used;
    }
    assert_int_equal(st, FrameDecoder::Status::header);
    assert_int_equal(pos, c.hdr);
  }
}

static void test_mask_matches_bytewise(void**) {
  std::mt19937 rng(42);
  std::vector<uint8_t> src(1000), a(1000), b(1000);
  for (auto& x : src) x = static_cast<uint8_t>(rng());
  const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
  for (size_t off = 0; off < 4; off++) {
    for (size_t start = 0; start < 17; start++) {
      for (size_t len : {0u, 1u, 3u, 15u, 16u, 17u, 63u, 64u, 65u, 200u, 983u}) {
        if (start + len > src.size()) continue;
        for (size_t i = 0; i < len; i++) b[i] = src[start + i] ^ key[(off + i) & 3];
        std::memcpy(a.data(), src.data() + start, len);
        size_t next = mask_bytes(a.data(), len, key, off);
        assert_int_equal(next, (off + len) & 3);
        assert_memory_equal(a.data(), b.data(), len);
        std::vector<uint8_t> c(len + 1);
        mask_copy(c.data() + 1, src.data() + start, len, key, off);  // unaligned destination
        assert_memory_equal(c.data() + 1, b.data(), len);
      }
    }
  }
  // Masking twice is the identity.
  std::vector<uint8_t> x = src;
  mask_bytes(x.data(), x.size(), key, 1);
  mask_bytes(x.data(), x.size(), key, 1);
  assert_memory_equal(x.data(), src.data(), src.size());
}

static void test_mask_source_varies(void**) {
  MaskSource m;
  uint8_t a[4], b[4];
  int same = 0;
  for (int i = 0; i < 1000; i++) {
    m.next(a);
    m.next(b);
    if (std::memcmp(a, b, 4) == 0) same++;
  }
  assert_true(same < 3);  // 32-bit keys from a CSPRNG almost never repeat back to back
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_rfc_examples),
      cmocka_unit_test(test_decode_lengths_any_split),
      cmocka_unit_test(test_decode_errors),
      cmocka_unit_test(test_decode_non_minimal_and_consumed),
      cmocka_unit_test(test_mask_matches_bytewise),
      cmocka_unit_test(test_mask_source_varies),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
