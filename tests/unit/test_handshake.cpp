// src/proto/handshake.cpp: the upgrade request and response, built and parsed
// byte for byte; every rejection with its HTTP status.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <cstring>
#include <string>

#include "proto/handshake.hpp"

using namespace wscore::proto;

static const char* kGood =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static void test_rfc_accept(void**) {
  assert_string_equal(compute_accept("dGhlIHNhbXBsZSBub25jZQ==").c_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  std::string k1 = generate_key(), k2 = generate_key();
  assert_int_equal(k1.size(), 24);
  assert_true(k1 != k2);
}

static void test_parse_good_request(void**) {
  std::string in = std::string(kGood) + "\x81\x85";  // a pipelined first frame
  Request r;
  RequestParse p = parse_request(in.data(), in.size(), HandshakeLimits{}, &r);
  assert_int_equal(p.status, ParseStatus::complete);
  assert_int_equal(p.consumed, std::strlen(kGood));
  assert_string_equal(r.method.c_str(), "GET");
  assert_string_equal(r.target.c_str(), "/chat?room=1");
  assert_string_equal(r.path.c_str(), "/chat");
  assert_string_equal(r.query.c_str(), "room=1");
  assert_int_equal(r.headers.size(), 7);
  UpgradeCheck c = check_upgrade(r);
  assert_true(c.ok);
  assert_string_equal(c.key.c_str(), "dGhlIHNhbXBsZSBub25jZQ==");
  assert_int_equal(c.subprotocols.size(), 2);
  assert_string_equal(c.subprotocols[1].c_str(), "superchat");
  assert_string_equal(c.origin.c_str(), "http://example.com");
  // Every prefix is incomplete, never an error.
  for (size_t i = 0; i < std::strlen(kGood); i++) {
    Request rr;
    assert_int_equal(parse_request(kGood, i, HandshakeLimits{}, &rr).status, ParseStatus::incomplete);
  }
}

static UpgradeCheck check(const std::string& head, int* parse_status = nullptr) {
  Request r;
  RequestParse p = parse_request(head.data(), head.size(), HandshakeLimits{}, &r);
  if (parse_status) *parse_status = p.status == ParseStatus::error ? p.error_status : 0;
  UpgradeCheck c;
  if (p.status == ParseStatus::complete) c = check_upgrade(r);
  return c;
}

static std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  size_t at = s.find(from);
  assert_true(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

static void test_case_insensitive_token_lists(void**) {
  assert_true(check(with("Upgrade: websocket", "upgrade: WebSocket")).ok);
  assert_true(check(with("Connection: Upgrade", "Connection: keep-alive, upgrade")).ok);
  assert_true(check(with("Connection: Upgrade", "CONNECTION:   keep-alive ,Upgrade  ")).ok);
  assert_false(check(with("Connection: Upgrade", "Connection: keep-alive")).ok);
  assert_false(check(with("Connection: Upgrade", "Connection: upgraded")).ok);
}

static void test_rejections(void**) {
  int ps = 0;
  UpgradeCheck c = check(with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"));
  assert_false(c.ok);
  assert_int_equal(c.error_status, 426);
  c = check(with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: c2hvcnQ="));
  assert_int_equal(c.error_status, 400);
  c = check(with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: not base64 at all!!!!"));
  assert_int_equal(c.error_status, 400);
  c = check(with("Host: server.example.com\r\n", ""));
  assert_int_equal(c.error_status, 400);
  c = check(with("GET", "POST"));
  assert_int_equal(c.error_status, 405);
  c = check(with("Upgrade: websocket\r\n", ""));
  assert_false(c.is_upgrade);
  assert_int_equal(c.error_status, 426);
  c = check(with("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
  assert_int_equal(c.error_status, 400);  // two keys
  // Syntax errors (400), version (505), limits (431).
  check(with("Host: server", " Host: server"), &ps);
  assert_int_equal(ps, 400);  // obs-fold
  check(with("Host:", "Host :"), &ps);
  assert_int_equal(ps, 400);  // whitespace before the colon
  check(with("HTTP/1.1", "HTTP/2.0"), &ps);
  assert_int_equal(ps, 505);
  check(with("GET /chat", "GET  /chat"), &ps);
  assert_int_equal(ps, 400);
  check(with("\r\nUpgrade", "\nUpgrade"), &ps);
  assert_int_equal(ps, 400);  // bare LF
  std::string big = with("Origin: http://example.com", "Origin: " + std::string(20000, 'a'));
  check(big, &ps);
  assert_int_equal(ps, 431);
  std::string many = kGood;
  std::string extra;
  for (int i = 0; i < 150; i++) extra += "X-H" + std::to_string(i) + ": v\r\n";
  many.insert(many.size() - 2, extra);
  check(many, &ps);
  assert_int_equal(ps, 431);
  // Too large even before the blank line arrives.
  Request r;
  std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(17000, 'a');
  RequestParse p = parse_request(endless.data(), endless.size(), HandshakeLimits{}, &r);
  assert_int_equal(p.status, ParseStatus::error);
  assert_int_equal(p.error_status, 431);
}

static void test_build_request_and_check_response(void**) {
  ClientRequestSpec spec;
  spec.host_header = "example.com:8080";
  spec.target = "/x?y=1";
  spec.key = "dGhlIHNhbXBsZSBub25jZQ==";
  spec.subprotocols = {"chat", "v2"};
  spec.extra = {{"Authorization", "Bearer t"}};
  std::string req = build_request(spec);
  assert_string_equal(req.c_str(),
                      "GET /x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, v2\r\n"
                      "Authorization: Bearer t\r\n\r\n");
  // The server side accepts what the client side builds.
  Request r;
  assert_int_equal(parse_request(req.data(), req.size(), HandshakeLimits{}, &r).status, ParseStatus::complete);
  assert_true(check_upgrade(r).ok);

  std::string resp = build_response_101(spec.key, "v2", "", {{"X-Server", "wscore"}});
  assert_string_equal(resp.c_str(),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v2\r\n"
                      "X-Server: wscore\r\n\r\n");
  Response rs;
  ResponseParse rp = parse_response(resp.data(), resp.size(), HandshakeLimits{}, &rs);
  assert_int_equal(rp.status, ParseStatus::complete);
  ResponseCheck rc = check_response(rs, spec.key, spec.subprotocols, "");
  assert_true(rc.ok);
  assert_string_equal(rc.subprotocol.c_str(), "v2");
  // A wrong accept, an unoffered subprotocol, an unoffered extension, a 403.
  assert_false(check_response(rs, "AAAAAAAAAAAAAAAAAAAAAA==", spec.subprotocols, "").ok);
  assert_false(check_response(rs, spec.key, {"chat"}, "").ok);
  std::string ext = build_response_101(spec.key, "", "permessage-deflate", {});
  parse_response(ext.data(), ext.size(), HandshakeLimits{}, &rs);
  assert_false(check_response(rs, spec.key, {}, "").ok);
  std::string denied = build_error_response(403, "go away\n");
  parse_response(denied.data(), denied.size(), HandshakeLimits{}, &rs);
  assert_int_equal(rs.status, 403);
  rc = check_response(rs, spec.key, {}, "");
  assert_false(rc.ok);
  assert_string_equal(rc.error.c_str(), "server answered 403 Forbidden");
}

static void test_error_response(void**) {
  std::string r = build_error_response(426, "upgrade\n");
  assert_string_equal(r.c_str(),
                      "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                      "upgrade\n");
  assert_true(valid_header_name("X-Ok"));
  assert_false(valid_header_name("Bad Name"));
  assert_false(valid_header_value("a\r\nInjected: 1"));
  auto l = split_list(" a, ,b ,\tc");
  assert_int_equal(l.size(), 3);
  assert_string_equal(l[2].c_str(), "c");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_accept),
      cmocka_unit_test(test_parse_good_request),
      cmocka_unit_test(test_case_insensitive_token_lists),
      cmocka_unit_test(test_rejections),
      cmocka_unit_test(test_build_request_and_check_response),
      cmocka_unit_test(test_error_response),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
