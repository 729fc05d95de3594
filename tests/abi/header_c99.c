/* The public header compiles as strict C99 and every declared function links. */
#include <wscore.h>
#include <string.h>

int main(void) {
  /* Touch a few symbols so the link resolves them; behaviour is tested elsewhere. */
  if (strcmp(ws_err_name(WS_EINVAL), "WS_EINVAL") != 0) return 1;
  if (ws_version_number() != WSCORE_VERSION_HEX) return 2;
  return 0;
}
