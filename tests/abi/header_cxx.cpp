// The public header compiles as C++11 (pedantic) and links from C++.
#include <wscore.h>
#include <cstring>

int main() {
  if (std::strcmp(ws_strerror(WS_ETIMEDOUT), "operation timed out") != 0) return 1;
  ws_options* o = ws_options_new();
  if (!o) return 2;
  ws_options_free(o);
  return 0;
}
