/* An echo server in callback mode: on_message runs on the library's loop
 * thread with a borrowed buffer, and ws_send there writes without a thread hop.
 * Usage: callback_echo_server [PORT] [SECONDS]  (serves for SECONDS, default 30) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <wscore.h>

static void on_open(ws_conn *ws, void *user) {
  (void)user;
  printf("open from %s\n", ws_peer_address(ws));
  fflush(stdout);
}

static void on_message(ws_conn *ws, int type, const void *data, size_t len, void *user) {
  (void)user;
  ws_send(ws, data, len, type); /* `data` is only valid during this call */
}

static void on_close(ws_conn *ws, int code, const char *reason, void *user) {
  (void)ws;
  (void)user;
  printf("closed: %d %s\n", code, reason);
  fflush(stdout);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int seconds = argc > 2 ? atoi(argv[2]) : 30;
  ws_callbacks cbs = {.on_open = on_open, .on_message = on_message, .on_close = on_close};
  ws_options *opts = ws_options_new();
  ws_options_set_callbacks(opts, &cbs, sizeof cbs, NULL);
  ws_server *srv;
  int rc = ws_listen("127.0.0.1", port, opts, &srv);
  ws_options_free(opts);
  if (rc != WS_OK) {
    fprintf(stderr, "listen: %s\n", ws_strerror(rc));
    return 1;
  }
  printf("listening on %d\n", ws_server_port(srv));
  fflush(stdout);
  sleep((unsigned)seconds);
  ws_server_free(srv); /* closes every connection with 1001 */
  return 0;
}
