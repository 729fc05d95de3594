// src/proto/utf8.cpp: valid and invalid sequences, fail-fast positions, and
// validation split at every point across chunks.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <random>
#include <string>
#include <vector>

#include "proto/utf8.hpp"

using namespace wscore::proto;

struct Case {
  std::vector<uint8_t> bytes;
  size_t fail_at;  // npos: valid prefix
  bool complete;   // valid and complete
};

static const size_t NP = Utf8Validator::npos;

static std::vector<Case> cases() {
  return {
      {{'a', 'b', 'c'}, NP, true},
      {{0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5}, NP, true},  // κόσμε
      {{0xF0, 0x90, 0x80, 0x80}, NP, true},        // U+10000
      {{0xF4, 0x8F, 0xBF, 0xBF}, NP, true},        // U+10FFFF
      {{0xEF, 0xBF, 0xBF}, NP, true},              // U+FFFF (a noncharacter, but valid)
      {{0xED, 0x9F, 0xBF}, NP, true},              // U+D7FF
      {{0xEE, 0x80, 0x80}, NP, true},              // U+E000
      {{0xC2, 0x80}, NP, true},                    // U+0080
      {{0xCE}, NP, false},                         // truncated: a valid prefix
      {{0xF0, 0x90, 0x80}, NP, false},
      {{0xC0, 0xAF}, 0, false},                    // overlong '/'
      {{0xC1, 0xBF}, 0, false},
      {{0xE0, 0x80, 0xAF}, 1, false},              // overlong
      {{0xF0, 0x80, 0x80, 0xAF}, 1, false},        // overlong
      {{0xED, 0xA0, 0x80}, 1, false},              // U+D800 surrogate
      {{0xED, 0xBF, 0xBF}, 1, false},              // U+DFFF surrogate
      {{0xF4, 0x90, 0x80, 0x80}, 1, false},        // U+110000
      {{0xF5, 0x80, 0x80, 0x80}, 0, false},
      {{0xFE}, 0, false},
      {{0xFF}, 0, false},
      {{0x80}, 0, false},                          // lone continuation
      {{'a', 0xCE, 'b'}, 2, false},                // truncated then ASCII: fails at the ASCII byte
      {{0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64}, 12, false},
      {{0xE1, 0x80, 0x41}, 2, false},
      // Autobahn 6.x style vectors.
      {{0x00}, NP, true},                                   // 6.2: boundary U+0000
      {{0xDF, 0xBF}, NP, true},                             // U+07FF
      {{0xE0, 0xA0, 0x80}, NP, true},                       // U+0800
      {{0xEF, 0xBF, 0xBE}, NP, true},                       // 6.22: noncharacters are valid
      {{0xF4, 0x8F, 0xBF, 0xBE}, NP, true},
      {{0xF8, 0x88, 0x80, 0x80, 0x80}, 0, false},           // 6.8: 5-byte form
      {{0xFC, 0x84, 0x80, 0x80, 0x80, 0x80}, 0, false},     // 6-byte form
      {{0xC1, 0xBF}, 0, false},                             // 6.19: maximum overlongs
      {{0xE0, 0x9F, 0xBF}, 1, false},
      {{0xF0, 0x8F, 0xBF, 0xBF}, 1, false},
      {{0xF8, 0x80, 0x80, 0x80, 0xAF}, 0, false},           // 6.18: overlong '/', 5 bytes
      {{0xBF}, 0, false},                                   // 6.12: unexpected continuations
      {{0x80, 0xBF, 0x80}, 0, false},
      {{0xC0, 0x20}, 0, false},                             // 6.13: lonely start characters
      {{0xC2, 0x20}, 1, false},
      {{0xE0, 0x20}, 1, false},
      {{0xF0, 0x20}, 1, false},
      {{0xE0, 0x80}, 1, false},                             // 6.14: last byte missing
      {{0xE0, 0xA0}, NP, false},
      {{0xF0, 0x90, 0x80}, NP, false},
      {{0xF4, 0x8F, 0xBF}, NP, false},
      {{0xC2, 0xE0, 0xA0, 0x80}, 1, false},                 // 6.15: concatenated incompletes
      {{0xED, 0xAD, 0xBF}, 1, false},                       // 6.20: single surrogates
      {{0xED, 0xAE, 0x80}, 1, false},
      {{0xED, 0xAF, 0xBF}, 1, false},
      {{0xED, 0xB0, 0x80}, 1, false},
      {{0xED, 0xBE, 0x80}, 1, false},
      {{0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80}, 1, false},     // 6.21: paired surrogates
      {{0xF4, 0x90, 0x80, 0x80}, 1, false},                 // 6.10: beyond U+10FFFF
      {{0xF7, 0xBF, 0xBF, 0xBF}, 0, false},
      {{'a', 'b', 0xC3}, NP, false},                        // cut at the end: valid prefix
      {{0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xF4, 0x90, 0x80, 0x80, 0x65, 0x64}, 12, false},
  };
}

static void test_vectors_whole(void**) {
  for (const Case& c : cases()) {
    Utf8Validator v;
    size_t r = v.feed(c.bytes.data(), c.bytes.size());
    assert_int_equal(r, c.fail_at);
    assert_int_equal(v.complete(), c.complete);
    assert_int_equal(utf8_valid(c.bytes.data(), c.bytes.size()), c.complete);
  }
}

static void test_vectors_every_split(void**) {
  for (const Case& c : cases()) {
    for (size_t split = 0; split <= c.bytes.size(); split++) {
      Utf8Validator v;
      size_t r = v.feed(c.bytes.data(), split);
      size_t fail = NP;
      if (r != NP) {
        fail = r;
      } else {
        r = v.feed(c.bytes.data() + split, c.bytes.size() - split);
        if (r != NP) fail = split + r;
      }
      assert_int_equal(fail, c.fail_at);
      assert_int_equal(v.complete(), c.complete);
    }
    // One byte at a time.
    Utf8Validator v;
    size_t fail = NP;
    for (size_t i = 0; i < c.bytes.size() && fail == NP; i++)
      if (v.feed(&c.bytes[i], 1) != NP) fail = i;
    assert_int_equal(fail, c.fail_at);
  }
}

static void test_long_ascii_and_mixed(void**) {
  std::string s;
  for (int i = 0; i < 1000; i++) s += "plain ascii text ";
  s += "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
  for (int i = 0; i < 100; i++) s += "0123456789abcdef";
  const uint8_t* p = reinterpret_cast<const uint8_t*>(s.data());
  assert_true(utf8_valid(p, s.size()));
  std::string bad = s;
  size_t pos = 17001;  // inside the ASCII run after the multi-byte part
  bad[pos] = static_cast<char>(0xFF);
  Utf8Validator v;
  assert_int_equal(v.feed(reinterpret_cast<const uint8_t*>(bad.data()), bad.size()), pos);
  assert_true(v.failed());
  // A failed validator stays failed until reset.
  assert_int_equal(v.feed(p, 3), 0);
  v.reset();
  assert_int_equal(v.feed(p, 3), NP);
}

// Long mixed text goes through the SIMD block path; an invalid byte anywhere
// must still be reported at its exact position, and a character cut at the
// end must leave a valid, incomplete prefix.
static void test_block_path_positions(void**) {
  std::string mixed;
  const char* parts[] = {"ab", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "xyz ", "\xce\xba"};
  for (int i = 0; mixed.size() < 700; i++) mixed += parts[(i * 7) % 6];
  const uint8_t* p = reinterpret_cast<const uint8_t*>(mixed.data());
  assert_true(utf8_valid(p, mixed.size()));
  for (size_t k = 0; k < mixed.size(); k += 3) {
    std::string bad = mixed;
    bad[k] = static_cast<char>(0xFF);
    Utf8Validator v;
    assert_int_equal(v.feed(reinterpret_cast<const uint8_t*>(bad.data()), bad.size()), k);
  }
  for (size_t cut = 600; cut < 700; cut++) {
    Utf8Validator v;
    assert_int_equal(v.feed(p, cut), NP);
    bool boundary = (p[cut] & 0xC0) != 0x80;
    assert_int_equal(v.complete(), boundary);
    assert_int_equal(v.feed(p + cut, mixed.size() - cut), NP);
    assert_true(v.complete());
  }
  // A surrogate deep inside a long run.
  std::string sur = mixed.substr(0, 300) + "\xed\xa0\x80" + mixed.substr(0, 300);
  Utf8Validator v;
  assert_int_equal(v.feed(reinterpret_cast<const uint8_t*>(sur.data()), sur.size()), 301);
}

// A slow reference straight from RFC 3629's table: the first invalid index
// (npos if none) and whether the input ends on a character boundary.
static size_t reference(const std::string& s, bool* complete) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0, n = s.size();
  *complete = false;
  while (i < n) {
    uint8_t b = p[i], lo = 0x80, hi = 0xBF;
    size_t need;
    if (b < 0x80) { i++; continue; }
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xE1 && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else return i;
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n) return NP;
      uint8_t c = p[i + k];
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return i + k;
    }
    i += need + 1;
  }
  *complete = true;
  return NP;
}

// Long mostly-valid texts with a few random bytes planted: the block path and
// the scalar path must agree with the reference on the failing index, whole
// and split at a random point.
static void test_random_vs_reference(void**) {
  std::mt19937 rng(99);
  const char* parts[] = {"a", "0123456789abcdef", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
                         "\xf4\x8f\xbf\xbf", "\xe0\xa0\x80"};
  for (int iter = 0; iter < 5000; iter++) {
    std::string t;
    size_t len = 1 + rng() % 400;
    while (t.size() < len) t += parts[rng() % 8];
    for (unsigned k = rng() % 3; k > 0; k--) t[rng() % t.size()] = static_cast<char>(rng());
    if (rng() % 4 == 0) t.resize(rng() % t.size());
    bool want_complete;
    size_t want = reference(t, &want_complete);
    const auto* p = reinterpret_cast<const uint8_t*>(t.data());
    Utf8Validator v;
    assert_int_equal(v.feed(p, t.size()), want);
    assert_int_equal(v.complete(), want_complete);
    size_t split = rng() % (t.size() + 1);
    Utf8Validator w;
    size_t r = w.feed(p, split), fail = r;
    if (r == NP) {
      r = w.feed(p + split, t.size() - split);
      fail = r == NP ? NP : split + r;
    }
    assert_int_equal(fail, want);
    assert_int_equal(w.complete(), want_complete);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors_whole),
      cmocka_unit_test(test_vectors_every_split),
      cmocka_unit_test(test_long_ascii_and_mixed),
      cmocka_unit_test(test_block_path_positions),
      cmocka_unit_test(test_random_vs_reference),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
