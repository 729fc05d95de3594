#include "api/headers.hpp"

#include <cstring>
#include <new>

namespace wscore::api {

void HeadBlock::assign(std::string_view target, std::string_view path, std::string_view query,
                       const proto::Headers& headers) {
  const size_t strings = kFixed + 2 * headers.size();
  size_t bytes = 4 + 4 * strings + target.size() + path.size() + query.size() + 3;
  for (const auto& kv : headers) bytes += kv.first.size() + kv.second.size() + 2;
  if (bytes > UINT32_MAX) throw std::bad_alloc();  // a head is bounded far below (max_handshake_size)
  std::unique_ptr<char[]> d(new char[bytes]);
  uint32_t at = static_cast<uint32_t>(4 + 4 * strings), k = 0;
  const uint32_t count = static_cast<uint32_t>(headers.size());
  std::memcpy(d.get(), &count, 4);
  auto put = [&](std::string_view s) {
    std::memcpy(d.get() + 4 + 4 * k++, &at, 4);
    if (!s.empty()) std::memcpy(d.get() + at, s.data(), s.size());
    at += static_cast<uint32_t>(s.size());
    d[at++] = 0;
  };
  put(target);
  put(path);
  put(query);
  for (const auto& kv : headers) {
    put(kv.first);
    put(kv.second);
  }
  data_ = std::move(d);
}

}  // namespace wscore::api
