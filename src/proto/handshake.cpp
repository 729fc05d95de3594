#include "proto/handshake.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
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
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// field-content: VCHAR, obs-text, SP, HTAB. Everything else (CR, LF, NUL, the
// other controls, DEL) could split or truncate a header on its way out.
bool is_field_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

std::string base64(const unsigned char* p, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

// Decoded length of padded base64, or -1 when it is not base64.
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
  for (const auto& kv : h) {
    if (!iequals(kv.first, name)) continue;
    for (const auto& t : split_list(kv.second))
      if (iequals(t, token)) return true;
  }
  return false;
}

size_t count_header(const Headers& h, std::string_view name) {
  size_t n = 0;
  for (const auto& kv : h)
    if (iequals(kv.first, name)) n++;
  return n;
}

// Why a head was refused: the message, and for a request the status to answer.
struct HeadError {
  int status = 0;  // 0: no error
  std::string why;
};

HeadError head_error(int status, std::string why) { return HeadError{status, std::move(why)}; }

// One header line (without its CRLF) checked and, when `out` is given, stored.
HeadError parse_header_line(std::string_view line, Headers* out) {
  if (is_ows(line.front()))
    return head_error(400, "obsolete line folding (a header line starting with whitespace) is not accepted");
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return head_error(400, "header line without a colon");
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return head_error(400, "header line with an empty field name");
  if (is_ows(name.back()))
    return head_error(400, "whitespace between a header field name and its colon");
  if (!is_token(name)) return head_error(400, "invalid character in a header field name");
  std::string_view value = trim_ows(line.substr(colon + 1));
  for (unsigned char c : value)
    if (!is_field_char(c)) return head_error(400, "control character in a header value");
  if (out) out->emplace_back(name, value);
  return {};
}

// Walks a head line by line, strictly: every line ends with CRLF, no bare CR
// or LF anywhere (a lenient reading of line ends is what request smuggling
// feeds on), no control character, the head ends at the first empty line.
// `start_line` judges the first line. With `out` == nullptr only validates.
// The verdict depends only on complete lines, so a prefix of a valid head is
// never an error: callers see `incomplete` until the blank line.
template <class StartLine>
ParseStatus scan_head(const char* d, size_t len, const HandshakeLimits& lim, StartLine start_line,
                      Headers* out, size_t* consumed, HeadError* err) {
  const size_t limit = std::min(len, lim.max_head_size);
  size_t pos = 0;
  size_t nheaders = 0;
  bool first = true;
  for (;;) {
    const char* nl = static_cast<const char*>(std::memchr(d + pos, '\n', limit - pos));
    if (!nl) {
      // A partial line can already be hopeless (a TLS ClientHello on a plain
      // port, a binary peer): say so now rather than at the size limit.
      if (!first && pos < limit && is_ows(d[pos])) {
        *err = parse_header_line(std::string_view(d + pos, limit - pos), nullptr);
        return ParseStatus::error;
      }
      for (size_t i = pos; i < limit; i++) {
        unsigned char c = static_cast<unsigned char>(d[i]);
        if (c == '\r' && i + 1 == limit) break;
        if (!is_field_char(c)) {
          *err = head_error(400, c == '\r' ? "CR not followed by LF" : "control character in the head");
          return ParseStatus::error;
        }
      }
      if (len >= lim.max_head_size) {
        *err = head_error(431, "head larger than the limit of " + std::to_string(lim.max_head_size) +
                                   " bytes");
        return ParseStatus::error;
      }
      return ParseStatus::incomplete;
    }
    size_t eol = static_cast<size_t>(nl - d);
    if (eol == pos || d[eol - 1] != '\r') {
      *err = head_error(400, "line ended by a bare LF (CRLF is required)");
      return ParseStatus::error;
    }
    std::string_view line(d + pos, eol - 1 - pos);
    for (unsigned char c : line)
      if (!is_field_char(c)) {
        *err = head_error(400, c == '\r' ? "CR not followed by LF" : "control character in the head");
        return ParseStatus::error;
      }
    pos = eol + 1;
    if (first) {
      first = false;
      *err = start_line(line);
      if (err->status) return ParseStatus::error;
      continue;
    }
    if (line.empty()) {
      *consumed = pos;
      return ParseStatus::complete;
    }
    if (++nheaders > lim.max_headers) {
      *err = head_error(431, "more than " + std::to_string(lim.max_headers) + " header fields");
      return ParseStatus::error;
    }
    *err = parse_header_line(line, out);
    if (err->status) return ParseStatus::error;
  }
}

// The request line; fills `out` when given.
HeadError parse_request_line(std::string_view line, Request* out) {
  if (line.empty()) return head_error(400, "empty request line");
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return head_error(400, "malformed request line (want METHOD SP target SP HTTP/1.1)");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return head_error(400, "invalid method");
  if (target.empty()) return head_error(400, "empty request target");
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7F) return head_error(400, "control character in the request target");
    if (c >= 0x80) return head_error(400, "non-ASCII byte in the request target (percent-encode it)");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
    return head_error(400, "malformed HTTP version");
  if (version[5] != '1') return head_error(505, "only HTTP/1.x is supported");
  std::string_view origin_form = target;
  if (target.front() != '/') {
    // absolute-form (RFC 7230 5.3.2): scheme "://" authority [path-abempty] ["?" query]
    size_t colon = target.find("://");
    bool scheme_ok = colon != std::string_view::npos && colon > 0 &&
                     ((target[0] | 0x20) >= 'a' && (target[0] | 0x20) <= 'z');
    for (size_t i = 0; scheme_ok && i < colon; i++) {
      char c = target[i];
      scheme_ok = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                  c == '-' || c == '.';
    }
    if (!scheme_ok) return head_error(400, "request target is neither a path nor an absolute URI");
    size_t rest = target.find_first_of("/?", colon + 3);
    if (rest == colon + 3) return head_error(400, "absolute URI without a host");
    origin_form = rest == std::string_view::npos ? std::string_view() : target.substr(rest);
  }
  if (target.find('#') != std::string_view::npos)
    return head_error(400, "fragment in the request target");
  if (out) {
    out->method.assign(method);
    out->target.assign(target);
    out->http_minor = version[7] - '0';
    size_t q = origin_form.find('?');
    std::string_view path = origin_form.substr(0, q);
    out->path.assign(path.empty() ? std::string_view("/") : path);
    if (q != std::string_view::npos) out->query.assign(origin_form.substr(q + 1));
  }
  return {};
}

// The status line; fills `out` when given. "HTTP/1.1 101" without the SP and
// empty reason that RFC 7230 asks for is accepted: servers do send it, and a
// client loses nothing by reading it.
HeadError parse_status_line(std::string_view line, Response* out) {
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[6] != '.' || line[8] != ' ' ||
      line[5] < '0' || line[5] > '9' || line[7] < '0' || line[7] > '9' ||
      (line.size() > 12 && line[12] != ' '))
    return head_error(400, "malformed status line");
  if (line[5] != '1') return head_error(400, "the server answered in an HTTP version other than 1.x");
  for (size_t i = 9; i < 12; i++)
    if (line[i] < '0' || line[i] > '9') return head_error(400, "malformed status code");
  if (out) {
    out->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (line.size() > 13) out->reason.assign(line.substr(13));
  }
  return {};
}

// RFC 6455 9.1: extension *( ";" param ), param = token [ "=" (token / quoted-string) ].
// Splits at the commas between entries (a quoted value may hold commas and
// semicolons); false on bad syntax. Entries are kept as sent, trimmed.
bool parse_extension_list(std::string_view v, std::vector<std::string>* out) {
  size_t i = 0;
  const size_t n = v.size();
  auto skip_ows = [&] {
    while (i < n && is_ows(v[i])) i++;
  };
  auto token = [&] {
    size_t start = i;
    while (i < n && is_tchar(static_cast<unsigned char>(v[i]))) i++;
    return i > start;
  };
  for (;;) {
    skip_ows();
    if (i == n) return true;
    if (v[i] == ',') {  // RFC 7230 7: empty list elements are ignored
      i++;
      continue;
    }
    size_t start = i;
    if (!token()) return false;
    for (;;) {
      skip_ows();
      if (i == n || v[i] == ',') break;
      if (v[i] != ';') return false;
      i++;
      skip_ows();
      if (!token()) return false;
      skip_ows();
      if (i == n || v[i] != '=') continue;
      i++;
      skip_ows();
      if (i < n && v[i] == '"') {
        for (i++; i < n && v[i] != '"'; i++)
          if (v[i] == '\\' && ++i == n) return false;
        if (i == n) return false;
        i++;
      } else if (!token()) {
        return false;
      }
    }
    out->emplace_back(trim_ows(v.substr(start, i - start)));
  }
}

std::string_view extension_name(std::string_view entry) {
  return trim_ows(entry.substr(0, entry.find(';')));
}

// SHA-1 fetched once: with EVP_sha1() OpenSSL 3 looks the algorithm up in its
// provider tables on every digest (compute_accept: 440 -> 220 ns here). Never
// freed: it lives as long as the process, like OpenSSL's own tables.
const EVP_MD* sha1() {
  static const EVP_MD* md = [] {
    const EVP_MD* m = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    return m ? m : EVP_sha1();
  }();
  return md;
}

}  // namespace

bool valid_header_name(std::string_view name) { return is_token(name); }

bool valid_header_value(std::string_view value) {
  for (unsigned char c : value)
    if (!is_field_char(c)) return false;
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
    std::string_view t = trim_ows(v.substr(i, j - i));
    if (!t.empty()) out.emplace_back(t);
    i = j + 1;
  }
  return out;
}

std::vector<std::string> split_extensions(std::string_view v, bool* ok) {
  std::vector<std::string> out;
  bool good = parse_extension_list(v, &out);
  if (ok) *ok = good;
  if (!good) out.clear();
  return out;
}

std::string compute_accept(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return {};
  bool ok = EVP_DigestInit_ex(ctx, sha1(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
            EVP_DigestUpdate(ctx, kGuid, sizeof(kGuid) - 1) == 1 &&
            EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return {};
  return base64(md, mdlen);
}

std::string generate_key() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return {};
  return base64(raw, sizeof raw);
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: break;
  }
  // RFC 9110 15: an unknown code is understood as the x00 of its class.
  if (status >= 100 && status < 200) return "Informational";
  if (status >= 200 && status < 300) return "Success";
  if (status >= 300 && status < 400) return "Redirection";
  if (status >= 400 && status < 500) return "Client Error";
  if (status >= 500 && status < 600) return "Server Error";
  return "Unknown";
}

RequestParse parse_request(const char* d, size_t len, const HandshakeLimits& lim, Request* out) {
  RequestParse r;
  HeadError err;
  size_t consumed = 0;
  // Most calls see either a partial head (validate only, store nothing: the
  // caller calls again with more) or the whole head at once.
  const size_t limit = std::min(len, lim.max_head_size);
  bool whole = limit >= 4 && memmem(d, limit, "\r\n\r\n", 4) != nullptr;
  if (whole) *out = Request{};
  Request* sink = whole ? out : nullptr;
  r.status = scan_head(
      d, len, lim, [&](std::string_view line) { return parse_request_line(line, sink); },
      sink ? &sink->headers : nullptr, &consumed, &err);
  if (r.status == ParseStatus::complete) {
    r.consumed = consumed;
  } else if (r.status == ParseStatus::error) {
    r.error_status = err.status;
    r.error = std::move(err.why);
  }
  return r;
}

UpgradeCheck check_upgrade(const Request& req) {
  UpgradeCheck c;
  std::string v;
  c.is_upgrade = has_token(req.headers, "Upgrade", "websocket");
  auto bad = [&](int status, std::string why) {
    c.error_status = status;
    c.error = std::move(why);
    return c;
  };
  if (!c.is_upgrade)
    return bad(426, "this endpoint speaks WebSocket: the request lacks Upgrade: websocket");
  if (req.method != "GET") return bad(405, "a WebSocket upgrade must use GET, not " + req.method);
  if (req.http_minor < 1) return bad(400, "a WebSocket upgrade needs HTTP/1.1");
  if (count_header(req.headers, "Host") != 1) return bad(400, "exactly one Host header is required");
  if (!has_token(req.headers, "Connection", "upgrade"))
    return bad(400, "the Connection header must contain the token \"upgrade\"");
  size_t nkeys = count_header(req.headers, "Sec-WebSocket-Key");
  if (nkeys == 0) return bad(400, "Sec-WebSocket-Key is missing");
  if (nkeys > 1) return bad(400, "more than one Sec-WebSocket-Key header");
  find_header(req.headers, "Sec-WebSocket-Key", &c.key);
  if (base64_decoded_len(c.key) != 16)
    return bad(400, "Sec-WebSocket-Key must be 16 bytes in base64");
  if (!find_header(req.headers, "Sec-WebSocket-Version", &v))
    return bad(426, "Sec-WebSocket-Version is missing (13 is supported)");
  if (v != "13") return bad(426, "unsupported Sec-WebSocket-Version " + v + " (13 is supported)");
  if (find_header(req.headers, "Sec-WebSocket-Protocol", &v)) {
    c.subprotocols = split_list(v);
    for (const auto& p : c.subprotocols)
      if (!is_token(p)) return bad(400, "Sec-WebSocket-Protocol must be a list of tokens");
  }
  if (find_header(req.headers, "Sec-WebSocket-Extensions", &v)) {
    bool ok = false;
    c.extensions = split_extensions(v, &ok);
    if (!ok) return bad(400, "malformed Sec-WebSocket-Extensions");
  }
  find_header(req.headers, "Origin", &c.origin);
  c.ok = true;
  return c;
}

namespace {

bool valid_extra(const Headers& extra) {
  for (const auto& kv : extra)
    if (!valid_header_name(kv.first) || !valid_header_value(kv.second)) return false;
  return true;
}

void append_header(std::string* s, std::string_view name, std::string_view value) {
  s->append(name);
  s->append(": ");
  s->append(value);
  s->append("\r\n");
}

size_t extra_size(const Headers& extra) {
  size_t n = 0;
  for (const auto& kv : extra) n += kv.first.size() + kv.second.size() + 4;
  return n;
}

}  // namespace

std::string build_response_101(std::string_view key, std::string_view subprotocol,
                               std::string_view extensions, const Headers& extra) {
  if (!valid_header_value(key) || !valid_header_value(subprotocol) ||
      !valid_header_value(extensions) || !valid_extra(extra))
    return {};
  std::string s;
  s.reserve(160 + subprotocol.size() + extensions.size() + extra_size(extra));
  s += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
  append_header(&s, "Sec-WebSocket-Accept", compute_accept(key));
  if (!subprotocol.empty()) append_header(&s, "Sec-WebSocket-Protocol", subprotocol);
  if (!extensions.empty()) append_header(&s, "Sec-WebSocket-Extensions", extensions);
  for (const auto& kv : extra) append_header(&s, kv.first, kv.second);
  s += "\r\n";
  return s;
}

std::string build_error_response(int status, std::string_view body, const Headers& extra) {
  if (!valid_extra(extra)) return {};
  // A status outside 100..599 cannot be sent: answer as a server fault.
  if (status < 100 || status > 599) status = 500;
  std::string s;
  s.reserve(160 + body.size() + extra_size(extra));
  s += "HTTP/1.1 ";
  s += std::to_string(status);
  s += ' ';
  s += reason_phrase(status);
  s += "\r\n";
  // RFC 6455 4.4 and RFC 9110 15.5.22: a 426 names what to upgrade to; RFC
  // 9110 15.5.6: a 405 names the allowed methods.
  if (status == 426) s += "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n";
  if (status == 405) s += "Allow: GET\r\n";
  bool has_type = false;
  for (const auto& kv : extra) {
    if (iequals(kv.first, "Content-Type")) has_type = true;
    append_header(&s, kv.first, kv.second);
  }
  if (!has_type) s += "Content-Type: text/plain; charset=utf-8\r\n";
  s += "Content-Length: ";
  s += std::to_string(body.size());
  s += "\r\nConnection: close\r\n\r\n";
  s += body;
  return s;
}

std::string build_request(const ClientRequestSpec& spec) {
  if (spec.target.empty() || !valid_header_value(spec.target) ||
      spec.target.find_first_of(" \t") != std::string::npos || spec.host_header.empty() ||
      !valid_header_value(spec.host_header) || !valid_header_value(spec.key) ||
      !valid_header_value(spec.extensions) || !valid_extra(spec.extra))
    return {};
  for (const auto& p : spec.subprotocols)
    if (!is_token(p)) return {};
  std::string s;
  s.reserve(200 + spec.target.size() + spec.host_header.size() + spec.extensions.size() +
            extra_size(spec.extra) + 16 * spec.subprotocols.size());
  s += "GET ";
  s += spec.target;
  s += " HTTP/1.1\r\n";
  append_header(&s, "Host", spec.host_header);
  s += "Upgrade: websocket\r\nConnection: Upgrade\r\n";
  append_header(&s, "Sec-WebSocket-Key", spec.key);
  s += "Sec-WebSocket-Version: 13\r\n";
  if (!spec.subprotocols.empty()) {
    s += "Sec-WebSocket-Protocol: ";
    for (size_t i = 0; i < spec.subprotocols.size(); i++) {
      if (i) s += ", ";
      s += spec.subprotocols[i];
    }
    s += "\r\n";
  }
  if (!spec.extensions.empty()) append_header(&s, "Sec-WebSocket-Extensions", spec.extensions);
  for (const auto& kv : spec.extra) append_header(&s, kv.first, kv.second);
  s += "\r\n";
  return s;
}

ResponseParse parse_response(const char* d, size_t len, const HandshakeLimits& lim, Response* out) {
  ResponseParse r;
  HeadError err;
  size_t consumed = 0;
  const size_t limit = std::min(len, lim.max_head_size);
  bool whole = limit >= 4 && memmem(d, limit, "\r\n\r\n", 4) != nullptr;
  if (whole) *out = Response{};
  Response* sink = whole ? out : nullptr;
  r.status = scan_head(
      d, len, lim, [&](std::string_view line) { return parse_status_line(line, sink); },
      sink ? &sink->headers : nullptr, &consumed, &err);
  if (r.status == ParseStatus::complete) r.consumed = consumed;
  else if (r.status == ParseStatus::error) r.error = std::move(err.why);
  return r;
}

ResponseCheck check_response(const Response& resp, std::string_view key,
                             const std::vector<std::string>& offered_subprotocols,
                             std::string_view offered_extensions) {
  ResponseCheck c;
  std::string v;
  auto bad = [&](std::string why) {
    c.error = std::move(why);
    return c;
  };
  if (resp.status != 101) {
    std::string why = "server answered " + std::to_string(resp.status);
    if (!resp.reason.empty()) why += " " + resp.reason;
    return bad(std::move(why));
  }
  if (!has_token(resp.headers, "Upgrade", "websocket"))
    return bad("response lacks Upgrade: websocket");
  if (!has_token(resp.headers, "Connection", "upgrade"))
    return bad("response lacks Connection: upgrade");
  size_t naccept = count_header(resp.headers, "Sec-WebSocket-Accept");
  if (naccept == 0) return bad("response lacks Sec-WebSocket-Accept");
  find_header(resp.headers, "Sec-WebSocket-Accept", &v);
  std::string expected = compute_accept(key);
  if (expected.empty()) return bad("cannot compute Sec-WebSocket-Accept (OpenSSL SHA-1 failed)");
  if (naccept > 1 || v != expected) return bad("Sec-WebSocket-Accept mismatch");
  if (find_header(resp.headers, "Sec-WebSocket-Protocol", &v)) {
    if (std::find(offered_subprotocols.begin(), offered_subprotocols.end(), v) ==
        offered_subprotocols.end())
      return bad("server chose a subprotocol we did not offer: \"" + v + "\"");
    c.subprotocol = v;
  }
  if (find_header(resp.headers, "Sec-WebSocket-Extensions", &v)) {
    bool ok = false;
    std::vector<std::string> answered = split_extensions(v, &ok);
    if (!ok) return bad("malformed Sec-WebSocket-Extensions in the response");
    if (!answered.empty() && offered_extensions.empty())
      return bad("server answered with an extension we did not offer: " + v);
    std::vector<std::string> offered = split_extensions(offered_extensions, nullptr);
    for (const auto& a : answered) {
      std::string_view name = extension_name(a);
      bool found = false;
      for (const auto& o : offered)
        if (iequals(extension_name(o), name)) found = true;
      if (!found)
        return bad("server answered with an extension we did not offer: " + std::string(name));
    }
    c.extensions = v;
  }
  c.ok = true;
  return c;
}

}  // namespace wscore::proto
