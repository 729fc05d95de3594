// src/proto/session.cpp: message assembly, control frames, the close
// handshake and every protocol error, byte for byte, in every input split.
// C++ headers before cmocka's: its fail() macro breaks the standard library's.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/session.hpp"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

using namespace wscore::proto;
using Bytes = std::vector<uint8_t>;

static const uint8_t kKey[4] = {0x37, 0xfa, 0x21, 0x3d};

// A frame as a client sends it (masked with kKey) or a server (unmasked).
static Bytes frame(uint8_t b0, const std::string& payload, bool masked = true, int len_override = -1) {
  Bytes out(kMaxHeaderSize);
  size_t n = encode_header(out.data(), static_cast<Opcode>(b0 & 0x0F), (b0 & 0x80) != 0, payload.size(),
                           masked ? kKey : nullptr, static_cast<uint8_t>((b0 >> 4) & 7));
  if (len_override >= 0) out[1] = static_cast<uint8_t>((out[1] & 0x80) | len_override);
  out.resize(n);
  Bytes p(payload.begin(), payload.end());
  if (masked) mask_bytes(p.data(), p.size(), kKey);
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

static Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

struct Rec {
  EventType type;
  bool text, failed;
  std::string data;
  uint16_t code;
};

static Rec rec_of(const Event& ev) {
  return {ev.type, ev.is_text, ev.failed,
          ev.type == EventType::close ? std::string(ev.close_reason)
                                      : std::string(reinterpret_cast<const char*>(ev.data), ev.size),
          ev.close_code};
}

// Feeds `in` to the session in chunks of `chunk` bytes (0: all at once, -1:
// random chunks from `seed`), each chunk in a buffer of its own, and hands
// every event to on_event(buffer, event).
template <typename F>
static void feed_chunks(Session& s, const Bytes& in, long chunk, unsigned seed, F on_event) {
  std::mt19937 rng(seed);
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = in.size() - pos;
    if (chunk > 0) n = std::min<size_t>(n, static_cast<size_t>(chunk));
    if (chunk < 0) n = std::min<size_t>(n, 1 + rng() % 9);
    Bytes buf(in.begin() + static_cast<long>(pos), in.begin() + static_cast<long>(pos + n));
    size_t off = 0;
    while (off < buf.size()) {
      Event ev;
      off += s.receive(buf.data() + off, buf.size() - off, ev);
      on_event(buf, ev);
    }
    pos += n;
  }
}

// Feeds `in` to a fresh session in chunks and records the events.
static std::vector<Rec> run(Session& s, const Bytes& in, long chunk) {
  std::vector<Rec> evs;
  feed_chunks(s, in, chunk, 7, [&](const Bytes&, const Event& ev) {
    if (ev.type != EventType::none) evs.push_back(rec_of(ev));
  });
  return evs;
}

// The same events, one by one.
static void expect_same(const std::vector<Rec>& got, const std::vector<Rec>& want) {
  assert_int_equal(got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++) {
    assert_int_equal(got[i].type, want[i].type);
    assert_int_equal(got[i].text, want[i].text);
    assert_true(got[i].data == want[i].data);
    assert_int_equal(got[i].code, want[i].code);
  }
}

static std::vector<Rec> run_server(Bytes in, long chunk, uint64_t max = 16u << 20) {
  SessionConfig c;
  c.role = Role::server;
  c.max_message_size = max;
  Session s(c);
  return run(s, in, chunk);
}

// Same events whatever the split.
static std::vector<Rec> run_all_splits(const Bytes& in, uint64_t max = 16u << 20) {
  auto ref = run_server(in, 0, max);
  for (long chunk : {1L, 2L, 3L, 7L, -1L}) {
    auto got = run_server(in, chunk, max);
    expect_same(got, ref);
  }
  return ref;
}

static void test_rfc_examples(void**) {
  // Masked "Hello" (RFC 6455 5.7) into a server session, zero copy when whole.
  Bytes in = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  auto ev = run_all_splits(in);
  assert_int_equal(ev.size(), 1);
  assert_int_equal(ev[0].type, EventType::message);
  assert_true(ev[0].text);
  assert_string_equal(ev[0].data.c_str(), "Hello");
  // Unmasked "Hello" and fragmented "Hel"+"lo" into a client session.
  SessionConfig cc;
  cc.role = Role::client;
  Session c(cc);
  auto e2 = run(c, {0x81, 0x05, 'H', 'e', 'l', 'l', 'o', 0x01, 0x03, 'H', 'e', 'l', 0x80, 0x02, 'l', 'o'}, 0);
  assert_int_equal(e2.size(), 2);
  assert_string_equal(e2[0].data.c_str(), "Hello");
  assert_string_equal(e2[1].data.c_str(), "Hello");
}

static void test_zero_copy(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  Bytes in = frame(0x82, "zero copy please");
  Event ev;
  size_t n = s.receive(in.data(), in.size(), ev);
  assert_int_equal(n, in.size());
  assert_int_equal(ev.type, EventType::message);
  assert_ptr_equal(ev.data, in.data() + 6);  // unmasked in place, in the caller's buffer
}

// A joined message can change hands: big ones go to the caller with their
// block (NUL-terminated), small ones and zero-copy ones are not given away.
static void test_take_message(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  std::string big(100000, 'y');
  Bytes in = cat({frame(0x01, big.substr(0, 60000)), frame(0x80, big.substr(60000))});
  Event ev;
  size_t off = 0;
  while (off < in.size() && ev.type == EventType::none) off += s.receive(in.data() + off, in.size() - off, ev);
  assert_int_equal(ev.type, EventType::message);
  assert_int_equal(ev.size, big.size());
  uint8_t* owned = s.take_message(ev);
  assert_non_null(owned);
  assert_memory_equal(owned, big.data(), big.size());
  assert_int_equal(owned[big.size()], 0);
  std::free(owned);
  assert_null(s.take_message(ev));  // once only
  // The session goes on with a fresh buffer.
  Bytes again = cat({frame(0x02, "sm"), frame(0x80, "all")});
  auto evs = run(s, again, 1);
  assert_int_equal(evs.size(), 1);
  assert_string_equal(evs[0].data.c_str(), "small");
  // A small message is copied by the caller, not taken.
  Bytes small = cat({frame(0x02, "sm"), frame(0x80, "all")});
  Event ev2;
  off = 0;
  while (off < small.size() && ev2.type == EventType::none) off += s.receive(small.data() + off, small.size() - off, ev2);
  assert_int_equal(ev2.type, EventType::message);
  assert_null(s.take_message(ev2));
  // So is a zero-copy one (it lies in the caller's buffer).
  Bytes whole = frame(0x82, std::string(8000, 'z'));
  Event ev3;
  s.receive(whole.data(), whole.size(), ev3);
  assert_int_equal(ev3.type, EventType::message);
  assert_null(s.take_message(ev3));
}

// send_message_by_reference: only the header goes to the output (the caller
// writes the payload after it); servers only, same checks as send_message.
static void test_send_by_reference(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  std::string payload(70000, 'p');
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  assert_int_equal(s.send_message_by_reference(Opcode::binary, p, payload.size()), SendResult::ok);
  const Bytes hdr = {0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70};
  assert_int_equal(s.output_size(), hdr.size());
  assert_memory_equal(s.output_data(), hdr.data(), hdr.size());
  s.consume_output(s.output_size());
  const uint8_t bad[] = {0xff};
  assert_int_equal(s.send_message_by_reference(Opcode::text, bad, 1), SendResult::bad_utf8);
  assert_int_equal(s.send_message_by_reference(Opcode::text, bad, 1, Utf8Checked::yes), SendResult::ok);
  assert_int_equal(s.send_fragment(Opcode::text, reinterpret_cast<const uint8_t*>("a"), 1, false), SendResult::ok);
  assert_int_equal(s.send_message_by_reference(Opcode::binary, p, 10), SendResult::bad_state);  // mid-message
  SessionConfig cc;
  cc.role = Role::client;
  Session client(cc);
  assert_int_equal(client.send_message_by_reference(Opcode::binary, p, 10), SendResult::bad_state);
  assert_int_equal(client.output_size(), 0);
}

static void test_fragments_with_interleaved_ping(void**) {
  Bytes in = cat({frame(0x01, "fra"), frame(0x89, "ping!"), frame(0x00, "gmen"), frame(0x8A, ""),
                  frame(0x80, "ted"), frame(0x82, std::string(300, 'x'))});
  auto ev = run_all_splits(in);
  assert_int_equal(ev.size(), 4);
  assert_int_equal(ev[0].type, EventType::ping);
  assert_string_equal(ev[0].data.c_str(), "ping!");
  assert_int_equal(ev[1].type, EventType::pong);
  assert_int_equal(ev[2].type, EventType::message);
  assert_string_equal(ev[2].data.c_str(), "fragmented");
  assert_int_equal(ev[3].data.size(), 300);
  assert_false(ev[3].text);
}

static void test_auto_pong_bytes(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  run(s, frame(0x89, "Hello"), 0);
  const Bytes want = {0x8a, 0x05, 'H', 'e', 'l', 'l', 'o'};
  assert_int_equal(s.output_size(), want.size());
  assert_memory_equal(s.output_data(), want.data(), want.size());
  s.consume_output(3);
  assert_int_equal(s.output_size(), 4);
}

// Feeds `in` to a server session; expects a failure with `code` and that the
// session emitted exactly that close frame (unmasked, 2-byte payload).
static void expect_fail(const Bytes& in, uint16_t code) {
  std::string reason;  // the same whatever the split
  for (long chunk : {0L, 1L, -1L}) {
    SessionConfig c;
    c.role = Role::server;
    Session s(c);
    auto ev = run(s, in, chunk);
    assert_false(ev.empty());
    assert_int_equal(ev.back().type, EventType::close);
    assert_true(ev.back().failed);
    assert_int_equal(ev.back().code, code);
    if (chunk == 0) reason = ev.back().data;
    assert_false(reason.empty());
    assert_string_equal(ev.back().data.c_str(), reason.c_str());
    const Bytes want = {0x88, 0x02, static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code & 0xFF)};
    assert_int_equal(s.output_size(), 4);
    assert_memory_equal(s.output_data(), want.data(), 4);
    assert_int_equal(s.state(), State::closed);
    assert_true(s.should_close_transport());
    // Whatever follows the error is ignored: no event, no more output.
    Bytes more = frame(0x89, "ping after the error");
    Event e;
    assert_int_equal(s.receive(more.data(), more.size(), e), more.size());
    assert_int_equal(e.type, EventType::none);
    assert_int_equal(s.output_size(), 4);
  }
}

static void test_protocol_errors(void**) {
  expect_fail(frame(0x81, "x", false), 1002);                          // unmasked from a client
  expect_fail(frame(0xC1, "x"), 1002);                                 // RSV1
  expect_fail(frame(0x83, "x"), 1002);                                 // reserved opcode
  expect_fail(frame(0x80, "x"), 1002);                                 // continuation, no message
  expect_fail(cat({frame(0x01, "a"), frame(0x81, "b")}), 1002);        // new message mid-fragments
  expect_fail(frame(0x09, "x"), 1002);                                 // fragmented ping
  expect_fail(frame(0x89, std::string(126, 'p')), 1002);               // long ping
  expect_fail(frame(0x88, "\x03"), 1002);                              // 1-byte close payload
  expect_fail(frame(0x81, "\xce\xba\xed\xa0\x80"), 1007);              // surrogate in text
  expect_fail(cat({frame(0x01, "ok"), frame(0x80, "\xc0\xaf")}), 1007);  // overlong in a fragment
  expect_fail(frame(0x81, "\xe2\x82"), 1007);                          // text ends mid-character
  expect_fail(frame(0x88, "\x03\xe8\xff"), 1007);                      // close reason not UTF-8
  expect_fail(cat({frame(0x01, "a"), frame(0x02, "b")}), 1002);        // binary mid-text-fragments
  expect_fail(frame(0x8B, ""), 1002);                                  // reserved control opcode
  expect_fail(frame(0xA1, "x"), 1002);                                 // RSV2
  expect_fail(frame(0x91, "x"), 1002);                                 // RSV3
  // 64-bit length with its most significant bit set.
  expect_fail({0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, kKey[0], kKey[1], kKey[2], kKey[3]}, 1002);
  // A truncated character followed by ASCII, split across fragments.
  expect_fail(cat({frame(0x01, "ab\xe2\x82"), frame(0x80, "cd")}), 1007);
  // Close codes that only the sender side knows must never arrive on the wire.
  expect_fail(frame(0x88, "\x03\xed"), 1002);                          // 1005
  expect_fail(frame(0x88, "\x03\xee"), 1002);                          // 1006
  expect_fail(frame(0x88, "\x03\xf7"), 1002);                          // 1015
}

// A client must reject masked frames, and its own close frame is masked.
static void test_client_errors(void**) {
  for (const Bytes& in : {frame(0x81, "masked", true), frame(0xC2, "rsv1", false), frame(0x80, "cont", false)}) {
    SessionConfig cc;
    cc.role = Role::client;
    Session c(cc);
    auto ev = run(c, in, 0);
    assert_int_equal(ev.size(), 1);
    assert_true(ev[0].failed);
    assert_int_equal(ev[0].code, 1002);
    assert_int_equal(c.output_size(), 8);
    Bytes out(c.output_data(), c.output_data() + 8);
    assert_int_equal(out[0], 0x88);
    assert_int_equal(out[1], 0x82);  // masked, 2-byte payload
    mask_bytes(out.data() + 6, 2, out.data() + 2);
    assert_int_equal(out[6], 0x03);
    assert_int_equal(out[7], 0xEA);
  }
}

// The failure shows at the byte that makes the text invalid, not before and
// not only at the end of the frame or message.
static void test_fail_fast_exact_byte(void**) {
  struct {
    std::string payload;
    size_t bad;  // index of the first invalid byte in the payload
  } cases[] = {
      {std::string("abc\xed\xa0\x80") + std::string(100, 'z'), 4},  // surrogate: at 0xA0
      {std::string("ab\xe2\x82") + "cdef" + std::string(50, 'y'), 4},  // truncated then ASCII
      {std::string(200, 'a') + "\xc0\xaf" + std::string(50, 'b'), 200},  // overlong: at 0xC0
  };
  for (const auto& c : cases) {
    Bytes in = frame(0x01, c.payload);  // first fragment of a longer message
    const size_t hdr = in.size() - c.payload.size();
    SessionConfig sc;
    sc.role = Role::server;
    Session s(sc);
    Event ev;
    size_t upto = hdr + c.bad;  // everything before the bad byte
    assert_int_equal(s.receive(in.data(), upto, ev), upto);
    assert_int_equal(ev.type, EventType::none);
    assert_int_equal(s.output_size(), 0);
    s.receive(in.data() + upto, 1, ev);
    assert_int_equal(ev.type, EventType::close);
    assert_int_equal(ev.close_code, 1007);
    const Bytes want = {0x88, 0x02, 0x03, 0xEF};
    assert_int_equal(s.output_size(), 4);
    assert_memory_equal(s.output_data(), want.data(), 4);
  }
}

// RFC 6455 5.2 requires the minimal length encoding of a sender, but a
// receiver loses nothing by accepting the longer forms.
static void test_non_minimal_lengths(void**) {
  Bytes p = {0x7f, 0x9f, 0x4d, 0x51, 0x58};  // "Hello" masked with kKey
  Bytes l16 = cat({{0x81, 0xFE, 0x00, 0x05, kKey[0], kKey[1], kKey[2], kKey[3]}, p});
  Bytes l64 = cat({{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x05, kKey[0], kKey[1], kKey[2], kKey[3]}, p});
  for (const Bytes& in : {l16, l64}) {
    auto ev = run_all_splits(in);
    assert_int_equal(ev.size(), 1);
    assert_string_equal(ev[0].data.c_str(), "Hello");
  }
}

static void test_empty_messages(void**) {
  auto ev = run_all_splits(cat({frame(0x81, ""), frame(0x01, ""), frame(0x00, ""), frame(0x80, ""),
                                frame(0x82, ""), frame(0x89, "")}));
  assert_int_equal(ev.size(), 4);
  assert_int_equal(ev[0].type, EventType::message);
  assert_true(ev[0].text);
  assert_int_equal(ev[0].data.size(), 0);
  assert_int_equal(ev[1].type, EventType::message);
  assert_true(ev[1].text);
  assert_int_equal(ev[1].data.size(), 0);
  assert_false(ev[2].text);
  assert_int_equal(ev[3].type, EventType::ping);
}

// While the application sends a fragmented message, a ping from the peer is
// answered between two fragments (control frames may interleave).
static void test_auto_pong_between_own_fragments(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  assert_int_equal(s.send_fragment(Opcode::text, reinterpret_cast<const uint8_t*>("Hel"), 3, false), SendResult::ok);
  auto ev = run(s, frame(0x89, "p"), 1);
  assert_int_equal(ev.size(), 1);
  assert_int_equal(s.send_fragment(Opcode::text, reinterpret_cast<const uint8_t*>("lo"), 2, true), SendResult::ok);
  const Bytes want = {0x01, 0x03, 'H', 'e', 'l', 0x8A, 0x01, 'p', 0x80, 0x02, 'l', 'o'};
  assert_int_equal(s.output_size(), want.size());
  assert_memory_equal(s.output_data(), want.data(), want.size());
}

// After our close, a ping is still reported but not answered: nothing may
// follow a close frame on the wire.
static void test_no_pong_after_close_sent(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  assert_int_equal(s.send_close(1000, ""), SendResult::ok);
  auto ev = run(s, frame(0x89, "late ping"), 0);
  assert_int_equal(ev.size(), 1);
  assert_int_equal(ev[0].type, EventType::ping);
  const Bytes want = {0x88, 0x02, 0x03, 0xE8};
  assert_int_equal(s.output_size(), want.size());
  assert_memory_equal(s.output_data(), want.data(), want.size());
  assert_int_equal(s.send_pong(nullptr, 0), SendResult::bad_state);
  assert_int_equal(s.send_ping(nullptr, 0), SendResult::bad_state);
  assert_int_equal(s.send_fragment(Opcode::binary, nullptr, 0, true), SendResult::bad_state);
  assert_int_equal(s.send_close(1000, ""), SendResult::bad_state);
}

// The whole close handshake between a client and a server session.
static void test_close_handshake_roundtrip(void**) {
  SessionConfig cc, sc;
  cc.role = Role::client;
  sc.role = Role::server;
  Session client(cc), server(sc);
  assert_int_equal(client.send_close(1001, "going away"), SendResult::ok);
  assert_int_equal(client.state(), State::closing);
  assert_false(client.should_close_transport());
  Bytes wire(client.output_data(), client.output_data() + client.output_size());
  client.consume_output(wire.size());
  auto ev = run(server, wire, 1);
  assert_int_equal(ev.size(), 1);
  assert_int_equal(ev[0].code, 1001);
  assert_string_equal(ev[0].data.c_str(), "going away");
  assert_int_equal(server.state(), State::closed);
  assert_true(server.should_close_transport());
  assert_int_equal(server.peer_close_code(), 1001);
  // The server's answer, unmasked, echoing the code and reason.
  Bytes reply(server.output_data(), server.output_data() + server.output_size());
  const Bytes want = cat({{0x88, 12, 0x03, 0xE9}, Bytes{'g', 'o', 'i', 'n', 'g', ' ', 'a', 'w', 'a', 'y'}});
  assert_true(reply == want);
  ev = run(client, reply, 0);
  assert_int_equal(ev.size(), 1);
  assert_false(ev[0].failed);
  assert_int_equal(ev[0].code, 1001);
  assert_int_equal(client.state(), State::closed);
  assert_true(client.should_close_transport());
  assert_int_equal(client.output_size(), 0);  // nothing more to say
  // A close without a code both ways.
  Session c2(cc), s2(sc);
  assert_int_equal(c2.send_close(0, ""), SendResult::ok);
  Bytes w2(c2.output_data(), c2.output_data() + c2.output_size());
  assert_int_equal(w2.size(), 6);  // 0x88 0x80 + key
  assert_int_equal(w2[1], 0x80);
  ev = run(s2, w2, 0);
  assert_int_equal(ev[0].code, 1005);
  assert_int_equal(s2.output_size(), 2);
}

// A long random stream of client frames (fragments of every size with control
// frames between them, multi-byte text cut anywhere) gives the same events and
// the same output whatever way it is split.
// 150 messages of every length class, text and binary, in 1-4 fragments with
// pings between them, then a close: the input and the events it must give.
static void random_stream(Bytes& in, std::vector<Rec>& want) {
  std::mt19937 rng(2024);
  const char* pieces[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", " ", "\xce\xba"};
  for (int m = 0; m < 150; m++) {
    bool text = rng() % 2;
    size_t len = rng() % 5 == 0 ? 1000 + rng() % 70000 : rng() % 300;
    std::string msg;
    if (text) {
      while (msg.size() < len) msg += pieces[rng() % 6];
    } else {
      for (size_t i = 0; i < len; i++) msg += static_cast<char>(rng());
    }
    size_t nfrag = 1 + rng() % 4;
    size_t at = 0;
    for (size_t f = 0; f < nfrag; f++) {
      size_t n = f + 1 == nfrag ? msg.size() - at : rng() % (msg.size() - at + 1);
      uint8_t op = f == 0 ? (text ? 0x1 : 0x2) : 0x0;
      in = cat({in, frame(static_cast<uint8_t>((f + 1 == nfrag ? 0x80 : 0) | op), msg.substr(at, n))});
      at += n;
      if (rng() % 3 == 0 && f + 1 < nfrag) {
        std::string pp(rng() % 126, 'P');
        in = cat({in, frame(0x89, pp)});
        want.push_back({EventType::ping, false, false, pp, 0});
      }
    }
    want.push_back({EventType::message, text, false, msg, 0});
  }
  in = cat({in, frame(0x88, "\x03\xe8" "done")});
  want.push_back({EventType::close, false, false, "done", 1000});
}

static void test_random_stream_split_invariance(void**) {
  Bytes in;
  std::vector<Rec> want;
  random_stream(in, want);
  assert_true(in.size() > 500000);  // long enough to cross every length class
  Bytes ref_out;
  for (long chunk : {0L, 1L, 5L, 4096L, -1L}) {
    SessionConfig c;
    c.role = Role::server;
    Session s(c);
    auto got = run(s, in, chunk);
    expect_same(got, want);
    Bytes out(s.output_data(), s.output_data() + s.output_size());
    if (chunk == 0) ref_out = out;
    assert_true(out == ref_out);
  }
}

// Stream mode: the events, each part's data joined into its message, and the
// output are those of the joined mode, whatever the split; large messages
// come in several parts, each borrowed from the caller's buffer.
static std::vector<Rec> run_stream(Session& s, const Bytes& in, long chunk, size_t* parts) {
  std::vector<Rec> evs;
  std::string cur;
  bool in_msg = false;
  feed_chunks(s, in, chunk, 11, [&](const Bytes& buf, const Event& ev) {
    if (ev.type == EventType::part) {
      ++*parts;
      assert_int_equal(ev.first, !in_msg);
      if (ev.size) {
        assert_true(ev.data >= buf.data() && ev.data + ev.size <= buf.data() + buf.size());
        cur.append(reinterpret_cast<const char*>(ev.data), ev.size);
      }
      in_msg = !ev.fin;
      if (ev.fin) {
        evs.push_back({EventType::message, ev.is_text, false, cur, 0});
        cur.clear();
      }
      return;
    }
    if (ev.type == EventType::message) assert_false(in_msg);
    if (ev.type != EventType::none) evs.push_back(rec_of(ev));
  });
  return evs;
}

static void test_stream_parts(void**) {
  Bytes in;
  std::vector<Rec> want;
  random_stream(in, want);
  Bytes ref_out;
  {
    SessionConfig c;
    c.role = Role::server;
    Session s(c);
    run(s, in, 0);
    ref_out.assign(s.output_data(), s.output_data() + s.output_size());
  }
  for (long chunk : {0L, 1L, 5L, 4096L, -1L}) {
    SessionConfig c;
    c.role = Role::server;
    c.stream = true;
    Session s(c);
    size_t parts = 0;
    auto got = run_stream(s, in, chunk, &parts);
    expect_same(got, want);
    if (chunk == 4096) assert_true(parts > 150 + 50);  // the big messages came in pieces
    Bytes out(s.output_data(), s.output_data() + s.output_size());
    assert_true(out == ref_out);  // the same pongs and close
    size_t room = 1;
    assert_null(s.payload_window(1, &room));  // nothing is joined
    assert_int_equal(room, 0);
  }
}

static void test_stream_limits_and_utf8(void**) {
  SessionConfig c;
  c.role = Role::server;
  c.stream = true;
  // Invalid UTF-8 at byte 5000 of a text frame fed in 1000-byte chunks: the
  // parts before it are delivered, then the connection fails with 1007.
  std::string text(6000, 'x');
  text[5000] = '\xff';
  {
    Session s(c);
    size_t parts = 0;
    auto evs = run_stream(s, frame(0x81, text), 1000, &parts);
    assert_true(parts >= 4);
    assert_int_equal(evs.size(), 1);
    assert_int_equal(evs[0].type, EventType::close);
    assert_int_equal(evs[0].code, 1007);
  }
  // A message that ends inside a UTF-8 sequence, split across frames.
  {
    Session s(c);
    size_t parts = 0;
    auto evs = run_stream(s, cat({frame(0x01, "ab\xe2\x82"), frame(0x80, "")}), 0, &parts);
    assert_int_equal(evs.back().type, EventType::close);
    assert_int_equal(evs.back().code, 1007);
  }
  // A euro sign split between two fragments is fine; the empty final frame ends it.
  {
    Session s(c);
    size_t parts = 0;
    auto evs = run_stream(s, cat({frame(0x01, "a\xe2\x82"), frame(0x00, "\xac"), frame(0x80, "")}), 0, &parts);
    assert_int_equal(parts, 3);
    assert_int_equal(evs.size(), 1);
    assert_true(evs[0].text);
    assert_true(evs[0].data == "a\xe2\x82\xac");
  }
  // The size limit holds for the message as a whole.
  {
    SessionConfig l = c;
    l.max_message_size = 1000;
    Session s(l);
    size_t parts = 0;
    auto evs = run_stream(s, cat({frame(0x02, std::string(600, 'a')), frame(0x80, std::string(600, 'b'))}), 0, &parts);
    assert_int_equal(evs.back().code, 1009);
  }
  // A continuation without a message, and a new message inside one, still fail.
  {
    Session s(c);
    size_t parts = 0;
    auto evs = run_stream(s, cat({frame(0x02, "abc"), frame(0x82, "new")}), 0, &parts);
    assert_int_equal(evs.back().code, 1002);
  }
}

static void test_fail_fast_utf8(void**) {
  // The invalid byte is in the first fragment; the session fails before the
  // message ends, as soon as the byte arrives (even mid-frame).
  Bytes in = frame(0x01, std::string("abc\xed\xa0\x80") + std::string(100, 'z'));
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  Event ev;
  // Header (6 bytes) + "abc\xed\xa0": the failure is visible at \xa0.
  size_t n = s.receive(in.data(), 11, ev);
  (void)n;
  assert_int_equal(ev.type, EventType::close);
  assert_int_equal(ev.close_code, 1007);
}

static void test_message_size_limit(void**) {
  // Failing on the header: the 1 MiB payload never has to arrive.
  SessionConfig c;
  c.role = Role::server;
  c.max_message_size = 1000;
  Session s(c);
  Bytes hdr(kMaxHeaderSize);
  hdr.resize(encode_header(hdr.data(), Opcode::binary, true, 1u << 20, kKey));
  Event ev;
  s.receive(hdr.data(), hdr.size(), ev);
  assert_int_equal(ev.type, EventType::close);
  assert_int_equal(ev.close_code, 1009);
  // Fragments that add up past the limit.
  Session s2(c);
  auto evs = run(s2, cat({frame(0x02, std::string(600, 'a')), frame(0x80, std::string(600, 'b'))}), 0);
  assert_int_equal(evs.back().code, 1009);
  // Exactly the limit is fine.
  Session s3(c);
  evs = run(s3, frame(0x82, std::string(1000, 'a')), 0);
  assert_int_equal(evs.back().type, EventType::message);
}

static void test_close_codes_from_peer(void**) {
  for (int code = 0; code < 5100; code++) {
    bool ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    std::string p = {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
    SessionConfig c;
    c.role = Role::server;
    Session s(c);
    auto ev = run(s, frame(0x88, p + "why"), 0);
    assert_int_equal(ev.size(), 1);
    assert_int_equal(ev[0].type, EventType::close);
    if (ok) {
      assert_false(ev[0].failed);
      assert_int_equal(ev[0].code, code);
      assert_string_equal(ev[0].data.c_str(), "why");
      // The echo carries the peer's code and reason, unmasked.
      assert_int_equal(s.output_size(), 7);
      assert_int_equal(s.output_data()[0], 0x88);
      assert_int_equal(s.output_data()[1], 5);
      assert_int_equal(s.output_data()[2], code >> 8);
      assert_int_equal(s.output_data()[3], code & 0xFF);
      assert_memory_equal(s.output_data() + 4, "why", 3);
    } else {
      assert_true(ev[0].failed);
      assert_int_equal(ev[0].code, 1002);
    }
  }
  // An empty close is reported as 1005 and answered with an empty close.
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  auto ev = run(s, frame(0x88, ""), 0);
  assert_int_equal(ev[0].code, 1005);
  const Bytes want = {0x88, 0x00};
  assert_int_equal(s.output_size(), 2);
  assert_memory_equal(s.output_data(), want.data(), 2);
  // Data after the close is ignored.
  Bytes more = frame(0x81, "late");
  Event e;
  assert_int_equal(s.receive(more.data(), more.size(), e), more.size());
  assert_int_equal(e.type, EventType::none);
}

static void test_send_side(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  const uint8_t hello[] = {'H', 'e', 'l', 'l', 'o'};
  assert_int_equal(s.send_message(Opcode::text, hello, 5), SendResult::ok);
  const Bytes want = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  assert_memory_equal(s.output_data(), want.data(), want.size());
  s.consume_output(s.output_size());
  const uint8_t bad[] = {0xC0, 0xAF};
  assert_int_equal(s.send_message(Opcode::text, bad, 2), SendResult::bad_utf8);
  // Fragments: a character split across fragments is fine; a type change is not.
  const uint8_t e1[] = {0xE2, 0x82}, e2[] = {0xAC};
  assert_int_equal(s.send_fragment(Opcode::text, e1, 2, false), SendResult::ok);
  assert_int_equal(s.send_message(Opcode::binary, hello, 5), SendResult::bad_state);
  assert_int_equal(s.send_fragment(Opcode::binary, e2, 1, true), SendResult::bad_state);
  assert_int_equal(s.send_ping(hello, 5), SendResult::ok);  // control frames between fragments
  assert_int_equal(s.send_fragment(Opcode::text, e2, 1, true), SendResult::ok);
  const Bytes frags = {0x01, 0x02, 0xE2, 0x82, 0x89, 0x05, 'H', 'e', 'l', 'l', 'o', 0x80, 0x01, 0xAC};
  assert_int_equal(s.output_size(), frags.size());
  assert_memory_equal(s.output_data(), frags.data(), frags.size());
  s.consume_output(s.output_size());
  // Incomplete text at fin.
  assert_int_equal(s.send_fragment(Opcode::text, e1, 2, true), SendResult::bad_utf8);
  // Control limits and close codes.
  uint8_t big[126] = {0};
  assert_int_equal(s.send_ping(big, 126), SendResult::too_big);
  for (int code : {999, 1004, 1005, 1006, 1015, 1016, 2999, 5000})
    assert_int_equal(s.send_close(static_cast<uint16_t>(code), ""), SendResult::bad_close_code);
  assert_int_equal(s.send_close(1000, std::string(124, 'r')), SendResult::too_big);
  assert_int_equal(s.send_close(1000, "\xff"), SendResult::bad_utf8);
  assert_int_equal(s.send_close(4000, "bye"), SendResult::ok);
  const Bytes cl = {0x88, 0x05, 0x0F, 0xA0, 'b', 'y', 'e'};
  assert_memory_equal(s.output_data(), cl.data(), cl.size());
  assert_int_equal(s.state(), State::closing);
  assert_int_equal(s.send_message(Opcode::text, hello, 5), SendResult::bad_state);
  // Data from the peer is still delivered while we wait for its close.
  auto ev = run(s, cat({frame(0x81, "still here"), frame(0x88, "\x0f\xa0")}), 0);
  assert_int_equal(ev.size(), 2);
  assert_string_equal(ev[0].data.c_str(), "still here");
  assert_int_equal(ev[1].code, 4000);
  assert_int_equal(s.state(), State::closed);
}

// The API's sends (text checked by the caller): small frames take the inline
// path, 126 bytes and up the general one; both give the same wire bytes as
// encode_header, and the same refusals (fragment in progress, close sent).
static void test_send_side_checked(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  for (size_t n : {0, 1, 64, 125, 126, 127, 1000, 65535, 65536}) {
    for (Opcode op : {Opcode::text, Opcode::binary}) {
      std::string payload(n, 'x');
      assert_int_equal(s.send_message(op, reinterpret_cast<const uint8_t*>(payload.data()), n, Utf8Checked::yes),
                       SendResult::ok);
      Bytes want(kMaxHeaderSize);
      want.resize(encode_header(want.data(), op, true, n, nullptr));
      want.insert(want.end(), payload.begin(), payload.end());
      assert_int_equal(s.output_size(), want.size());
      assert_memory_equal(s.output_data(), want.data(), want.size());
      s.consume_output(s.output_size());
    }
  }
  const uint8_t hi[] = {'h', 'i'};
  assert_int_equal(s.send_message(Opcode::ping, hi, 2, Utf8Checked::yes), SendResult::bad_state);
  assert_int_equal(s.send_fragment(Opcode::binary, hi, 2, false, Utf8Checked::yes), SendResult::ok);
  assert_int_equal(s.send_message(Opcode::binary, hi, 2, Utf8Checked::yes), SendResult::bad_state);
  assert_int_equal(s.send_fragment(Opcode::binary, hi, 2, true, Utf8Checked::yes), SendResult::ok);
  s.consume_output(s.output_size());
  assert_int_equal(s.send_close(1000, ""), SendResult::ok);
  s.consume_output(s.output_size());
  assert_int_equal(s.send_message(Opcode::text, hi, 2, Utf8Checked::yes), SendResult::bad_state);
  assert_int_equal(s.output_size(), 0);
}

static void test_client_masks_and_roundtrip(void**) {
  SessionConfig cc, sc;
  cc.role = Role::client;
  sc.role = Role::server;
  Session client(cc), server(sc);
  std::string big(70000, 'q');
  client.send_message(Opcode::binary, reinterpret_cast<const uint8_t*>(big.data()), big.size());
  client.send_message(Opcode::text, reinterpret_cast<const uint8_t*>("hi"), 2);
  Bytes wire(client.output_data(), client.output_data() + client.output_size());
  assert_true(wire[1] & 0x80);  // masked
  auto ev = run(server, wire, -1);
  assert_int_equal(ev.size(), 2);
  assert_true(ev[0].data == big);
  assert_string_equal(ev[1].data.c_str(), "hi");
}

// defer_close: the close frame of a protocol error waits for commit_close(),
// and data frames can still be sent before it.
static void test_deferred_failure(void**) {
  SessionConfig c;
  c.role = Role::server;
  c.defer_close = true;
  Session s(c);
  auto ev = run(s, cat({frame(0x81, "Hello"), frame(0xC1, "bad rsv")}), 0);
  assert_int_equal(ev.size(), 2);
  assert_int_equal(ev[1].type, EventType::close);
  assert_int_equal(ev[1].code, 1002);
  assert_int_equal(s.output_size(), 0);
  assert_false(s.should_close_transport());
  assert_int_equal(s.pending_close(), 1002);
  assert_int_equal(s.send_message(Opcode::text, reinterpret_cast<const uint8_t*>("Hello"), 5), SendResult::ok);
  s.commit_close();
  const Bytes want = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o', 0x88, 0x02, 0x03, 0xEA};
  assert_int_equal(s.output_size(), want.size());
  assert_memory_equal(s.output_data(), want.data(), want.size());
  assert_true(s.should_close_transport());
  assert_int_equal(s.pending_close(), 0);

  // An application close while the failure waits sends the failure's code.
  Session s2(c);
  run(s2, frame(0x81, "\xff"), 0);
  assert_int_equal(s2.pending_close(), 1007);
  assert_int_equal(s2.send_close(1000, "bye"), SendResult::ok);
  const Bytes fail = {0x88, 0x02, 0x03, 0xEF};
  assert_int_equal(s2.output_size(), fail.size());
  assert_memory_equal(s2.output_data(), fail.data(), fail.size());
  assert_int_equal(s2.state(), State::closed);
  assert_true(s2.should_close_transport());
  assert_int_equal(s2.send_close(1000, ""), SendResult::bad_state);
}

// defer_close: the answer to the peer's close waits for commit_close() (or an
// application close, which then is the answer); replies go out before it.
static void test_deferred_close_reply(void**) {
  SessionConfig c;
  c.role = Role::server;
  c.defer_close = true;
  Session s(c);
  auto ev = run(s, cat({frame(0x81, "Hello"), frame(0x88, std::string("\x0f\xa1") + "bye")}), 0);
  assert_int_equal(ev.size(), 2);
  assert_int_equal(ev[1].type, EventType::close);
  assert_false(ev[1].failed);
  assert_int_equal(ev[1].code, 4001);
  assert_true(s.close_received());
  assert_false(s.close_sent());
  assert_int_equal(s.state(), State::closing);
  assert_int_equal(s.output_size(), 0);
  assert_false(s.should_close_transport());
  assert_int_equal(s.pending_close(), 4001);
  // Input after the close is ignored while the answer waits.
  assert_int_equal(run(s, frame(0x81, "late"), 0).size(), 0);
  assert_int_equal(s.send_message(Opcode::text, reinterpret_cast<const uint8_t*>("Hello"), 5), SendResult::ok);
  s.commit_close();
  const Bytes want = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o', 0x88, 0x05, 0x0f, 0xa1, 'b', 'y', 'e'};
  assert_int_equal(s.output_size(), want.size());
  assert_memory_equal(s.output_data(), want.data(), want.size());
  assert_int_equal(s.state(), State::closed);
  assert_true(s.should_close_transport());
  assert_int_equal(s.pending_close(), 0);
  assert_int_equal(s.send_message(Opcode::text, reinterpret_cast<const uint8_t*>("x"), 1), SendResult::bad_state);

  // A close without a code is answered without one.
  Session s2(c);
  run(s2, frame(0x88, ""), 0);
  assert_int_equal(s2.pending_close(), 1005);
  s2.commit_close();
  const Bytes empty = {0x88, 0x00};
  assert_int_equal(s2.output_size(), empty.size());
  assert_memory_equal(s2.output_data(), empty.data(), empty.size());

  // The application's own close while the answer waits is the answer.
  Session s3(c);
  run(s3, frame(0x88, "\x03\xe8"), 0);
  assert_int_equal(s3.send_close(1001, "gone"), SendResult::ok);
  const Bytes mine = {0x88, 0x06, 0x03, 0xe9, 'g', 'o', 'n', 'e'};
  assert_int_equal(s3.output_size(), mine.size());
  assert_memory_equal(s3.output_data(), mine.data(), mine.size());
  assert_int_equal(s3.state(), State::closed);
  assert_true(s3.should_close_transport());
  assert_int_equal(s3.pending_close(), 0);
  s3.commit_close();  // nothing left to send
  assert_int_equal(s3.output_size(), mine.size());
}

// at_rest: true exactly between bursts (nothing partly received or sent, no
// output left, no close); a reset session then acts byte for byte as a new one.
static void test_rest_and_reset(void**) {
  SessionConfig c;
  c.role = Role::server;
  Session s(c);
  assert_true(s.at_rest());
  auto feed = [&](const Bytes& in) { return run(s, in, 0); };
  auto drain = [&] { s.consume_output(s.output_size()); };
  // A frame header split across reads, then its payload split too.
  Bytes hello = frame(0x81, "Hello");
  feed(Bytes(hello.begin(), hello.begin() + 1));
  assert_false(s.at_rest());
  feed(Bytes(hello.begin() + 1, hello.begin() + 8));
  assert_false(s.at_rest());
  assert_int_equal(feed(Bytes(hello.begin() + 8, hello.end())).size(), 1);
  assert_true(s.at_rest());
  // A fragmented message: busy until its last fragment.
  feed(frame(0x01, "frag"));
  assert_false(s.at_rest());
  feed(frame(0x80, "ment"));
  assert_true(s.at_rest());
  // A ping: its pong is output until written.
  feed(frame(0x89, "p"));
  assert_false(s.at_rest());
  drain();
  assert_true(s.at_rest());
  // Own fragments: busy until the last one.
  assert_int_equal(s.send_fragment(Opcode::text, reinterpret_cast<const uint8_t*>("a"), 1, false), SendResult::ok);
  drain();
  assert_false(s.at_rest());
  assert_int_equal(s.send_fragment(Opcode::text, reinterpret_cast<const uint8_t*>("b"), 1, true), SendResult::ok);
  assert_false(s.at_rest());  // output left
  drain();
  assert_true(s.at_rest());
  // A close, either way, is never rest.
  assert_int_equal(s.send_close(1000, ""), SendResult::ok);
  drain();
  assert_false(s.at_rest());
  Session r(c);
  run(r, frame(0x88, "\x03\xe8"), 0);
  r.consume_output(r.output_size());
  assert_false(r.at_rest());

  // Stream mode: a part delivered, the message not over.
  SessionConfig sc = c;
  sc.stream = true;
  Session st(sc);
  Bytes big = frame(0x82, std::string(300, 'z'));
  run(st, Bytes(big.begin(), big.begin() + 100), 0);
  assert_false(st.at_rest());

  // Reset from every kind of state: a message half in, a close sent, a
  // failure, a deferred close; then the same script gives the same events
  // and the same output bytes as a new session, with the new configuration.
  const Bytes script = cat({frame(0x81, "one"), frame(0x01, "tw"), frame(0x89, "ping"), frame(0x80, "o"),
                            frame(0x82, std::string(200, 'b')), frame(0x88, "\x03\xe8" "done")});
  auto fresh_run = [&](const SessionConfig& cfg, std::vector<Rec>* evs, Bytes* out) {
    Session f(cfg);
    *evs = run(f, script, 3);
    out->assign(f.output_data(), f.output_data() + f.output_size());
  };
  SessionConfig deferred = c;
  deferred.defer_close = true;
  for (const SessionConfig* to : {&c, &sc, &deferred}) {
    std::vector<Rec> want;
    Bytes want_out;
    fresh_run(*to, &want, &want_out);
    const Bytes befores[] = {Bytes(big.begin(), big.begin() + 100), frame(0x88, ""), frame(0xC1, "rsv"),
                             frame(0x81, "\xff")};
    for (const Bytes& before : befores) {
      for (const SessionConfig* from : {&c, &sc, &deferred}) {
        Session u(*from);
        run(u, before, 1);
        u.send_message(Opcode::text, reinterpret_cast<const uint8_t*>("left over"), 9);
        u.reset(*to);
        assert_true(u.at_rest());
        assert_int_equal(u.output_size(), 0);
        assert_int_equal(u.state(), State::open);
        assert_false(u.close_sent());
        assert_false(u.close_received());
        assert_int_equal(u.pending_close(), 0);
        assert_string_equal(u.failure_reason(), "");
        auto got = run(u, script, 3);
        expect_same(got, want);
        assert_int_equal(u.output_size(), want_out.size());
        assert_memory_equal(u.output_data(), want_out.data(), want_out.size());
      }
    }
  }
  // A server session reset as a client's masks its frames from then on.
  Session v(c);
  SessionConfig cc;
  cc.role = Role::client;
  v.reset(cc);
  assert_int_equal(v.send_message(Opcode::text, reinterpret_cast<const uint8_t*>("hi"), 2), SendResult::ok);
  assert_true(v.output_data()[1] & 0x80);
  Session server(c);
  auto ev = run(server, Bytes(v.output_data(), v.output_data() + v.output_size()), 0);
  assert_int_equal(ev.size(), 1);
  assert_string_equal(ev[0].data.c_str(), "hi");
  assert_true(v.held_bytes() >= sizeof(MaskSource));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_examples),
      cmocka_unit_test(test_zero_copy),
      cmocka_unit_test(test_take_message),
      cmocka_unit_test(test_send_by_reference),
      cmocka_unit_test(test_fragments_with_interleaved_ping),
      cmocka_unit_test(test_auto_pong_bytes),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_fail_fast_utf8),
      cmocka_unit_test(test_message_size_limit),
      cmocka_unit_test(test_close_codes_from_peer),
      cmocka_unit_test(test_send_side),
      cmocka_unit_test(test_send_side_checked),
      cmocka_unit_test(test_client_masks_and_roundtrip),
      cmocka_unit_test(test_deferred_failure),
      cmocka_unit_test(test_deferred_close_reply),
      cmocka_unit_test(test_rest_and_reset),
      cmocka_unit_test(test_client_errors),
      cmocka_unit_test(test_fail_fast_exact_byte),
      cmocka_unit_test(test_non_minimal_lengths),
      cmocka_unit_test(test_empty_messages),
      cmocka_unit_test(test_auto_pong_between_own_fragments),
      cmocka_unit_test(test_no_pong_after_close_sent),
      cmocka_unit_test(test_close_handshake_roundtrip),
      cmocka_unit_test(test_random_stream_split_invariance),
      cmocka_unit_test(test_stream_parts),
      cmocka_unit_test(test_stream_limits_and_utf8),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
