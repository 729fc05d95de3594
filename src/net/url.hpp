// ws:// and wss:// URL parsing (RFC 6455 section 3).
#pragma once

#include <string>
#include <string_view>

namespace wscore::net {

struct Url {
  bool tls = false;
  std::string host;         // without brackets for IPv6
  bool host_is_ipv6 = false;
  int port = 0;
  std::string target;       // "/path?query", "/" when empty
  std::string host_header;  // Host header value: host, [v6], with :port unless default
};

// Returns "" on success, else why the URL is invalid.
std::string parse_url(std::string_view url, Url* out);

}  // namespace wscore::net
