#include "net/url.hpp"

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
    out->host.assign(authority.substr(1, rb - 1));
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
  if (!out->host_is_ipv6 && out->host.find_first_of("[]") != std::string::npos) return "invalid host";
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
  if (rest.empty()) out->target = "/";
  else if (rest.front() == '?') out->target = "/" + std::string(rest);
  else out->target.assign(rest);
  std::string h = out->host_is_ipv6 ? "[" + out->host + "]" : out->host;
  if (port != (out->tls ? 443 : 80)) h += ":" + std::to_string(port);
  out->host_header = h;
  return "";
}

}  // namespace wscore::net
