// `wscore connect`: an interactive client in the manner of wscat. One thread
// polls stdin, the connection's readiness descriptor and a signal pipe, so a
// message that arrives while the user types is printed at once.
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <wscore.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli.hpp"

namespace wscli {
namespace {

void usage() {
  std::puts(
      "usage: wscore connect URL [options]\n"
      "  Opens a WebSocket (ws:// or wss://). Each line of stdin goes out as one text\n"
      "  message (--binary: binary); every message received is printed on stdout:\n"
      "  text as '< TEXT', binary as '< [binary, N bytes] HEX...' (at most 64 bytes shown).\n"
      "  At EOF on stdin it waits until a message came back for each one sent (or for\n"
      "  --linger MS of silence), then closes with 1000; SIGINT/SIGTERM close at once.\n"
      "  The close code and reason"
      " go to stderr. Exit status: 0 after a normal close (1000/1001), 1 otherwise.\n"
      "options:\n"
      "  -H, --header 'Name: value'   add a request header (repeatable)\n"
      "  --subprotocol P              offer a subprotocol (repeatable, in order of preference)\n"
      "  --binary                     send lines as binary messages\n"
      "  --cacert FILE                trust this CA (PEM) for wss:// instead of the system store\n"
      "  --insecure                   DANGEROUS: accept any server certificate and host name\n"
      "  --timeout MS                 limit for connect + TLS + upgrade (default 10000)\n"
      "  --max-message BYTES          largest message accepted (default 16 MiB)\n"
      "  --linger MS                  at EOF, wait at most this long for a reply (default 1000)");
}

int g_signal_pipe[2] = {-1, -1};

void on_signal(int) {
  char c = 1;
  ssize_t r = write(g_signal_pipe[1], &c, 1);
  (void)r;
}

void print_message(ws_message* m) {
  const auto* d = static_cast<const unsigned char*>(ws_message_data(m));
  size_t n = ws_message_size(m);
  if (ws_message_type(m) == WS_TEXT) {
    std::printf("< %.*s\n", static_cast<int>(n), reinterpret_cast<const char*>(d));
  } else {
    std::printf("< [binary, %zu bytes]", n);
    for (size_t i = 0; i < n && i < 64; i++) std::printf(" %02x", d[i]);
    std::printf(n > 64 ? " ...\n" : "\n");
  }
  std::fflush(stdout);
}

long g_received = 0;

// Prints every message already received; WS_ECLOSED once the peer's close is in.
int drain(ws_conn* ws) {
  ws_message* m = nullptr;
  int rc;
  while ((rc = ws_receive(ws, &m, 0)) == WS_OK) {
    print_message(m);
    ws_message_free(m);
    g_received++;
  }
  return rc;
}

int closed_by_server(ws_conn* ws) {
  int code = ws_close_code(ws);
  std::fprintf(stderr, "closed by the server: %d %s\n", code, ws_close_reason(ws));
  ws_free(ws);
  return code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ? 0 : 1;
}

}  // namespace

int cmd_connect(int argc, char** argv) {
  const char* url = nullptr;
  int type = WS_TEXT;
  int linger_ms = 1000;
  Options opts(ws_options_new());
  if (!opts) return 1;
  ws_options* o = opts.get();
  Args a("connect", argc, argv);
  auto check = [&](int rc, const std::string& what) {
    if (rc != WS_OK) a.fail(what + ": " + ws_strerror(rc));
  };
  while (a.next()) {
    if (a.is("-h", "--help")) {
      usage();
      return 0;
    } else if (a.is("--binary")) {
      type = WS_BINARY;
    } else if (a.is("-H", "--header")) {
      std::string h = a.value();
      size_t colon = h.find(':');
      if (colon == std::string::npos || colon == 0) a.fail("a header is 'Name: value', not '" + h + "'");
      std::string name = h.substr(0, colon), value = h.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t") == std::string::npos ? value.size()
                                                                         : value.find_first_not_of(" \t"));
      check(ws_options_add_header(o, name.c_str(), value.c_str()), "header '" + name + "' refused");
    } else if (a.is("--subprotocol")) {
      check(ws_options_add_subprotocol(o, a.value()), "subprotocol refused");
    } else if (a.is("--cacert")) {
      check(ws_options_set_tls_ca_file(o, a.value()), "--cacert");
    } else if (a.is("--insecure")) {
      std::fprintf(stderr, "wscore connect: WARNING: --insecure: the server's certificate is NOT verified\n");
      check(ws_options_set_tls_insecure_skip_verify(o, 1), "--insecure");
    } else if (a.is("--timeout")) {
      check(ws_options_set_connect_timeout(o, static_cast<int>(a.integer(1, 3600000))), "--timeout");
    } else if (a.is("--max-message")) {
      check(ws_options_set_max_message_size(o, static_cast<uint64_t>(a.integer(1, 1LL << 40))), "--max-message");
    } else if (a.is("--linger")) {
      linger_ms = static_cast<int>(a.integer(0, 3600000));
    } else if (!url && !a.arg().empty() && a.arg()[0] != '-') {
      url = a.arg().data();
    } else {
      a.fail("unknown argument '" + std::string(a.arg()) + "'");
    }
  }
  if (!url) a.fail("a URL is needed (ws://host:port/path or wss://...)");

  ws_conn* ws = nullptr;
  int rc = ws_open(url, o, &ws);
  opts.reset();
  if (rc != WS_OK) {
    std::fprintf(stderr, "wscore connect: %s: %s", url, ws_strerror(rc));
    if (ws && *ws_error_detail(ws)) std::fprintf(stderr, " (%s)", ws_error_detail(ws));
    std::fprintf(stderr, "\n");
    ws_free(ws);
    return 1;
  }
  if (pipe(g_signal_pipe) != 0) {
    std::perror("wscore connect: pipe");
    ws_free(ws);
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // stdout closed by a pager: report, do not die mid-close
  std::fprintf(stderr, "connected to %s%s%s\n", url, *ws_subprotocol(ws) ? ", subprotocol " : "",
               ws_subprotocol(ws));

  struct pollfd fds[3] = {{STDIN_FILENO, POLLIN, 0}, {ws_fileno(ws), POLLIN, 0}, {g_signal_pipe[0], POLLIN, 0}};
  std::string pending;  // stdin bytes after the last newline
  long sent = 0;
  bool we_close = false, eof = false;
  auto send_line = [&](const char* p, size_t n) {
    rc = ws_send(ws, p, n, type);
    if (rc == WS_OK) sent++;
    else if (rc == WS_EUTF8) std::fprintf(stderr, "wscore connect: line not sent: it is not valid UTF-8 (use --binary)\n");
    else report("connect", "send", rc);
  };
  while (!we_close) {
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("wscore connect: poll");
      we_close = true;
      break;
    }
    if (fds[2].revents) we_close = true;
    if (fds[0].revents) {
      char buf[65536];
      ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        // A last line without a newline is still a line.
        if (!pending.empty()) send_line(pending.data(), pending.size());
        we_close = eof = true;
      } else {
        pending.append(buf, static_cast<size_t>(r));
        size_t start = 0, nl;
        while ((nl = pending.find('\n', start)) != std::string::npos) {
          send_line(pending.data() + start, nl - start);
          start = nl + 1;
        }
        pending.erase(0, start);
      }
    }
    if (drain(ws) == WS_ECLOSED) return closed_by_server(ws);
  }
  // Servers commonly answer a close at once, dropping the replies to what
  // arrived just before it: at EOF, give the replies a moment first (a reply
  // per message sent is what an echo or request/response server gives).
  while (eof && g_received < sent) {
    int n = poll(&fds[1], 2, linger_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || fds[2].revents) break;
    if (drain(ws) == WS_ECLOSED) return closed_by_server(ws);
  }
  // The server answers our close after the echoes of everything sent before
  // it, and ws_close keeps what arrives meanwhile readable: print it after.
  rc = ws_close(ws, WS_CLOSE_NORMAL, "");
  drain(ws);
  int status = 0;
  if (rc == WS_ECLOSED) return closed_by_server(ws);  // its close crossed ours
  if (rc == WS_OK) {
    int code = ws_close_code(ws);
    std::fprintf(stderr, "closed: %d %s\n", code, ws_close_reason(ws));
    status = code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ? 0 : 1;
  } else {
    std::fprintf(stderr, "closed: %d (%s)\n", ws_close_code(ws),
                 rc == WS_ETIMEDOUT ? "the server did not answer the close" : ws_strerror(rc));
    status = 1;
  }
  ws_free(ws);
  return status;
}

}  // namespace wscli
