#include "proto/handshake.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>

namespace wscore::proto {

namespace {

constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// RFC 7230 tchar.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

std::string base64(const unsigned char* p, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

// Decoded length of strict base64 (padding required), or -1 when not base64.
int base64_decoded_len(std::string_view s) {
  if (s.empty() || s.size() % 4) return -1;
  size_t pad = 0;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    bool b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/';
    if (c == '=') {
      if (i < s.size() - 2) return -1;
      pad++;
    } else if (!b64 || pad) {
      return -1;
    }
  }
  return static_cast<int>(s.size() / 4 * 3 - pad);
}

bool has_token(const Headers& h, std::string_view name, std::string_view token) {
  std::string v;
  if (!find_header(h, name, &v)) return false;
  for (const auto& t : split_list(v))
    if (iequals(t, token)) return true;
  return false;
}

size_t count_header(const Headers& h, std::string_view name) {
  size_t n = 0;
  for (const auto& kv : h)
    if (iequals(kv.first, name)) n++;
  return n;
}

// Finds the end of the head: the index just past "\r\n\r\n", or 0.
size_t head_end(const char* d, size_t len) {
  for (size_t i = 3; i < len; i++)
    if (d[i] == '\n' && d[i - 1] == '\r' && d[i - 2] == '\n' && d[i - 3] == '\r') return i + 1;
  return 0;
}

// Parses header lines in [p, end) (each ending with CRLF). Returns "" or an error.
std::string parse_header_lines(const char* p, const char* end, const HandshakeLimits& lim,
                               Headers* out, bool* too_many) {
  *too_many = false;
  while (p < end) {
    const char* eol = static_cast<const char*>(std::memchr(p, '\r', static_cast<size_t>(end - p)));
    if (!eol || eol + 1 >= end || eol[1] != '\n') return "header line not terminated by CRLF";
    if (eol == p) return "";  // the blank line
    if (*p == ' ' || *p == '\t') return "obsolete line folding is not accepted";
    const char* colon = static_cast<const char*>(std::memchr(p, ':', static_cast<size_t>(eol - p)));
    if (!colon || colon == p) return "header line without a field name";
    for (const char* c = p; c < colon; c++)
      if (!is_tchar(static_cast<unsigned char>(*c))) return "invalid character in a header field name";
    const char* v = colon + 1;
    const char* ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    for (const char* c = v; c < ve; c++) {
      unsigned char ch = static_cast<unsigned char>(*c);
      if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return "control character in a header value";
    }
    if (out->size() >= lim.max_headers) {
      *too_many = true;
      return "too many header fields";
    }
    out->emplace_back(std::string(p, colon), std::string(v, ve));
    p = eol + 2;
  }
  return "header block not terminated";
}

bool bare_lf(const char* d, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r')) return true;
  return false;
}

}  // namespace

bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (!is_tchar(c)) return false;
  return true;
}

bool valid_header_value(std::string_view value) {
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
  return true;
}

bool find_header(const Headers& h, std::string_view name, std::string* value) {
  bool found = false;
  for (const auto& kv : h) {
    if (!iequals(kv.first, name)) continue;
    if (value) {
      if (found) value->append(", ");
      else value->clear();
      value->append(kv.second);
    }
    found = true;
  }
  return found;
}

std::vector<std::string> split_list(std::string_view v) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find(',', i);
    if (j == std::string_view::npos) j = v.size();
    std::string_view t = v.substr(i, j - i);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (!t.empty()) out.emplace_back(t);
    i = j + 1;
  }
  return out;
}

std::string compute_accept(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return {};
  EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr);
  EVP_DigestUpdate(ctx, key.data(), key.size());
  EVP_DigestUpdate(ctx, kGuid, sizeof(kGuid) - 1);
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  return base64(md, mdlen);
}

std::string generate_key() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no CSPRNG: nothing safe to do
  return base64(raw, sizeof raw);
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

RequestParse parse_request(const char* d, size_t len, const HandshakeLimits& lim, Request* out) {
  RequestParse r;
  size_t end = head_end(d, std::min(len, lim.max_head_size));
  if (!end) {
    if (len >= lim.max_head_size) {
      r.status = ParseStatus::error;
      r.error_status = 431;
      r.error = "request head larger than the limit";
      return r;
    }
    // A bare LF makes the request malformed however much more arrives.
    if (bare_lf(d, len)) {
      r.status = ParseStatus::error;
      r.error_status = 400;
      r.error = "line not terminated by CRLF";
    }
    return r;
  }
  auto bad = [&](int status, std::string why) {
    r.status = ParseStatus::error;
    r.error_status = status;
    r.error = std::move(why);
    return r;
  };
  if (bare_lf(d, end)) return bad(400, "line not terminated by CRLF");
  *out = Request{};
  const char* p = d;
  const char* eol = static_cast<const char*>(std::memchr(p, '\r', end));
  std::string_view line(p, static_cast<size_t>(eol - p));
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return bad(400, "malformed request line");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return bad(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (unsigned char c : method)
    if (!is_tchar(c)) return bad(400, "invalid method");
  for (unsigned char c : target)
    if (c <= 0x20 || c == 0x7F) return bad(400, "invalid character in the request target");
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
    return bad(400, "malformed HTTP version");
  if (version[5] != '1') return bad(505, "only HTTP/1.x is supported");
  out->method.assign(method);
  out->target.assign(target);
  out->http_minor = version[7] - '0';
  if (target.front() != '/') {
    // absolute-form (RFC 7230 5.3.2): keep the path and query.
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) return bad(400, "request target is not a path");
    size_t slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  size_t q = target.find('?');
  size_t frag = target.find('#');
  if (frag != std::string_view::npos) return bad(400, "fragment in the request target");
  out->path.assign(target.substr(0, q));
  if (q != std::string_view::npos) out->query.assign(target.substr(q + 1));
  bool too_many = false;
  std::string err = parse_header_lines(eol + 2, d + end, lim, &out->headers, &too_many);
  if (!err.empty()) return bad(too_many ? 431 : 400, err);
  r.status = ParseStatus::complete;
  r.consumed = end;
  return r;
}

UpgradeCheck check_upgrade(const Request& req) {
  UpgradeCheck c;
  std::string v;
  c.is_upgrade = has_token(req.headers, "Upgrade", "websocket");
  auto bad = [&](int status, const char* why) {
    c.error_status = status;
    c.error = why;
    return c;
  };
  if (!c.is_upgrade) return bad(426, "this endpoint speaks WebSocket: send Upgrade: websocket");
  if (req.method != "GET") return bad(405, "a WebSocket upgrade must use GET");
  if (req.http_minor < 1) return bad(400, "a WebSocket upgrade needs HTTP/1.1");
  if (count_header(req.headers, "Host") != 1) return bad(400, "exactly one Host header is required");
  if (!has_token(req.headers, "Connection", "upgrade"))
    return bad(400, "Connection header must contain the token \"upgrade\"");
  if (count_header(req.headers, "Sec-WebSocket-Key") != 1)
    return bad(400, "exactly one Sec-WebSocket-Key header is required");
  find_header(req.headers, "Sec-WebSocket-Key", &c.key);
  if (base64_decoded_len(c.key) != 16)
    return bad(400, "Sec-WebSocket-Key must be 16 bytes in base64");
  if (!find_header(req.headers, "Sec-WebSocket-Version", &v) || v != "13")
    return bad(426, "unsupported Sec-WebSocket-Version (13 is supported)");
  if (find_header(req.headers, "Sec-WebSocket-Protocol", &v)) c.subprotocols = split_list(v);
  if (find_header(req.headers, "Sec-WebSocket-Extensions", &v)) c.extensions = split_list(v);
  find_header(req.headers, "Origin", &c.origin);
  c.ok = true;
  return c;
}

std::string build_response_101(std::string_view key, std::string_view subprotocol,
                               std::string_view extensions, const Headers& extra) {
  std::string s;
  s.reserve(160 + subprotocol.size() + extensions.size());
  s += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: ";
  s += compute_accept(key);
  s += "\r\n";
  if (!subprotocol.empty()) {
    s += "Sec-WebSocket-Protocol: ";
    s += subprotocol;
    s += "\r\n";
  }
  if (!extensions.empty()) {
    s += "Sec-WebSocket-Extensions: ";
    s += extensions;
    s += "\r\n";
  }
  for (const auto& kv : extra) {
    s += kv.first;
    s += ": ";
    s += kv.second;
    s += "\r\n";
  }
  s += "\r\n";
  return s;
}

std::string build_error_response(int status, std::string_view body, const Headers& extra) {
  std::string s = "HTTP/1.1 " + std::to_string(status) + " ";
  s += reason_phrase(status);
  s += "\r\n";
  if (status == 426) s += "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n";
  bool has_type = false;
  for (const auto& kv : extra) {
    if (iequals(kv.first, "Content-Type")) has_type = true;
    s += kv.first + ": " + kv.second + "\r\n";
  }
  if (!has_type) s += "Content-Type: text/plain; charset=utf-8\r\n";
  s += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  s += body;
  return s;
}

std::string build_request(const ClientRequestSpec& spec) {
  std::string s = "GET " + spec.target + " HTTP/1.1\r\nHost: " + spec.host_header +
                  "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + spec.key +
                  "\r\nSec-WebSocket-Version: 13\r\n";
  if (!spec.subprotocols.empty()) {
    s += "Sec-WebSocket-Protocol: ";
    for (size_t i = 0; i < spec.subprotocols.size(); i++) {
      if (i) s += ", ";
      s += spec.subprotocols[i];
    }
    s += "\r\n";
  }
  if (!spec.extensions.empty()) s += "Sec-WebSocket-Extensions: " + spec.extensions + "\r\n";
  for (const auto& kv : spec.extra) s += kv.first + ": " + kv.second + "\r\n";
  s += "\r\n";
  return s;
}

ResponseParse parse_response(const char* d, size_t len, const HandshakeLimits& lim, Response* out) {
  ResponseParse r;
  size_t end = head_end(d, std::min(len, lim.max_head_size));
  if (!end) {
    if (len >= lim.max_head_size) {
      r.status = ParseStatus::error;
      r.error = "response head larger than the limit";
    }
    return r;
  }
  auto bad = [&](const char* why) {
    r.status = ParseStatus::error;
    r.error = why;
    return r;
  };
  *out = Response{};
  const char* eol = static_cast<const char*>(std::memchr(d, '\r', end));
  std::string_view line(d, static_cast<size_t>(eol - d));
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
      (line.size() > 12 && line[12] != ' '))
    return bad("malformed status line");
  for (int i = 9; i < 12; i++)
    if (line[i] < '0' || line[i] > '9') return bad("malformed status code");
  out->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (line.size() > 13) out->reason.assign(line.substr(13));
  bool too_many = false;
  std::string err = parse_header_lines(eol + 2, d + end, lim, &out->headers, &too_many);
  if (!err.empty()) {
    r.status = ParseStatus::error;
    r.error = err;
    return r;
  }
  r.status = ParseStatus::complete;
  r.consumed = end;
  return r;
}

ResponseCheck check_response(const Response& resp, std::string_view key,
                             const std::vector<std::string>& offered_subprotocols,
                             std::string_view offered_extensions) {
  ResponseCheck c;
  std::string v;
  if (resp.status != 101) {
    c.error = "server answered " + std::to_string(resp.status) + " " + resp.reason;
    return c;
  }
  if (!has_token(resp.headers, "Upgrade", "websocket")) {
    c.error = "response lacks Upgrade: websocket";
    return c;
  }
  if (!has_token(resp.headers, "Connection", "upgrade")) {
    c.error = "response lacks Connection: upgrade";
    return c;
  }
  if (!find_header(resp.headers, "Sec-WebSocket-Accept", &v) || v != compute_accept(key)) {
    c.error = "Sec-WebSocket-Accept mismatch";
    return c;
  }
  if (find_header(resp.headers, "Sec-WebSocket-Protocol", &v)) {
    bool offered = false;
    for (const auto& p : offered_subprotocols)
      if (p == v) offered = true;
    if (!offered) {
      c.error = "server chose a subprotocol we did not offer: " + v;
      return c;
    }
    c.subprotocol = v;
  }
  if (find_header(resp.headers, "Sec-WebSocket-Extensions", &v) && !v.empty()) {
    if (offered_extensions.empty()) {
      c.error = "server answered with an extension we did not offer: " + v;
      return c;
    }
    c.extensions = v;
  }
  c.ok = true;
  return c;
}

}  // namespace wscore::proto
