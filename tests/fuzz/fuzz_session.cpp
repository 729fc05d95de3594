// libFuzzer: arbitrary bytes into a session, both roles, a small message
// limit, our close sent at once or held (defer_close, as the pull API does),
// fed in fuzzer-chosen chunks and all at once. It must never crash or stall,
// must stay closed once closed, and both feeds must give the same events
// (and, for the server whose frames are unmasked, the same output); so must
// stream mode, its parts joined.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "proto/session.hpp"

using namespace wscore::proto;

struct Rec {
  EventType type;
  bool text, failed;
  uint16_t code;
  std::string data;
  bool operator==(const Rec& o) const {
    return type == o.type && text == o.text && failed == o.failed && code == o.code && data == o.data;
  }
};

static std::vector<Rec> feed(Session& s, std::vector<uint8_t> buf, size_t chunk, uint64_t max,
                             std::string* out) {
  std::vector<Rec> evs;
  size_t pos = 0;
  bool closed = false;
  while (pos < buf.size()) {
    size_t n = std::min(chunk, buf.size() - pos);
    size_t off = 0;
    while (off < n) {
      Event ev;
      size_t used = s.receive(buf.data() + pos + off, n - off, ev);
      if (used == 0 && ev.type == EventType::none) std::abort();  // no progress
      if (used > n - off) std::abort();
      off += used;
      if (ev.type == EventType::none) continue;
      if (closed) std::abort();
      if (ev.type == EventType::close) {
        closed = true;
        if (s.pending_close()) {
          // Held: nothing sent yet, and sends stay possible until commit_close().
          if (s.close_sent() || s.should_close_transport()) std::abort();
          if (s.state() == State::open) std::abort();
        } else if (s.state() != State::closed || !s.should_close_transport()) {
          std::abort();
        }
      }
      if (ev.type == EventType::message && ev.size > max) std::abort();
      if ((ev.type == EventType::ping || ev.type == EventType::pong) && ev.size > kMaxControlPayload)
        std::abort();
      if (ev.type == EventType::message && ev.is_text && !utf8_valid(ev.data, ev.size)) std::abort();
      std::string d = ev.type == EventType::close ? std::string(ev.close_reason)
                                                  : std::string(reinterpret_cast<const char*>(ev.data), ev.size);
      evs.push_back({ev.type, ev.is_text, ev.failed, ev.close_code, std::move(d)});
    }
    pos += n;
    // Drain part of the output now and then, as a socket would.
    size_t k = s.output_size() / 2;
    out->append(reinterpret_cast<const char*>(s.output_data()), k);
    s.consume_output(k);
  }
  if (closed && s.pending_close()) {
    s.commit_close();
    if (s.pending_close() || s.state() != State::closed || !s.should_close_transport() || !s.close_sent())
      std::abort();
  }
  out->append(reinterpret_cast<const char*>(s.output_data()), s.output_size());
  s.consume_output(s.output_size());
  return evs;
}

// The same bytes, but every payload byte that payload_window() accepts is
// written there and handed over with receive_in_place(), as the transport
// does for large payloads.
static std::vector<Rec> feed_in_place(Session& s, const std::vector<uint8_t>& in, size_t chunk, size_t min) {
  std::vector<Rec> evs;
  std::vector<uint8_t> buf(in);
  size_t pos = 0;
  auto record = [&](const Event& ev) {
    if (ev.type == EventType::none) return;
    std::string d = ev.type == EventType::close ? std::string(ev.close_reason)
                                                : std::string(reinterpret_cast<const char*>(ev.data), ev.size);
    evs.push_back({ev.type, ev.is_text, ev.failed, ev.close_code, std::move(d)});
  };
  while (pos < buf.size()) {
    size_t room = 0;
    if (uint8_t* w = s.payload_window(min, &room)) {
      if (room == 0) std::abort();
      size_t n = std::min({room, chunk, buf.size() - pos});
      std::memcpy(w, buf.data() + pos, n);
      Event ev;
      if (s.receive_in_place(n, ev) != n) std::abort();
      record(ev);
      pos += n;
      continue;
    }
    size_t n = std::min(chunk, buf.size() - pos);
    size_t off = 0;
    while (off < n) {
      Event ev;
      size_t used = s.receive(buf.data() + pos + off, n - off, ev);
      if (used == 0 && ev.type == EventType::none) std::abort();
      off += used;
      record(ev);
      if (ev.type == EventType::none) break;  // the rest of this chunk is a partial frame... or more payload
    }
    pos += off;
  }
  if (s.pending_close()) s.commit_close();  // as feed() does
  return evs;
}

// Stream mode: parts joined into messages must give the joined mode's
// events (a message cut short by a failure was never delivered there, so its
// parts are dropped here), with the first/fin flags in order.
static std::vector<Rec> feed_stream(Session& s, std::vector<uint8_t> buf, size_t chunk, uint64_t max) {
  std::vector<Rec> evs;
  std::string cur;
  bool in_msg = false;
  size_t pos = 0;
  while (pos < buf.size()) {
    size_t n = std::min(chunk, buf.size() - pos);
    size_t off = 0;
    while (off < n) {
      Event ev;
      size_t used = s.receive(buf.data() + pos + off, n - off, ev);
      if (used == 0 && ev.type == EventType::none) std::abort();
      off += used;
      if (ev.type == EventType::none) continue;
      if (ev.type == EventType::part) {
        if (ev.first != !in_msg) std::abort();
        cur.append(reinterpret_cast<const char*>(ev.data), ev.size);
        if (cur.size() > max) std::abort();
        in_msg = !ev.fin;
        if (ev.fin) {
          if (ev.is_text && !utf8_valid(reinterpret_cast<const uint8_t*>(cur.data()), cur.size())) std::abort();
          evs.push_back({EventType::message, ev.is_text, false, 0, cur});
          cur.clear();
        }
        continue;
      }
      if (ev.type == EventType::message && in_msg) std::abort();
      std::string d = ev.type == EventType::close ? std::string(ev.close_reason)
                                                  : std::string(reinterpret_cast<const char*>(ev.data), ev.size);
      evs.push_back({ev.type, ev.is_text, ev.failed, ev.close_code, std::move(d)});
    }
    pos += n;
  }
  if (s.pending_close()) s.commit_close();  // as feed() does
  return evs;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  SessionConfig c;
  c.role = (data[0] & 1) ? Role::client : Role::server;
  c.max_message_size = 1 + (data[1] * 64);
  c.defer_close = (data[0] & 0x80) != 0;
  size_t chunk = 1 + ((data[0] >> 1) & 0x3F);
  std::vector<uint8_t> in(data + 2, data + size);
  Session a(c), b(c);
  std::string out_a, out_b;
  auto ea = feed(a, in, chunk, c.max_message_size, &out_a);
  auto eb = feed(b, in, in.size() + 1, c.max_message_size, &out_b);
  if (!(ea == eb)) std::abort();
  Session d(c);
  auto ed = feed_in_place(d, in, chunk, 1 + (data[1] & 7));
  if (!(ea == ed)) std::abort();
  SessionConfig cs = c;
  cs.stream = true;
  Session e(cs);
  auto ee = feed_stream(e, in, chunk, c.max_message_size);
  if (!(ea == ee)) std::abort();
  if (a.state() != e.state()) std::abort();
  if (a.state() != d.state()) std::abort();
  if (a.state() != b.state()) std::abort();
  if (c.role == Role::server && out_a != out_b) std::abort();
  return 0;
}
