#include "net/url.hpp"

#include <arpa/inet.h>

namespace wscore::net {

namespace {
bool starts_with_ci(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < p.size(); i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != p[i]) return false;
  }
  return true;
}
// A DNS name or IPv4 address: what getaddrinfo can take without surprises.
// Percent-encoding and the other sub-delims of RFC 3986 are refused rather
// than passed to the resolver as they are.
bool valid_reg_name(std::string_view h) {
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// An IPv6 literal, with an optional zone ("fe80::1%25eth0", RFC 6874) that
// the resolver wants as "%eth0".
bool parse_ipv6(std::string_view lit, std::string* host) {
  std::string addr(lit);
  std::string zone;
  size_t pct = addr.find('%');
  if (pct != std::string::npos) {
    if (addr.compare(pct, 3, "%25") != 0 || pct + 3 == addr.size()) return false;
    zone = addr.substr(pct + 3);
    addr.resize(pct);
    if (!valid_reg_name(zone)) return false;
  }
  in6_addr a;
  if (inet_pton(AF_INET6, addr.c_str(), &a) != 1) return false;
  *host = zone.empty() ? addr : addr + "%" + zone;
  return true;
}

}  // namespace

std::string parse_url(std::string_view url, Url* out) {
  *out = Url{};
  if (starts_with_ci(url, "wss://")) {
    out->tls = true;
    url.remove_prefix(6);
  } else if (starts_with_ci(url, "ws://")) {
    url.remove_prefix(5);
  } else {
    return "URL scheme must be ws:// or wss://";
  }
  for (unsigned char c : url)
    if (c <= 0x20 || c == 0x7F) return "URL contains whitespace or control characters";
  size_t end = url.find_first_of("/?#");
  std::string_view authority = url.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view() : url.substr(end);
  if (!rest.empty() && rest.front() == '#') return "fragments are not allowed in WebSocket URLs";
  if (rest.find('#') != std::string_view::npos) return "fragments are not allowed in WebSocket URLs";
  if (authority.find('@') != std::string_view::npos) return "user information in the URL is not supported";
  std::string_view port_str;
  if (!authority.empty() && authority.front() == '[') {
    size_t rb = authority.find(']');
    if (rb == std::string_view::npos) return "unterminated IPv6 address";
    if (!parse_ipv6(authority.substr(1, rb - 1), &out->host)) return "invalid IPv6 address";
    out->host_is_ipv6 = true;
    std::string_view after = authority.substr(rb + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "junk after the IPv6 address";
      port_str = after.substr(1);
      if (port_str.empty()) return "empty port";
    }
  } else {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      port_str = authority.substr(colon + 1);
      authority = authority.substr(0, colon);
      if (port_str.empty()) return "empty port";
    }
    out->host.assign(authority);
  }
  if (out->host.empty()) return "URL has no host";
  if (!out->host_is_ipv6 && !valid_reg_name(out->host)) return "invalid character in the host";
  int port = out->tls ? 443 : 80;
  if (!port_str.empty()) {
    port = 0;
    for (char c : port_str) {
      if (c < '0' || c > '9') return "port is not a number";
      port = port * 10 + (c - '0');
      if (port > 65535) return "port out of range";
    }
    if (port == 0) return "port 0 is not connectable";
  }
  out->port = port;
  // Bytes beyond ASCII are percent-encoded, as browsers do: a request target
  // is ASCII on the wire.
  std::string target = rest.empty() || rest.front() == '?' ? "/" : "";
  static const char hex[] = "0123456789ABCDEF";
  for (unsigned char c : rest) {
    if (c < 0x80) {
      target += static_cast<char>(c);
    } else {
      target += '%';
      target += hex[c >> 4];
      target += hex[c & 15];
    }
  }
  out->target = std::move(target);
  std::string h = out->host_is_ipv6 ? "[" + std::string(authority.substr(1, authority.find(']') - 1)) + "]" : out->host;
  if (port != (out->tls ? 443 : 80)) h += ":" + std::to_string(port);
  out->host_header = h;
  return "";
}

}  // namespace wscore::net
