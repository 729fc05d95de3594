/* A blocking echo server: ws_listen, then ws_accept in a loop and one thread
 * per connection that echoes every message until the peer closes.
 * Usage: echo_server [PORT]   (0 or none: a free port; prints "listening on PORT") */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <wscore.h>

static void *serve(void *arg) {
  ws_conn *ws = arg;
  ws_message *msg;
  /* ws_receive returns WS_ECLOSED once the peer closed (every earlier message first). */
  while (ws_receive(ws, &msg, -1) == WS_OK) {
    ws_send(ws, ws_message_data(msg), ws_message_size(msg), ws_message_type(msg));
    ws_message_free(msg);
  }
  printf("connection from %s closed: %d %s\n", ws_peer_address(ws), ws_close_code(ws), ws_close_reason(ws));
  fflush(stdout);
  ws_free(ws);
  return NULL;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  ws_server *srv;
  int rc = ws_listen("127.0.0.1", port, NULL, &srv);
  if (rc != WS_OK) {
    fprintf(stderr, "listen: %s\n", ws_strerror(rc));
    return 1;
  }
  printf("listening on %d\n", ws_server_port(srv));
  fflush(stdout);
  for (;;) {
    ws_conn *ws;
    rc = ws_accept(srv, &ws, -1);
    if (rc != WS_OK) break; /* WS_ECANCELED once the server is closed */
    pthread_t t;
    if (pthread_create(&t, NULL, serve, ws) != 0) {
      ws_free(ws);
      continue;
    }
    pthread_detach(t);
  }
  ws_server_free(srv);
  return 0;
}
