// libFuzzer: the HTTP upgrade request and response parsers and checks.
// Besides never crashing, it asserts the properties the transport relies on:
// - a parse is a function of the bytes seen: every prefix of an input that
//   parses complete is incomplete (shorter than the head) or complete with the
//   same `consumed` and the same fields; never an error;
// - what the parser stores could be sent again without breaking a head (names
//   are tokens, values carry no CR/LF/NUL);
// - what the builders produce, the parsers read back as built.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proto/handshake.hpp"

using namespace wscore::proto;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool same(const Request& a, const Request& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query &&
         a.http_minor == b.http_minor && a.headers == b.headers;
}
bool same(const Response& a, const Response& b) {
  return a.status == b.status && a.reason == b.reason && a.headers == b.headers;
}

void check_headers(const Headers& h) {
  for (const auto& kv : h) check(valid_header_name(kv.first) && valid_header_value(kv.second));
}

// Prefix lengths worth trying: all of them for small inputs; otherwise a
// stride plus every length around the end of the head, where mistakes live.
template <class F>
void for_prefixes(size_t size, size_t consumed, F f) {
  for (size_t i = 0; i <= size; i++) {
    bool near_end = i + 8 >= consumed && i <= consumed + 8;
    if (size <= 1024 || near_end || i % 61 == 0) f(i);
  }
}

void fuzz_request(const char* d, size_t size, const HandshakeLimits& lim) {
  Request r;
  RequestParse p = parse_request(d, size, lim, &r);
  if (p.status == ParseStatus::error) {
    check(p.error_status == 400 || p.error_status == 431 || p.error_status == 505);
    check(!p.error.empty());
    return;
  }
  if (p.status != ParseStatus::complete) return;
  check(p.consumed >= 4 && p.consumed <= size && p.consumed <= lim.max_head_size);
  check(d[p.consumed - 1] == '\n' && d[p.consumed - 2] == '\r');
  check(r.headers.size() <= lim.max_headers);
  check_headers(r.headers);
  check(!r.path.empty() && r.path[0] == '/');
  for_prefixes(size, p.consumed, [&](size_t i) {
    Request rp;
    RequestParse pp = parse_request(d, i, lim, &rp);
    if (i < p.consumed) {
      check(pp.status == ParseStatus::incomplete);
    } else {
      check(pp.status == ParseStatus::complete && pp.consumed == p.consumed && same(rp, r));
    }
  });
  UpgradeCheck c = check_upgrade(r);
  if (!c.ok) {
    check(c.error_status == 400 || c.error_status == 405 || c.error_status == 426);
    check(!c.error.empty());
    std::string resp = build_error_response(c.error_status, c.error);
    Response rs;
    check(parse_response(resp.data(), resp.size(), HandshakeLimits{}, &rs).status == ParseStatus::complete);
    check(rs.status == c.error_status && !check_response(rs, c.key, {}, "").ok);
    return;
  }
  check(c.is_upgrade && c.key.size() == 24);
  // The server's answer, with the first offered subprotocol, satisfies a
  // client that offered what this request offered.
  std::string sub = c.subprotocols.empty() ? "" : c.subprotocols[0];
  std::string resp = build_response_101(c.key, sub, "", {});
  check(!resp.empty());
  Response rs;
  check(parse_response(resp.data(), resp.size(), HandshakeLimits{}, &rs).status == ParseStatus::complete);
  ResponseCheck rc = check_response(rs, c.key, c.subprotocols, "");
  check(rc.ok && rc.subprotocol == sub);
  // Rebuilt from what was parsed, the request parses to the same thing.
  ClientRequestSpec spec;
  std::string host;
  find_header(r.headers, "Host", &host);
  if (!host.empty()) {
    spec.host_header = host;
    spec.target = r.target;
    spec.key = c.key;
    spec.subprotocols = c.subprotocols;
    std::string req = build_request(spec);
    check(!req.empty());
    Request r2;
    check(parse_request(req.data(), req.size(), HandshakeLimits{}, &r2).status == ParseStatus::complete);
    check(r2.path == r.path && r2.query == r.query && check_upgrade(r2).ok);
  }
}

void fuzz_response(const char* d, size_t size, const HandshakeLimits& lim) {
  Response rs;
  ResponseParse p = parse_response(d, size, lim, &rs);
  if (p.status == ParseStatus::error) check(!p.error.empty());
  if (p.status != ParseStatus::complete) return;
  check(p.consumed >= 4 && p.consumed <= size && p.consumed <= lim.max_head_size);
  check(rs.status >= 0 && rs.status <= 999);
  check(rs.headers.size() <= lim.max_headers);
  check_headers(rs.headers);
  for_prefixes(size, p.consumed, [&](size_t i) {
    Response rp;
    ResponseParse pp = parse_response(d, i, lim, &rp);
    if (i < p.consumed) {
      check(pp.status == ParseStatus::incomplete);
    } else {
      check(pp.status == ParseStatus::complete && pp.consumed == p.consumed && same(rp, rs));
    }
  });
  ResponseCheck c = check_response(rs, "dGhlIHNhbXBsZSBub25jZQ==", {"chat", "superchat"},
                                   "permessage-deflate; client_max_window_bits");
  check(c.ok != !c.error.empty());
  if (c.ok) check(rs.status == 101 && (c.subprotocol.empty() || c.subprotocol == "chat" || c.subprotocol == "superchat"));
  ResponseCheck none = check_response(rs, "dGhlIHNhbXBsZSBub25jZQ==", {}, "");
  if (none.ok) check(none.subprotocol.empty() && c.ok);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* d = reinterpret_cast<const char*>(data);
  // Small limits so that the fuzzer reaches them; the first byte varies them.
  HandshakeLimits lim;
  lim.max_head_size = 4096;
  lim.max_headers = 32;
  if (size > 0 && data[0] == 'g') {  // lowercase "get" never upgrades anyway: tight limits
    lim.max_head_size = 96;
    lim.max_headers = 3;
  }
  fuzz_request(d, size, lim);
  fuzz_response(d, size, lim);
  std::string s(d, size);
  check(valid_header_value(s) || !build_error_response(400, "", {{"X", s}}).size());
  bool ok = false;
  std::vector<std::string> ext = split_extensions(s, &ok);
  if (ok) {
    for (const auto& e : ext) check(!e.empty());
  } else {
    check(ext.empty());
  }
  for (const auto& t : split_list(s)) check(!t.empty());
  return 0;
}
