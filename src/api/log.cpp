// The process-wide logger (ws_set_logger).
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>

#include "api/internal.hpp"

namespace {
std::mutex g_mu;
ws_log_cb g_cb = nullptr;
void* g_user = nullptr;
std::atomic<int> g_level{0};
}  // namespace

namespace wscore::api {
void log(int level, const char* fmt, ...) {
  if (level > g_level.load(std::memory_order_relaxed)) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> g(g_mu);
  if (g_cb) g_cb(level, buf, g_user);
}
}  // namespace wscore::api

extern "C" WS_EXTERN int ws_set_logger(ws_log_cb cb, int level, void* user) {
  if (level < 0 || level > WS_LOG_DEBUG) return WS_EINVAL;
  std::lock_guard<std::mutex> g(g_mu);
  g_cb = cb;
  g_user = user;
  g_level = cb ? level : 0;
  return WS_OK;
}
