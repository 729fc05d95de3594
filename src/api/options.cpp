// Options: plain setters with range checks. Copied by ws_open/ws_listen.
#include <cstring>
#include <new>

#include "api/internal.hpp"

namespace {
bool valid_timeout(int ms) { return ms >= -1; }
bool has_crlf(const char* s) { return std::strpbrk(s, "\r\n") != nullptr; }
}  // namespace

#define OPT_GUARD(expr)            \
  try {                            \
    expr;                          \
    return WS_OK;                  \
  } catch (const std::bad_alloc&) { \
    return WS_ENOMEM;              \
  }

extern "C" {

WS_EXTERN ws_options* ws_options_new(void) { return new (std::nothrow) ws_options(); }
WS_EXTERN void ws_options_free(ws_options* o) { delete o; }

WS_EXTERN int ws_options_set_connect_timeout(ws_options* o, int ms) {
  if (!o || !valid_timeout(ms)) return WS_EINVAL;
  o->connect_timeout = ms;
  return WS_OK;
}
WS_EXTERN int ws_options_set_handshake_timeout(ws_options* o, int ms) {
  if (!o || !valid_timeout(ms)) return WS_EINVAL;
  o->handshake_timeout = ms;
  return WS_OK;
}
WS_EXTERN int ws_options_set_close_timeout(ws_options* o, int ms) {
  if (!o || !valid_timeout(ms)) return WS_EINVAL;
  o->close_timeout = ms;
  return WS_OK;
}
WS_EXTERN int ws_options_set_idle_timeout(ws_options* o, int ms) {
  if (!o || !valid_timeout(ms) || ms == 0) return WS_EINVAL;
  o->idle_timeout = ms;
  return WS_OK;
}
WS_EXTERN int ws_options_set_keepalive(ws_options* o, int interval_ms, int timeout_ms) {
  if (!o || interval_ms < 0 || timeout_ms < 0) return WS_EINVAL;
  o->keepalive_interval = interval_ms;
  o->keepalive_timeout = timeout_ms;
  return WS_OK;
}
WS_EXTERN int ws_options_set_max_message_size(ws_options* o, uint64_t bytes) {
  if (!o || bytes == 0 || bytes > (uint64_t(1) << 62)) return WS_EINVAL;
  o->max_message_size = bytes;
  return WS_OK;
}
WS_EXTERN int ws_options_set_max_handshake_size(ws_options* o, size_t bytes) {
  if (!o || bytes < 256) return WS_EINVAL;
  o->max_handshake_size = bytes;
  return WS_OK;
}
WS_EXTERN int ws_options_set_send_queue_limit(ws_options* o, size_t bytes) {
  if (!o || bytes == 0) return WS_EINVAL;
  o->send_queue_limit = bytes;
  return WS_OK;
}
WS_EXTERN int ws_options_set_receive_queue_limit(ws_options* o, size_t bytes) {
  if (!o || bytes == 0) return WS_EINVAL;
  o->receive_queue_limit = bytes;
  return WS_OK;
}
WS_EXTERN int ws_options_set_send_timeout(ws_options* o, int ms) {
  if (!o || !valid_timeout(ms)) return WS_EINVAL;
  o->send_timeout = ms;
  return WS_OK;
}
WS_EXTERN int ws_options_add_header(ws_options* o, const char* name, const char* value) {
  if (!o || !name || !value) return WS_EINVAL;
  if (!wscore::proto::valid_header_name(name) || !wscore::proto::valid_header_value(value)) return WS_EINVAL;
  static const char* reserved[] = {"host", "upgrade", "connection", "content-length"};
  for (const char* r : reserved)
    if (strcasecmp(name, r) == 0) return WS_EINVAL;
  if (strncasecmp(name, "sec-websocket-", 14) == 0) return WS_EINVAL;
  OPT_GUARD(o->headers.emplace_back(name, value))
}
WS_EXTERN int ws_options_add_subprotocol(ws_options* o, const char* p) {
  if (!o || !p || !wscore::proto::valid_header_name(p)) return WS_EINVAL;
  OPT_GUARD(o->subprotocols.emplace_back(p))
}
WS_EXTERN int ws_options_add_origin(ws_options* o, const char* origin) {
  if (!o || !origin || !*origin || has_crlf(origin)) return WS_EINVAL;
  OPT_GUARD(o->origins.emplace_back(origin))
}
WS_EXTERN int ws_options_set_require_origin(ws_options* o, int require) {
  if (!o) return WS_EINVAL;
  o->require_origin = require != 0;
  return WS_OK;
}
WS_EXTERN int ws_options_set_deliver_control(ws_options* o, int enable) {
  if (!o) return WS_EINVAL;
  o->deliver_control = enable != 0;
  return WS_OK;
}
WS_EXTERN int ws_options_set_threads(ws_options* o, int threads) {
  if (!o || threads < 1 || threads > 256) return WS_EINVAL;
  o->threads = threads;
  return WS_OK;
}
WS_EXTERN int ws_options_set_manual_upgrade(ws_options* o, int enable) {
  if (!o) return WS_EINVAL;
  o->manual_upgrade = enable != 0;
  return WS_OK;
}

#define STRING_SETTER(fn, field)                      \
  WS_EXTERN int fn(ws_options* o, const char* v) {    \
    if (!o || !v) return WS_EINVAL;                   \
    OPT_GUARD(o->field = v)                           \
  }
STRING_SETTER(ws_options_set_tls_ca_file, tls_ca_file)
STRING_SETTER(ws_options_set_tls_ca_dir, tls_ca_dir)
STRING_SETTER(ws_options_set_tls_cert_file, tls_cert_file)
STRING_SETTER(ws_options_set_tls_key_file, tls_key_file)
STRING_SETTER(ws_options_set_tls_cert_pem, tls_cert_pem)
STRING_SETTER(ws_options_set_tls_key_pem, tls_key_pem)
#undef STRING_SETTER

WS_EXTERN int ws_options_set_tls_verify_client(ws_options* o, int enable) {
  if (!o) return WS_EINVAL;
  o->tls_verify_client = enable != 0;
  return WS_OK;
}
WS_EXTERN int ws_options_set_tls_insecure_skip_verify(ws_options* o, int enable) {
  if (!o) return WS_EINVAL;
  o->tls_insecure = enable != 0;
  return WS_OK;
}

WS_EXTERN int ws_options_set_callbacks(ws_options* o, const ws_callbacks* cbs, size_t size, void* user) {
  if (!o) return WS_EINVAL;
  if (!cbs) {
    o->callback_mode = false;
    o->cbs = ws_callbacks{};
    o->cb_user = nullptr;
    return WS_OK;
  }
  if (size == 0 || size % sizeof(void*) != 0) return WS_EINVAL;
  ws_callbacks c{};
  // Older callers pass a shorter struct: the members they lack stay NULL.
  std::memcpy(&c, cbs, size < sizeof c ? size : sizeof c);
  o->cbs = c;
  o->cb_user = user;
  o->callback_mode = true;
  return WS_OK;
}

}  // extern "C"
