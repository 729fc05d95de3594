/* libwebsockets echo server for the echo benchmark: one service thread,
 * every message (fragments joined) back with its type, several in flight per
 * connection kept in order. Prints "listening on PORT".
 *   echo_lws [PORT] [--tls CERT KEY]   (--tls: wss:// through lws's OpenSSL) */
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct msg {
  struct msg *next;
  size_t len;
  int binary;
  unsigned char *data; /* LWS_PRE bytes of headroom, then the payload */
} msg_t;

typedef struct {
  msg_t *head, *tail; /* echoes waiting for the socket to be writable */
  unsigned char *cur; /* the message being received */
  size_t cur_len, cur_cap;
  int cur_binary;
} conn_t;

static int grow(conn_t *c, size_t need) {
  if (LWS_PRE + need <= c->cur_cap) return 0;
  size_t cap = c->cur_cap ? c->cur_cap * 2 : 4096;
  while (cap < LWS_PRE + need) cap *= 2;
  unsigned char *p = realloc(c->cur, cap);
  if (!p) return -1;
  c->cur = p;
  c->cur_cap = cap;
  return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
  conn_t *c = user;
  switch (reason) {
    case LWS_CALLBACK_RECEIVE:
      if (lws_is_first_fragment(wsi)) {
        c->cur_len = 0;
        c->cur_binary = lws_frame_is_binary(wsi);
      }
      if (grow(c, c->cur_len + len)) return -1;
      memcpy(c->cur + LWS_PRE + c->cur_len, in, len);
      c->cur_len += len;
      if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
        msg_t *m = malloc(sizeof *m);
        if (!m) return -1;
        m->next = NULL;
        m->len = c->cur_len;
        m->binary = c->cur_binary;
        m->data = c->cur; /* hand the buffer over; the next message gets a new one */
        c->cur = NULL;
        c->cur_cap = 0;
        if (c->tail) c->tail->next = m;
        else c->head = m;
        c->tail = m;
        lws_callback_on_writable(wsi);
      }
      return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
      msg_t *m = c->head;
      if (!m) return 0;
      if (lws_write(wsi, m->data + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len)
        return -1;
      c->head = m->next;
      if (!c->head) c->tail = NULL;
      free(m->data);
      free(m);
      if (c->head) lws_callback_on_writable(wsi);
      return 0;
    }
    case LWS_CALLBACK_CLOSED:
      while (c->head) {
        msg_t *m = c->head;
        c->head = m->next;
        free(m->data);
        free(m);
      }
      free(c->cur);
      c->cur = NULL;
      return 0;
    default:
      return 0;
  }
}

static struct lws_protocols protocols[] = {
    {"echo", callback, sizeof(conn_t), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv) {
  lws_set_log_level(LLL_ERR, NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
      info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
      info.ssl_cert_filepath = argv[++i];
      info.ssl_private_key_filepath = argv[++i];
    } else {
      info.port = atoi(argv[i]);
    }
  }
  info.iface = "127.0.0.1";
  info.protocols = protocols;
  info.pt_serv_buf_size = 65536;
  info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  struct lws_context *ctx = lws_create_context(&info);
  if (!ctx) {
    fprintf(stderr, "echo_lws: lws_create_context failed\n");
    return 1;
  }
  struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
  printf("listening on %d\n", vh ? lws_get_vhost_listen_port(vh) : -1);
  fflush(stdout);
  while (lws_service(ctx, 0) >= 0) {
  }
  lws_context_destroy(ctx);
  return 0;
}
