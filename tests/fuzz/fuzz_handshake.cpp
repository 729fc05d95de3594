// libFuzzer: the HTTP upgrade request and response parsers. Never crash; a
// complete parse is stable under more bytes, and every prefix of it is
// incomplete or the same result.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proto/handshake.hpp"

using namespace wscore::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* d = reinterpret_cast<const char*>(data);
  HandshakeLimits lim;
  lim.max_head_size = 4096;
  lim.max_headers = 32;
  Request r;
  RequestParse p = parse_request(d, size, lim, &r);
  if (p.status == ParseStatus::complete) {
    if (p.consumed > size) std::abort();
    UpgradeCheck c = check_upgrade(r);
    if (c.ok) {
      std::string resp = build_response_101(c.key, "", "", {});
      Response rs;
      if (parse_response(resp.data(), resp.size(), lim, &rs).status != ParseStatus::complete) std::abort();
      if (!check_response(rs, c.key, {}, "").ok) std::abort();
    }
    Request r2;
    RequestParse p2 = parse_request(d, p.consumed - 1, lim, &r2);
    if (p2.status == ParseStatus::complete) std::abort();
  }
  Response rs;
  ResponseParse rp = parse_response(d, size, lim, &rs);
  if (rp.status == ParseStatus::complete) {
    if (rs.status < 0 || rs.status > 999) std::abort();
    check_response(rs, "dGhlIHNhbXBsZSBub25jZQ==", {"chat"}, "");
  }
  split_list(std::string(d, size));
  return 0;
}
