// libFuzzer: arbitrary bytes into a session, both roles, small message limit,
// in fuzzer-chosen chunks. It must never crash, and once closed stays closed.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "proto/session.hpp"

using namespace wscore::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  SessionConfig c;
  c.role = (data[0] & 1) ? Role::client : Role::server;
  c.max_message_size = 1 + (data[1] * 64);
  size_t chunk = 1 + (data[0] >> 1);
  Session s(c);
  std::vector<uint8_t> buf(data + 2, data + size);
  size_t pos = 0;
  bool closed = false;
  while (pos < buf.size()) {
    size_t n = std::min(chunk, buf.size() - pos);
    size_t off = 0;
    while (off < n) {
      Event ev;
      size_t used = s.receive(buf.data() + pos + off, n - off, ev);
      if (used == 0 && ev.type == EventType::none) std::abort();  // no progress
      off += used;
      if (closed && ev.type != EventType::none) std::abort();
      if (ev.type == EventType::close) closed = true;
      if (ev.type == EventType::message && ev.size > c.max_message_size) std::abort();
    }
    pos += n;
    s.consume_output(s.output_size() / 2);
  }
  return 0;
}
