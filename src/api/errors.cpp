// ws_strerror / ws_err_name / ws_version: generated from the one error table.
#include <wscore.h>

extern "C" {

WS_EXTERN const char* ws_strerror(int err) {
  switch (err) {
    case WS_OK:
      return "success";
#define WS_STRERROR_CASE_(name, value, text) \
  case WS_##name:                            \
    return text;
    WS_ERRNO_MAP(WS_STRERROR_CASE_)
#undef WS_STRERROR_CASE_
    default:
      return "unknown error";
  }
}

WS_EXTERN const char* ws_err_name(int err) {
  switch (err) {
    case WS_OK:
      return "WS_OK";
#define WS_ERR_NAME_CASE_(name, value, text) \
  case WS_##name:                            \
    return "WS_" #name;
    WS_ERRNO_MAP(WS_ERR_NAME_CASE_)
#undef WS_ERR_NAME_CASE_
    default:
      return "WS_UNKNOWN";
  }
}

WS_EXTERN const char* ws_version(void) {
#define WS_STR2_(x) #x
#define WS_STR_(x) WS_STR2_(x)
  return WS_STR_(WSCORE_VERSION_MAJOR) "." WS_STR_(WSCORE_VERSION_MINOR) "." WS_STR_(
      WSCORE_VERSION_PATCH);
}

WS_EXTERN unsigned ws_version_number(void) { return WSCORE_VERSION_HEX; }

}  // extern "C"
