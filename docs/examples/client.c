/* A client: connect, send a text and a binary message, read the echoes, close.
 * Usage: client URL */
#include <stdio.h>
#include <string.h>
#include <wscore.h>

static int fail(const char *what, int rc, ws_conn *ws) {
  fprintf(stderr, "%s: %s%s%s\n", what, ws_strerror(rc), ws && *ws_error_detail(ws) ? ": " : "",
          ws ? ws_error_detail(ws) : "");
  ws_free(ws);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: client ws://host:port/path\n");
    return 2;
  }
  ws_options *opts = ws_options_new();
  ws_options_set_connect_timeout(opts, 5000);
  ws_conn *ws;
  int rc = ws_open(argv[1], opts, &ws);
  ws_options_free(opts); /* ws_open copied what it needs */
  if (rc != WS_OK) return fail("open", rc, ws);

  const char *text = "hello, wscore \xe2\x9c\x93";
  const unsigned char bin[4] = {0xde, 0xad, 0xbe, 0xef};
  if ((rc = ws_send(ws, text, strlen(text), WS_TEXT)) != WS_OK) return fail("send", rc, ws);
  if ((rc = ws_send(ws, bin, sizeof bin, WS_BINARY)) != WS_OK) return fail("send", rc, ws);

  for (int i = 0; i < 2; i++) {
    ws_message *msg;
    if ((rc = ws_receive(ws, &msg, 5000)) != WS_OK) return fail("receive", rc, ws);
    if (ws_message_type(msg) == WS_TEXT)
      printf("text: %s\n", (const char *)ws_message_data(msg)); /* NUL-terminated */
    else
      printf("binary: %zu bytes\n", ws_message_size(msg));
    ws_message_free(msg);
  }
  rc = ws_close(ws, WS_CLOSE_NORMAL, "bye");
  printf("closed: %s, code %d\n", rc == WS_OK ? "the server answered" : ws_strerror(rc), ws_close_code(ws));
  ws_free(ws);
  return rc == WS_OK ? 0 : 1;
}
