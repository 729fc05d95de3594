// RFC 6455 section 4 opening handshake over HTTP/1.1: build and parse the
// upgrade request and response. Sans-I/O, strict where RFC 7230 is strict.
// CONTRACT between the protocol core (src/proto/handshake.cpp) and src/net.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wscore::proto {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive header lookup; several headers of one name are joined with ", ".
// Returns false when absent.
bool find_header(const Headers& h, std::string_view name, std::string* value);

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), RFC 6455 1.3.
std::string compute_accept(std::string_view key);
// 16 random bytes (CSPRNG), base64: a fresh Sec-WebSocket-Key.
// "" when the CSPRNG fails (then there is no safe key to send: fail the open).
std::string generate_key();

enum class ParseStatus : uint8_t { incomplete, complete, error };

struct HandshakeLimits {
  size_t max_head_size = 16 * 1024;  // request/response line + headers; beyond -> 431 / error
  size_t max_headers = 100;          // beyond -> 431 / error
};

// ---- server side ----
struct Request {
  std::string method;   // "GET"
  std::string target;   // "/chat?x=1"
  std::string path;     // "/chat"
  std::string query;    // "x=1" ("" when none)
  int http_minor = 1;   // HTTP/1.x
  Headers headers;      // in order, names as sent
};

struct RequestParse {
  ParseStatus status = ParseStatus::incomplete;
  size_t consumed = 0;   // bytes of the head (incl. final CRLFCRLF) when complete
  int error_status = 0;  // when error: the HTTP status to answer (400, 431, 505, ...)
  std::string error;     // when error: why, for logs and the response body
};

// Parses one HTTP/1.1 request head from data[0..len). Incomplete until the
// blank line; error past the limits or on malformed syntax. Pure function of
// its input: call again with more bytes (the whole head so far). Bytes after
// the head (a pipelined first frame) are not consumed. Strict: every line ends
// with CRLF (a bare LF or CR is 400), no obs-fold (400), no whitespace before
// a colon (400), target origin-form or absolute-form, ASCII without controls.
// A prefix of a valid head is never an error; a hopeless one (a control byte,
// a bad line already complete) is an error before its blank line arrives.
// *out is written only when the head is complete.
RequestParse parse_request(const char* data, size_t len, const HandshakeLimits& lim, Request* out);

// What the server learned about an upgrade request.
struct UpgradeCheck {
  bool ok = false;              // a valid WebSocket upgrade
  bool is_upgrade = false;      // it asked for an upgrade at all (else: plain HTTP)
  int error_status = 0;         // when !ok: 400, 426 (version/not upgrade), 403, 405
  std::string error;            // why
  std::string key;              // Sec-WebSocket-Key
  std::vector<std::string> subprotocols;  // offered, in order
  std::vector<std::string> extensions;    // offered entries ("name; param=v"), in order
  std::string origin;           // "" when absent
};
// Validates method GET (405), HTTP/1.1+, one Host, Upgrade: websocket and
// Connection: upgrade (case-insensitive token lists), a key that base64-decodes
// to 16 bytes (exactly one such header), Sec-WebSocket-Version: 13 (else 426
// with the supported version), subprotocols as tokens, extensions by grammar
// (400). No Upgrade: websocket at all: is_upgrade false, status 426.
UpgradeCheck check_upgrade(const Request& req);

// The 101 response. subprotocol "" for none; extra headers appended as given.
// "" when a name or value could break the head (see valid_header_*).
std::string build_response_101(std::string_view key, std::string_view subprotocol,
                               std::string_view extensions, const Headers& extra);
// Any other response (400/403/426/431/...), Connection: close, with a text body.
// For 426 it carries Sec-WebSocket-Version: 13 and Upgrade: websocket, for 405
// Allow: GET. A status outside 100..599 is sent as 500. "" for invalid extra.
std::string build_error_response(int status, std::string_view body,
                                 const Headers& extra = {});
// "Bad Request" for 400 etc.; for codes it does not know, the name of the class.
std::string_view reason_phrase(int status);

// ---- client side ----
struct ClientRequestSpec {
  std::string host_header;    // "example.com:8080" (port omitted when default)
  std::string target;         // "/path?query"
  std::string key;            // from generate_key()
  std::vector<std::string> subprotocols;
  std::string extensions;     // "" for none
  Headers extra;              // user headers
};
// "" when any field could break the head (CR, LF, NUL..., whitespace in the
// target, a subprotocol that is not a token).
std::string build_request(const ClientRequestSpec& spec);

struct Response {
  int status = 0;
  std::string reason;
  Headers headers;
};
struct ResponseParse {
  ParseStatus status = ParseStatus::incomplete;
  size_t consumed = 0;
  std::string error;
};
// Same rules as parse_request; additionally accepts "HTTP/1.1 101" without a
// reason phrase. *out is written only when the head is complete.
ResponseParse parse_response(const char* data, size_t len, const HandshakeLimits& lim, Response* out);

struct ResponseCheck {
  bool ok = false;
  std::string error;          // why not: "status 403", "bad Sec-WebSocket-Accept", ...
  std::string subprotocol;    // chosen by the server ("" none); must be one we offered
  std::string extensions;     // as answered
};
// Checks a parsed response against what we sent: status 101, Upgrade/Connection
// tokens, Sec-WebSocket-Accept, a subprotocol we offered (or none), no extension
// we did not offer.
ResponseCheck check_response(const Response& resp, std::string_view key,
                             const std::vector<std::string>& offered_subprotocols,
                             std::string_view offered_extensions);

// RFC 7230 token (field name) / field value without CR, LF, NUL or other controls.
bool valid_header_name(std::string_view name);
bool valid_header_value(std::string_view value);

// Comma-separated token list split with whitespace trimmed (for Connection,
// Upgrade, Sec-WebSocket-Protocol). Empty elements skipped.
std::vector<std::string> split_list(std::string_view v);
// Sec-WebSocket-Extensions (RFC 6455 9.1) split into entries ("name; p=v"),
// trimmed, commas inside quoted values respected. *ok = false (and an empty
// result) on bad syntax.
std::vector<std::string> split_extensions(std::string_view v, bool* ok);

}  // namespace wscore::proto
