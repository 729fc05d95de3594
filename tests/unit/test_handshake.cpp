// src/proto/handshake.cpp: the upgrade request and response, built and parsed
// byte for byte; every rejection with its HTTP status or its client-side reason.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "proto/handshake.hpp"

using namespace wscore::proto;

static const std::string kGood =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";
static const char kKey[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char kAccept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// kGood with the first occurrence of `from` replaced.
static std::string with(const std::string& from, const std::string& to, std::string s = kGood) {
  size_t at = s.find(from);
  if (at == std::string::npos) fail_msg("test bug: \"%s\" not in the request", from.c_str());
  return s.replace(at, from.size(), to);
}

// The status a server answers to `head`: the parser's (400/431/505), then
// check_upgrade's, 101 when it is a valid upgrade, 0 when still incomplete.
struct Verdict {
  int status = 0;
  std::string error;
  Request req;
  UpgradeCheck chk;
  size_t consumed = 0;
};
static Verdict judge(const std::string& head, const HandshakeLimits& lim = HandshakeLimits{}) {
  Verdict v;
  RequestParse p = parse_request(head.data(), head.size(), lim, &v.req);
  if (p.status == ParseStatus::incomplete) {
    assert_int_equal(p.error_status, 0);
    return v;
  }
  if (p.status == ParseStatus::error) {
    assert_true(p.error_status >= 400);
    assert_false(p.error.empty());
    v.status = p.error_status;
    v.error = p.error;
    return v;
  }
  v.consumed = p.consumed;
  v.chk = check_upgrade(v.req);
  v.status = v.chk.ok ? 101 : v.chk.error_status;
  v.error = v.chk.error;
  if (!v.chk.ok) assert_false(v.chk.error.empty());
  return v;
}

static void expect_status(const std::string& head, int status) {
  Verdict v = judge(head);
  if (v.status != status) {
    fail_msg("want %d, got %d (%s) for:\n%s", status, v.status, v.error.c_str(), head.c_str());
  }
}

// Every proper prefix is incomplete; the whole is complete with `consumed`.
static void expect_prefixes_incomplete(const std::string& head, bool request) {
  for (size_t i = 0; i < head.size(); i++) {
    Request rq;
    Response rs;
    ParseStatus st = request ? parse_request(head.data(), i, HandshakeLimits{}, &rq).status
                             : parse_response(head.data(), i, HandshakeLimits{}, &rs).status;
    if (st != ParseStatus::incomplete) fail_msg("prefix of %zu bytes is not incomplete", i);
  }
}

// ---- accept key ----

static void test_rfc_accept(void**) {
  assert_string_equal(compute_accept(kKey).c_str(), kAccept);
  std::string k1 = generate_key(), k2 = generate_key();
  assert_int_equal(k1.size(), 24);
  assert_true(k1 != k2);
  // A generated key is one the server side accepts (16 bytes of base64).
  assert_int_equal(judge(with(kKey, k1)).status, 101);
}

// ---- builders ----

static void test_build_request_exact(void**) {
  ClientRequestSpec spec;
  spec.host_header = "example.com:8080";
  spec.target = "/x?y=1";
  spec.key = kKey;
  spec.subprotocols = {"chat", "v2"};
  spec.extensions = "permessage-deflate; client_max_window_bits";
  spec.extra = {{"Authorization", "Bearer t"}, {"X-Empty", ""}};
  assert_string_equal(build_request(spec).c_str(),
                      "GET /x?y=1 HTTP/1.1\r\n"
                      "Host: example.com:8080\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Protocol: chat, v2\r\n"
                      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                      "Authorization: Bearer t\r\n"
                      "X-Empty: \r\n"
                      "\r\n");
  ClientRequestSpec bare;
  bare.host_header = "h";
  bare.target = "/";
  bare.key = kKey;
  assert_string_equal(build_request(bare).c_str(),
                      "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  // What the client builds, the server accepts.
  Verdict v = judge(build_request(spec));
  assert_int_equal(v.status, 101);
  assert_int_equal(v.chk.subprotocols.size(), 2);
  assert_int_equal(v.chk.extensions.size(), 1);
}

static void test_build_request_refuses_injection(void**) {
  ClientRequestSpec good;
  good.host_header = "h";
  good.target = "/";
  good.key = kKey;
  assert_false(build_request(good).empty());
  auto refused = [&](auto edit) {
    ClientRequestSpec s = good;
    edit(s);
    return build_request(s).empty();
  };
  assert_true(refused([](ClientRequestSpec& s) { s.extra = {{"X", "a\r\nInjected: 1"}}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.extra = {{"X", std::string("a\0b", 3)}}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.extra = {{"X", "a\nb"}}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.extra = {{"Bad Name", "v"}}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.extra = {{"", "v"}}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.extra = {{"X:Y", "v"}}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.target = "/a b"; }));
  assert_true(refused([](ClientRequestSpec& s) { s.target = "/a\r\nX: 1"; }));
  assert_true(refused([](ClientRequestSpec& s) { s.target = ""; }));
  assert_true(refused([](ClientRequestSpec& s) { s.host_header = "h\r\nX: 1"; }));
  assert_true(refused([](ClientRequestSpec& s) { s.host_header = ""; }));
  assert_true(refused([](ClientRequestSpec& s) { s.key = "k\r\n"; }));
  assert_true(refused([](ClientRequestSpec& s) { s.subprotocols = {"chat", "two words"}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.subprotocols = {"a,b"}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.subprotocols = {""}; }));
  assert_true(refused([](ClientRequestSpec& s) { s.extensions = "x\r\n"; }));
  // obs-text and HTAB are legal in values.
  assert_false(refused([](ClientRequestSpec& s) { s.extra = {{"X", "caf\xc3\xa9\tok"}}; }));
}

static void test_build_response_101_exact(void**) {
  assert_string_equal(build_response_101(kKey, "", "", {}).c_str(),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
  assert_string_equal(
      build_response_101(kKey, "v2", "permessage-deflate", {{"X-Server", "wscore"}}).c_str(),
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v2\r\n"
      "Sec-WebSocket-Extensions: permessage-deflate\r\nX-Server: wscore\r\n\r\n");
  assert_true(build_response_101(kKey, "", "", {{"X", "1\r\n\r\ninjected"}}).empty());
  assert_true(build_response_101(kKey, "a\r\nb", "", {}).empty());
  assert_true(build_response_101(kKey, "", "x\ny", {}).empty());
  assert_true(build_response_101(kKey, "", "", {{"X Y", "1"}}).empty());
}

static void test_build_error_response_exact(void**) {
  assert_string_equal(build_error_response(400, "bad\n").c_str(),
                      "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 4\r\nConnection: close\r\n\r\nbad\n");
  assert_string_equal(build_error_response(426, "upgrade\n").c_str(),
                      "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                      "upgrade\n");
  assert_string_equal(build_error_response(405, "").c_str(),
                      "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  assert_string_equal(build_error_response(431, "x").c_str(),
                      "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
  // The caller's Content-Type replaces ours; other extras come before ours.
  assert_string_equal(build_error_response(403, "{}", {{"content-type", "application/json"}, {"X-A", "1"}}).c_str(),
                      "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nX-A: 1\r\n"
                      "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
  // Unsendable codes become 500; unknown codes get their class's name.
  assert_int_equal(build_error_response(42, "").rfind("HTTP/1.1 500 Internal Server Error\r\n", 0), 0);
  assert_int_equal(build_error_response(1000, "").rfind("HTTP/1.1 500 ", 0), 0);
  assert_int_equal(build_error_response(-1, "").rfind("HTTP/1.1 500 ", 0), 0);
  assert_int_equal(build_error_response(499, "").rfind("HTTP/1.1 499 Client Error\r\n", 0), 0);
  assert_int_equal(build_error_response(599, "").rfind("HTTP/1.1 599 Server Error\r\n", 0), 0);
  assert_true(build_error_response(400, "", {{"X", "a\r\nb"}}).empty());
  // The body is bytes, any bytes: its length is counted, not its characters.
  std::string body("a\0\r\n", 4);
  std::string r = build_error_response(400, body);
  assert_non_null(std::strstr(r.c_str(), "Content-Length: 4\r\n"));
  assert_true(r.compare(r.size() - 4, 4, body) == 0);
  // A client reads it back as the failure it is.
  Response rs;
  assert_int_equal(parse_response(r.data(), r.size(), HandshakeLimits{}, &rs).status, ParseStatus::complete);
  assert_int_equal(rs.status, 400);
  assert_string_equal(check_response(rs, kKey, {}, "").error.c_str(), "server answered 400 Bad Request");
}

// ---- request parsing ----

static void test_parse_good_request(void**) {
  std::string in = kGood + "\x81\x85\r\n\r\n";  // a pipelined first frame, even one that looks like a head end
  Verdict v = judge(in);
  assert_int_equal(v.status, 101);
  assert_int_equal(v.consumed, kGood.size());
  assert_string_equal(v.req.method.c_str(), "GET");
  assert_string_equal(v.req.target.c_str(), "/chat?room=1");
  assert_string_equal(v.req.path.c_str(), "/chat");
  assert_string_equal(v.req.query.c_str(), "room=1");
  assert_int_equal(v.req.http_minor, 1);
  assert_int_equal(v.req.headers.size(), 7);
  assert_string_equal(v.req.headers[0].first.c_str(), "Host");
  assert_string_equal(v.req.headers[0].second.c_str(), "server.example.com");
  assert_string_equal(v.chk.key.c_str(), kKey);
  assert_int_equal(v.chk.subprotocols.size(), 2);
  assert_string_equal(v.chk.subprotocols[0].c_str(), "chat");
  assert_string_equal(v.chk.subprotocols[1].c_str(), "superchat");
  assert_true(v.chk.extensions.empty());
  assert_string_equal(v.chk.origin.c_str(), "http://example.com");
  // Query edge cases.
  v = judge(with("/chat?room=1", "/"));
  assert_string_equal(v.req.path.c_str(), "/");
  assert_string_equal(v.req.query.c_str(), "");
  v = judge(with("/chat?room=1", "/a?b?c=d/e"));
  assert_string_equal(v.req.path.c_str(), "/a");
  assert_string_equal(v.req.query.c_str(), "b?c=d/e");
  // A head with no header at all parses (and then fails the upgrade check).
  Request r;
  const char bare[] = "GET / HTTP/1.1\r\n\r\n";
  RequestParse p = parse_request(bare, sizeof bare - 1, HandshakeLimits{}, &r);
  assert_int_equal(p.status, ParseStatus::complete);
  assert_int_equal(p.consumed, sizeof bare - 1);
  assert_true(r.headers.empty());
}

static void test_every_prefix_incomplete(void**) {
  expect_prefixes_incomplete(kGood, true);
  expect_prefixes_incomplete("GET / HTTP/1.1\r\n\r\n", true);
  expect_prefixes_incomplete(with("Origin: http://example.com", "X-Odd:\t caf\xc3\xa9 \t"), true);
  std::string resp = build_response_101(kKey, "chat", "", {});
  expect_prefixes_incomplete(resp, false);
  // Fed one byte at a time, the last byte completes it with the same consumed.
  Request r;
  std::string in = kGood + "tail";
  for (size_t i = 0; i <= in.size(); i++) {
    RequestParse p = parse_request(in.data(), i, HandshakeLimits{}, &r);
    if (i < kGood.size()) {
      assert_int_equal(p.status, ParseStatus::incomplete);
    } else {
      assert_int_equal(p.status, ParseStatus::complete);
      assert_int_equal(p.consumed, kGood.size());
    }
  }
}

static void test_request_line(void**) {
  struct {
    const char* line;
    int status;
  } cases[] = {
      {"GET /chat HTTP/1.1", 101},
      {"GET  /chat HTTP/1.1", 400},      // two spaces
      {"GET /chat  HTTP/1.1", 400},
      {"GET /chat HTTP/1.1 ", 400},      // trailing space
      {" GET /chat HTTP/1.1", 400},      // leading space
      {"GET\t/chat HTTP/1.1", 400},      // HTAB is not SP
      {"GET /chat\tHTTP/1.1", 400},
      {"GET /chat", 400},
      {"GET", 400},
      {"", 400},                         // a blank line before the request line
      {"G@T /chat HTTP/1.1", 400},       // method not a token
      {"get /chat HTTP/1.1", 405},       // methods are case-sensitive
      {"POST /chat HTTP/1.1", 405},
      {"CONNECT example.com:80 HTTP/1.1", 400},  // authority-form
      {"GET * HTTP/1.1", 400},           // asterisk-form
      {"GET chat HTTP/1.1", 400},
      {"GET /chat#frag HTTP/1.1", 400},
      {"GET /ch\x01t HTTP/1.1", 400},
      {"GET /ch\x7ft HTTP/1.1", 400},
      {"GET /caf\xc3\xa9 HTTP/1.1", 400},  // raw UTF-8 must be percent-encoded
      {"GET /caf%C3%A9 HTTP/1.1", 101},
      {"GET http://example.com/chat?x=1 HTTP/1.1", 101},  // absolute-form
      {"GET ws://example.com HTTP/1.1", 101},
      {"GET ws+x.y-z://example.com?q HTTP/1.1", 101},
      {"GET http:///chat HTTP/1.1", 400},  // no host
      {"GET ://example.com/ HTTP/1.1", 400},
      {"GET 1ws://example.com/ HTTP/1.1", 400},
      {"GET w_s://example.com/ HTTP/1.1", 400},
      {"GET mailto:x@y HTTP/1.1", 400},
      {"GET /chat HTTP/1.0", 400},       // upgrade needs 1.1
      {"GET /chat HTTP/1.2", 101},       // a later 1.x is 1.1-compatible
      {"GET /chat HTTP/2.0", 505},
      {"GET /chat HTTP/0.9", 505},
      {"GET /chat http/1.1", 400},       // HTTP-name is case-sensitive
      {"GET /chat HTTP/1", 400},
      {"GET /chat HTTP/1.10", 400},
      {"GET /chat HTTP/1.x", 400},
      {"GET /chat HTTPS/1.1", 400},
  };
  for (const auto& c : cases) {
    std::string head = with("GET /chat?room=1 HTTP/1.1", c.line);
    Verdict v = judge(head);
    if (v.status != c.status) fail_msg("\"%s\": want %d, got %d (%s)", c.line, c.status, v.status, v.error.c_str());
  }
  Verdict v = judge(with("GET /chat?room=1 HTTP/1.1", "GET http://example.com:81/a/b?x=1&y HTTP/1.1"));
  assert_string_equal(v.req.target.c_str(), "http://example.com:81/a/b?x=1&y");
  assert_string_equal(v.req.path.c_str(), "/a/b");
  assert_string_equal(v.req.query.c_str(), "x=1&y");
  v = judge(with("GET /chat?room=1 HTTP/1.1", "GET ws://example.com?q=1 HTTP/1.1"));
  assert_string_equal(v.req.path.c_str(), "/");
  assert_string_equal(v.req.query.c_str(), "q=1");
  v = judge(with("GET /chat?room=1 HTTP/1.1", "GET /chat HTTP/1.0"));
  assert_int_equal(v.req.http_minor, 0);
  assert_true(v.chk.is_upgrade);
}

static void test_header_syntax(void**) {
  const std::string host = "Host: server.example.com";
  expect_status(with(host, "Host : server.example.com"), 400);   // whitespace before the colon
  expect_status(with(host, "Host\t: server.example.com"), 400);
  expect_status(with(host, ": server.example.com"), 400);        // empty name
  expect_status(with(host, "Host server.example.com"), 400);     // no colon
  expect_status(with(host, "Ho(st: server.example.com"), 400);   // name not a token
  expect_status(with(host, "H\xc3\xb6st: x"), 400);
  expect_status(with(host, host + "\r\n folded"), 400);          // obs-fold
  expect_status(with(host, host + "\r\n\tfolded"), 400);
  expect_status(with("Host", " Host"), 400);                     // whitespace before the first header
  expect_status(with(host, "Host: a\x01" "b"), 400);
  expect_status(with(host, "Host: a\x7f" "b"), 400);
  expect_status(with(host, std::string("Host: a\0b", 9)), 400);
  expect_status(with(host, "Host: a\rb"), 400);                  // bare CR
  expect_status(with(host + "\r\n", host + "\n"), 400);          // bare LF
  expect_status(with("\r\n\r\n", "\r\n\n"), 400);                // bare LF on the blank line
  expect_status(with("HTTP/1.1\r\n", "HTTP/1.1\n"), 400);        // bare LF after the request line
  expect_status(with("HTTP/1.1\r\n", "HTTP/1.1\r\r\n"), 400);
  // Optional whitespace around values is trimmed, inner whitespace and
  // obs-text kept, empty values are values.
  Verdict v = judge(with("Origin: http://example.com",
                         "Origin: \t http://example.com \t\r\nX-Text:a  b\r\nX-Empty:\r\nX-Blank:  \t\r\nX-Latin: caf\xe9"));
  assert_int_equal(v.status, 101);
  assert_string_equal(v.chk.origin.c_str(), "http://example.com");
  std::string val;
  assert_true(find_header(v.req.headers, "x-text", &val));
  assert_string_equal(val.c_str(), "a  b");
  assert_true(find_header(v.req.headers, "X-EMPTY", &val));
  assert_string_equal(val.c_str(), "");
  assert_true(find_header(v.req.headers, "x-blank", &val));
  assert_string_equal(val.c_str(), "");
  assert_true(find_header(v.req.headers, "X-Latin", &val));
  assert_string_equal(val.c_str(), "caf\xe9");
  assert_false(find_header(v.req.headers, "X-Absent", &val));
  // Names are kept as sent.
  v = judge(with(host, "hOsT: server.example.com"));
  assert_int_equal(v.status, 101);
  assert_string_equal(v.req.headers[0].first.c_str(), "hOsT");
}

static void test_hopeless_heads_fail_early(void**) {
  struct {
    std::string partial;
    int status;
  } cases[] = {
      {"\x16\x03\x01\x02\x00\x01", 400},            // a TLS ClientHello on a plain port
      {std::string("GET /\0", 6), 400},
      {"GET / HTTP/1.1\n", 400},                    // bare LF, head not done yet
      {"GET / HTTP/1.1\r\nHost: a\rX", 400},        // bare CR inside a line
      {"GET  / HTTP/1.1\r\n", 400},                 // a complete bad request line
      {"GET / HTTP/3.0\r\n", 505},
      {"GET / HTTP/1.1\r\n folded", 400},
      {"GET / HTTP/1.1\r\nHost : a\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r", 0},           // still fine: LF may follow
      {"GET / HTTP/1.1\r\nHost: a\r\n\r", 0},
      {"GET / HTTP/1.1\r\nX: caf\xc3\xa9", 0},
  };
  for (const auto& c : cases) {
    Verdict v = judge(c.partial);
    if (v.status != c.status) fail_msg("case %zu: want %d, got %d", &c - cases, c.status, v.status);
  }
  HandshakeLimits lim;
  lim.max_headers = 2;
  std::string three = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
  assert_int_equal(judge(three, lim).status, 431);  // before the blank line
}

static void test_limits(void**) {
  // The head may be exactly max_head_size bytes; one more is 431.
  HandshakeLimits lim;
  lim.max_head_size = kGood.size();
  assert_int_equal(judge(kGood, lim).status, 101);
  assert_int_equal(judge(kGood + "frame bytes after the head", lim).status, 101);
  lim.max_head_size = kGood.size() - 1;
  Verdict v = judge(kGood, lim);
  assert_int_equal(v.status, 431);
  assert_non_null(std::strstr(v.error.c_str(), "limit"));
  // Without a blank line: incomplete below the limit, 431 at it.
  std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(100, 'a');
  lim.max_head_size = endless.size() + 1;
  assert_int_equal(judge(endless, lim).status, 0);
  lim.max_head_size = endless.size();
  assert_int_equal(judge(endless, lim).status, 431);
  // The defaults: 16 KiB and 100 headers.
  assert_int_equal(judge(with("Origin: http://example.com", "Origin: " + std::string(20000, 'a'))).status, 431);
  assert_int_equal(judge("GET / HTTP/1.1\r\nX: " + std::string(17000, 'a')).status, 431);
  // Header count: the limit counts every field line, exactly.
  lim = HandshakeLimits{};
  lim.max_headers = 7;  // kGood has 7
  assert_int_equal(judge(kGood, lim).status, 101);
  lim.max_headers = 6;
  v = judge(kGood, lim);
  assert_int_equal(v.status, 431);
  assert_non_null(std::strstr(v.error.c_str(), "header fields"));
  std::string extra;
  for (int i = 0; i < 93; i++) extra += "X-H" + std::to_string(i) + ": v\r\n";
  std::string hundred = with("\r\n\r\n", "\r\n" + extra + "\r\n");
  assert_int_equal(judge(hundred).status, 101);  // 7 + 93 = 100
  assert_int_equal(judge(with("\r\n\r\n", "\r\nX-Last: 1\r\n" + extra + "\r\n")).status, 431);
  // Degenerate limits refuse cleanly.
  lim = HandshakeLimits{};
  lim.max_head_size = 0;
  assert_int_equal(judge(kGood, lim).status, 431);
  assert_int_equal(judge("", lim).status, 431);
  lim = HandshakeLimits{};
  lim.max_headers = 0;
  assert_int_equal(judge(kGood, lim).status, 431);
  assert_int_equal(judge("GET / HTTP/1.1\r\n\r\n", lim).status, 426);
}

// ---- upgrade checks ----

static void test_check_upgrade(void**) {
  struct {
    std::string from, to;
    int status;
  } cases[] = {
      {"Upgrade: websocket\r\n", "", 426},
      {"Upgrade: websocket", "Upgrade: h2c", 426},
      {"Upgrade: websocket", "Upgrade: websockets", 426},
      {"Upgrade: websocket", "Upgrade: h2c, WebSocket", 101},
      {"Upgrade: websocket", "Upgrade: h2c\r\nUpgrade: websocket", 101},
      {"Host: server.example.com\r\n", "", 400},
      {"Host: server.example.com", "Host: a\r\nHost: b", 400},
      {"Connection: Upgrade\r\n", "", 400},
      {"Connection: Upgrade", "Connection: keep-alive", 400},
      {"Connection: Upgrade", "Connection: upgraded", 400},
      {"Connection: Upgrade", "Connection: keep-alive, Upgrade", 101},
      {"Connection: Upgrade", "Connection: keep-alive,,  UPGRADE ,", 101},
      {"Connection: Upgrade", "Connection: keep-alive\r\nConnection: upgrade", 101},
      {"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400},
      {"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", 400},
      {kKey, "AAAAAAAAAAAAAAAAAAAA", 400},               // 15 bytes
      {kKey, "AAAAAAAAAAAAAAAAAAAAAAA=", 400},           // 17 bytes
      {kKey, "dGhlIHNhbXBsZSBub25jZQ", 400},             // padding missing
      {kKey, "dGhlIHNhbXBsZSBub25jZQ=A", 400},           // padding in the middle
      {kKey, "dGhlIHNhbXBsZSBub25jZ!==", 400},
      {kKey, "", 400},
      {"Sec-WebSocket-Version: 13\r\n", "", 426},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13, 8", 426},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version:  13 ", 101},
      {"chat, superchat", "chat, super chat", 400},     // not a token
      {"chat, superchat", "chat,,superchat,", 101},      // empty elements ignored
      {"Origin: http://example.com\r\n", "", 101},       // origin policy is not ours
  };
  for (const auto& c : cases) {
    Verdict v = judge(with(c.from, c.to));
    if (v.status != c.status)
      fail_msg("\"%s\" -> \"%s\": want %d, got %d (%s)", c.from.c_str(), c.to.c_str(), c.status, v.status,
               v.error.c_str());
  }
  // A request that is no upgrade at all says so: the server may answer it as HTTP.
  Verdict v = judge("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_false(v.chk.is_upgrade);
  assert_int_equal(v.status, 426);
  v = judge(with("GET", "POST"));
  assert_true(v.chk.is_upgrade);
  assert_string_equal(v.error.c_str(), "a WebSocket upgrade must use GET, not POST");
  v = judge(with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"));
  assert_string_equal(v.error.c_str(), "unsupported Sec-WebSocket-Version 8 (13 is supported)");
  v = judge(with("Origin: http://example.com\r\n", ""));
  assert_string_equal(v.chk.origin.c_str(), "");
}

static void test_extensions_offered(void**) {
  Verdict v = judge(with("Sec-WebSocket-Version: 13",
                         "Sec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10, "
                         "x-q; a=\"1,2;3\" ; b=tok, ,\r\n"
                         "Sec-WebSocket-Extensions: permessage-deflate"));
  assert_int_equal(v.status, 101);
  assert_int_equal(v.chk.extensions.size(), 3);
  assert_string_equal(v.chk.extensions[0].c_str(),
                      "permessage-deflate; client_max_window_bits; server_max_window_bits=10");
  assert_string_equal(v.chk.extensions[1].c_str(), "x-q; a=\"1,2;3\" ; b=tok");
  assert_string_equal(v.chk.extensions[2].c_str(), "permessage-deflate");
  const char* bad[] = {"permessage-deflate;", "permessage-deflate;;a", "; a", "a b", "a; b c", "a; b=",
                       "a; b=\"unterminated", "a; b=\"x\"y", "a; =1", "a; b==1", "a; b=\"\\"};
  for (const char* e : bad) {
    v = judge(with("Sec-WebSocket-Version: 13", std::string("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: ") + e));
    if (v.status != 400) fail_msg("extensions \"%s\": want 400, got %d", e, v.status);
    assert_string_equal(v.error.c_str(), "malformed Sec-WebSocket-Extensions");
  }
  bool ok = false;
  auto l = split_extensions("a; q=\"x\\\"y,z\", b", &ok);
  assert_true(ok);
  assert_int_equal(l.size(), 2);
  assert_string_equal(l[0].c_str(), "a; q=\"x\\\"y,z\"");
  assert_true(split_extensions("", &ok).empty());
  assert_true(ok);
  assert_true(split_extensions("a b", &ok).empty());
  assert_false(ok);
}

static void test_case_insensitivity(void**) {
  std::string s = kGood;
  for (const char* n : {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Origin", "Sec-WebSocket-Protocol",
                        "Sec-WebSocket-Version"}) {
    std::string up;
    for (const char* p = n; *p; p++) up += static_cast<char>(std::toupper(static_cast<unsigned char>(*p)));
    s = with(std::string(n) + ":", up + ":", s);
  }
  s = with("UPGRADE: websocket", "UPGRADE: WebSocket", s);
  Verdict v = judge(s);
  assert_int_equal(v.status, 101);
  assert_string_equal(v.chk.origin.c_str(), "http://example.com");
  assert_int_equal(v.chk.subprotocols.size(), 2);
  // Values that are not tokens keep their case.
  assert_string_equal(v.chk.key.c_str(), kKey);
  // find_header joins repeated fields in order.
  Headers h = {{"A", "1"}, {"b", "2"}, {"a", "3"}};
  std::string val;
  assert_true(find_header(h, "a", &val));
  assert_string_equal(val.c_str(), "1, 3");
  assert_true(find_header(h, "B", nullptr));
}

static void test_helpers(void**) {
  assert_true(valid_header_name("X-Ok"));
  assert_true(valid_header_name("!#$%&'*+-.^_`|~09azAZ"));
  assert_false(valid_header_name(""));
  assert_false(valid_header_name("Bad Name"));
  assert_false(valid_header_name("X:"));
  assert_false(valid_header_name("X\r\n"));
  assert_false(valid_header_name("caf\xc3\xa9"));
  assert_true(valid_header_value(""));
  assert_true(valid_header_value("a b\tc \xff"));
  assert_false(valid_header_value("a\r\nInjected: 1"));
  assert_false(valid_header_value("a\n"));
  assert_false(valid_header_value(std::string("a\0", 2)));
  assert_false(valid_header_value("\x7f"));
  auto l = split_list(" a, ,b ,\tc,");
  assert_int_equal(l.size(), 3);
  assert_string_equal(l[0].c_str(), "a");
  assert_string_equal(l[1].c_str(), "b");
  assert_string_equal(l[2].c_str(), "c");
  assert_true(split_list("").empty());
  assert_true(split_list(" , ,").empty());
  assert_string_equal(std::string(reason_phrase(101)).c_str(), "Switching Protocols");
  assert_string_equal(std::string(reason_phrase(426)).c_str(), "Upgrade Required");
  assert_string_equal(std::string(reason_phrase(0)).c_str(), "Unknown");
}

// ---- client side ----

static const std::vector<std::string> kOffered = {"chat", "v2"};

static Response response(const std::string& head) {
  Response rs;
  ResponseParse p = parse_response(head.data(), head.size(), HandshakeLimits{}, &rs);
  if (p.status != ParseStatus::complete) fail_msg("response did not parse: %s\n%s", p.error.c_str(), head.c_str());
  return rs;
}

static std::string check_error(const std::string& head, const std::vector<std::string>& offered = kOffered,
                               const char* extensions = "") {
  ResponseCheck c = check_response(response(head), kKey, offered, extensions);
  if (c.ok) return "ok";
  assert_false(c.error.empty());
  return c.error;
}

static void test_parse_response(void**) {
  std::string good = build_response_101(kKey, "chat", "", {});
  std::string in = good + "\x81\x05hello";  // the server's first frame right behind
  Response rs;
  ResponseParse p = parse_response(in.data(), in.size(), HandshakeLimits{}, &rs);
  assert_int_equal(p.status, ParseStatus::complete);
  assert_int_equal(p.consumed, good.size());
  assert_int_equal(rs.status, 101);
  assert_string_equal(rs.reason.c_str(), "Switching Protocols");
  assert_int_equal(rs.headers.size(), 4);
  // No reason phrase, with or without its SP; a reason with HTAB and obs-text.
  assert_int_equal(response("HTTP/1.1 101\r\n\r\n").status, 101);
  assert_string_equal(response("HTTP/1.1 101 \r\n\r\n").reason.c_str(), "");
  assert_string_equal(response("HTTP/1.1 404 Not\tF\xc3\xb6und\r\n\r\n").reason.c_str(), "Not\tF\xc3\xb6und");
  assert_int_equal(response("HTTP/1.0 403 Forbidden\r\n\r\n").status, 403);
  const char* bad[] = {
      "HTTP/1.1 10 Switching\r\n\r\n",  "HTTP/1.1 1010 Switching\r\n\r\n", "HTTP/1.1 1O1 x\r\n\r\n",
      "HTTP/1.1  101 x\r\n\r\n",        "HTTP/2 101 x\r\n\r\n",             "HTTP/2.0 101 x\r\n\r\n",
      "http/1.1 101 x\r\n\r\n",         "HTTP/1.x 101 x\r\n\r\n",           "ICY 200 OK\r\n\r\n",
      "HTTP/1.1 101 x\n\n",             "HTTP/1.1 101 x\r\nUpgrade : websocket\r\n\r\n",
      "HTTP/1.1 101 x\r\n folded\r\n\r\n", "HTTP/1.1 101 x\r\nX: a\rb\r\n\r\n", "HTTP/1.1 101 x\x01\r\n\r\n",
      "\r\nHTTP/1.1 101 x\r\n\r\n",
  };
  for (const char* b : bad) {
    Response r2;
    ResponseParse q = parse_response(b, std::strlen(b), HandshakeLimits{}, &r2);
    if (q.status != ParseStatus::error) fail_msg("response accepted: %s", b);
    assert_false(q.error.empty());
  }
  // Limits apply to responses too.
  HandshakeLimits lim;
  lim.max_headers = 3;
  assert_int_equal(parse_response(good.data(), good.size(), lim, &rs).status, ParseStatus::error);
  lim = HandshakeLimits{};
  lim.max_head_size = good.size() - 1;
  p = parse_response(good.data(), good.size(), lim, &rs);
  assert_int_equal(p.status, ParseStatus::error);
  assert_non_null(std::strstr(p.error.c_str(), "limit"));
}

static void test_check_response(void**) {
  const std::string ok101 = build_response_101(kKey, "", "", {});
  assert_string_equal(check_error(ok101).c_str(), "ok");
  assert_string_equal(check_error(build_response_101(kKey, "v2", "", {})).c_str(), "ok");
  ResponseCheck c = check_response(response(build_response_101(kKey, "v2", "", {})), kKey, kOffered, "");
  assert_string_equal(c.subprotocol.c_str(), "v2");
  assert_string_equal(c.extensions.c_str(), "");
  // Tokens are case-insensitive; lists are lists.
  assert_string_equal(check_error(with("Upgrade: websocket", "upgrade: WEBSOCKET",
                                       with("Connection: Upgrade", "connection: keep-alive, upgrade", ok101)))
                          .c_str(),
                      "ok");
  struct {
    std::string head;
    const char* error;
  } cases[] = {
      {build_error_response(403, "no\n"), "server answered 403 Forbidden"},
      {"HTTP/1.1 200\r\n\r\n", "server answered 200"},
      {"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", "server answered 302 Found"},
      {with("Upgrade: websocket\r\n", "", ok101), "response lacks Upgrade: websocket"},
      {with("Upgrade: websocket", "Upgrade: h2c", ok101), "response lacks Upgrade: websocket"},
      {with("Connection: Upgrade\r\n", "", ok101), "response lacks Connection: upgrade"},
      {with("Connection: Upgrade", "Connection: close", ok101), "response lacks Connection: upgrade"},
      {with(std::string("Sec-WebSocket-Accept: ") + kAccept + "\r\n", "", ok101), "response lacks Sec-WebSocket-Accept"},
      {with(kAccept, "x3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ok101), "Sec-WebSocket-Accept mismatch"},
      {with(kAccept, "S3PPLMBITXAQ9KYGZZHZRBK+XOO=", ok101), "Sec-WebSocket-Accept mismatch"},
      {with(kAccept, std::string(kAccept) + "\r\nSec-WebSocket-Accept: " + kAccept, ok101),
       "Sec-WebSocket-Accept mismatch"},
      {build_response_101(kKey, "v3", "", {}), "server chose a subprotocol we did not offer: \"v3\""},
      {build_response_101(kKey, "CHAT", "", {}), "server chose a subprotocol we did not offer: \"CHAT\""},
      {build_response_101(kKey, "chat", "", {{"Sec-WebSocket-Protocol", "v2"}}),
       "server chose a subprotocol we did not offer: \"chat, v2\""},
      {build_response_101(kKey, "", "permessage-deflate", {}),
       "server answered with an extension we did not offer: permessage-deflate"},
      {build_response_101(kKey, "", "a b", {}), "malformed Sec-WebSocket-Extensions in the response"},
  };
  for (const auto& k : cases) {
    std::string got = check_error(k.head);
    if (got != k.error) fail_msg("want \"%s\", got \"%s\" for:\n%s", k.error, got.c_str(), k.head.c_str());
  }
  // A subprotocol when we offered none.
  assert_string_equal(check_error(build_response_101(kKey, "chat", "", {}), {}).c_str(),
                      "server chose a subprotocol we did not offer: \"chat\"");
  // The key the server must have hashed is ours, not any valid one.
  assert_string_equal(check_response(response(ok101), "AAAAAAAAAAAAAAAAAAAAAA==", {}, "").error.c_str(),
                      "Sec-WebSocket-Accept mismatch");
  // Extensions we offered may come back (with their parameters), others not.
  const char* offer = "permessage-deflate; client_max_window_bits, x-other";
  std::string pmd = build_response_101(kKey, "", "permessage-deflate; server_no_context_takeover", {});
  assert_string_equal(check_error(pmd, {}, offer).c_str(), "ok");
  c = check_response(response(pmd), kKey, {}, offer);
  assert_string_equal(c.extensions.c_str(), "permessage-deflate; server_no_context_takeover");
  assert_string_equal(check_error(build_response_101(kKey, "", "x-webkit-deflate-frame", {}), {}, offer).c_str(),
                      "server answered with an extension we did not offer: x-webkit-deflate-frame");
  // An empty Sec-WebSocket-Extensions answers nothing.
  assert_string_equal(check_error(with("\r\n\r\n", "\r\nSec-WebSocket-Extensions: \r\n\r\n", ok101), {}).c_str(), "ok");
}

static void test_round_trip(void**) {
  ClientRequestSpec spec;
  spec.host_header = "127.0.0.1:9001";
  spec.target = "/echo?x=%20";
  spec.key = generate_key();
  spec.subprotocols = {"wamp", "chat"};
  std::string req = build_request(spec);
  Verdict v = judge(req + "\x81\x80mask");
  assert_int_equal(v.status, 101);
  assert_int_equal(v.consumed, req.size());
  assert_string_equal(v.req.path.c_str(), "/echo");
  assert_string_equal(v.req.query.c_str(), "x=%20");
  std::string resp = build_response_101(v.chk.key, v.chk.subprotocols[1], "", {});
  ResponseCheck c = check_response(response(resp), spec.key, spec.subprotocols, "");
  assert_true(c.ok);
  assert_string_equal(c.subprotocol.c_str(), "chat");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_accept),
      cmocka_unit_test(test_build_request_exact),
      cmocka_unit_test(test_build_request_refuses_injection),
      cmocka_unit_test(test_build_response_101_exact),
      cmocka_unit_test(test_build_error_response_exact),
      cmocka_unit_test(test_parse_good_request),
      cmocka_unit_test(test_every_prefix_incomplete),
      cmocka_unit_test(test_request_line),
      cmocka_unit_test(test_header_syntax),
      cmocka_unit_test(test_hopeless_heads_fail_early),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_check_upgrade),
      cmocka_unit_test(test_extensions_offered),
      cmocka_unit_test(test_case_insensitivity),
      cmocka_unit_test(test_helpers),
      cmocka_unit_test(test_parse_response),
      cmocka_unit_test(test_check_response),
      cmocka_unit_test(test_round_trip),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
