// wscore — the command-line tool: connect (like wscat), echo (a server for
// tests and benchmarks; Autobahn drives it as a black box), serve (the demo).
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <wscore.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

void usage_main() {
  std::puts(
      "usage: wscore <command> [options]\n"
      "\n"
      "commands:\n"
      "  connect URL   open a WebSocket; stdin lines go out, messages are printed\n"
      "  echo          run an echo server (every message back with its type)\n"
      "  serve         the demo: an echo server on port 9001 that says what to do\n"
      "  version       print the library version\n"
      "\n"
      "`wscore <command> --help` for the options of each.");
}

[[noreturn]] void die(const char* what, int rc) {
  std::fprintf(stderr, "wscore: %s: %s (%s)\n", what, ws_strerror(rc), ws_err_name(rc));
  std::exit(1);
}

// ---------------------------------------------------------------- connect

void usage_connect() {
  std::puts(
      "usage: wscore connect URL [options]\n"
      "  Sends each line of stdin as a text message (--binary: binary) and prints\n"
      "  every message received. EOF on stdin closes with 1000 after the echoes\n"
      "  of what was sent had a moment to arrive.\n"
      "options:\n"
      "  -H, --header 'Name: value'   add a request header (repeatable)\n"
      "  --subprotocol P              offer a subprotocol (repeatable)\n"
      "  --binary                     send lines as binary messages\n"
      "  --timeout MS                 connect timeout (default 10000)\n"
      "  --cacert FILE                trust this CA for wss:// (TLS is not built yet)\n"
      "  --insecure                   DANGEROUS: do not verify the server certificate");
}

void print_message(ws_message* m) {
  const char* d = static_cast<const char*>(ws_message_data(m));
  size_t n = ws_message_size(m);
  if (ws_message_type(m) == WS_TEXT) {
    std::printf("< %.*s\n", static_cast<int>(n), d);
  } else {
    std::printf("< [binary, %zu bytes]", n);
    for (size_t i = 0; i < n && i < 32; i++) std::printf(" %02x", static_cast<unsigned char>(d[i]));
    std::printf(n > 32 ? " ...\n" : "\n");
  }
  std::fflush(stdout);
}

int cmd_connect(int argc, char** argv) {
  const char* url = nullptr;
  bool binary = false;
  ws_options* o = ws_options_new();
  for (int i = 0; i < argc; i++) {
    std::string a = argv[i];
    auto need = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "wscore connect: %s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage_connect();
      return 0;
    } else if (a == "--binary") {
      binary = true;
    } else if (a == "-H" || a == "--header") {
      std::string h = need("--header");
      size_t colon = h.find(':');
      if (colon == std::string::npos) {
        std::fprintf(stderr, "wscore connect: header must be 'Name: value'\n");
        return 2;
      }
      std::string name = h.substr(0, colon), value = h.substr(colon + 1);
      while (!value.empty() && value[0] == ' ') value.erase(0, 1);
      int rc = ws_options_add_header(o, name.c_str(), value.c_str());
      if (rc) die("--header", rc);
    } else if (a == "--subprotocol") {
      int rc = ws_options_add_subprotocol(o, need("--subprotocol"));
      if (rc) die("--subprotocol", rc);
    } else if (a == "--timeout") {
      ws_options_set_connect_timeout(o, std::atoi(need("--timeout")));
    } else if (a == "--cacert") {
      ws_options_set_tls_ca_file(o, need("--cacert"));
    } else if (a == "--insecure") {
      std::fprintf(stderr, "wscore connect: WARNING: --insecure: the server certificate is NOT verified\n");
      ws_options_set_tls_insecure_skip_verify(o, 1);
    } else if (!url && a[0] != '-') {
      url = argv[i];
    } else {
      std::fprintf(stderr, "wscore connect: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (!url) {
    usage_connect();
    return 2;
  }
  ws_conn* ws = nullptr;
  int rc = ws_open(url, o, &ws);
  ws_options_free(o);
  if (rc != WS_OK) {
    std::fprintf(stderr, "wscore connect: %s: %s", url, ws_strerror(rc));
    if (ws && *ws_error_detail(ws)) std::fprintf(stderr, " (%s)", ws_error_detail(ws));
    std::fprintf(stderr, "\n");
    ws_free(ws);
    return 1;
  }
  std::fprintf(stderr, "connected to %s%s%s\n", url, *ws_subprotocol(ws) ? ", subprotocol " : "",
               ws_subprotocol(ws));
  // poll() over stdin and the connection's descriptor; after EOF on stdin
  // (fd -1: poll ignores it) wait up to 500 ms of quiet for echoes, then close.
  struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {ws_fileno(ws), POLLIN, 0}};
  std::string line;
  int status = 0;
  for (;;) {
    bool stdin_open = fds[0].fd >= 0;
    int n = poll(fds, 2, stdin_open ? -1 : 500);
    if (n < 0) continue;
    if (stdin_open && (fds[0].revents & (POLLIN | POLLHUP))) {
      char buf[4096];
      ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
      if (r <= 0) {
        fds[0].fd = -1;
        if (!line.empty()) ws_send(ws, line.data(), line.size(), binary ? WS_BINARY : WS_TEXT);
      } else {
        line.append(buf, static_cast<size_t>(r));
        size_t nl;
        while ((nl = line.find('\n')) != std::string::npos) {
          std::string msg = line.substr(0, nl);
          line.erase(0, nl + 1);
          rc = ws_send(ws, msg.data(), msg.size(), binary ? WS_BINARY : WS_TEXT);
          if (rc) std::fprintf(stderr, "send: %s\n", ws_strerror(rc));
        }
      }
    }
    ws_message* m = nullptr;
    while ((rc = ws_receive(ws, &m, 0)) == WS_OK) {
      print_message(m);
      ws_message_free(m);
    }
    if (rc == WS_ECLOSED) {
      std::fprintf(stderr, "closed by the server: %d %s\n", ws_close_code(ws), ws_close_reason(ws));
      status = ws_close_code(ws) == 1000 || ws_close_code(ws) == 1001 ? 0 : 1;
      break;
    }
    if (!stdin_open && n == 0) {
      rc = ws_close(ws, WS_CLOSE_NORMAL, "");
      while (ws_receive(ws, &m, 0) == WS_OK) {
        print_message(m);
        ws_message_free(m);
      }
      std::fprintf(stderr, "closed: %d%s\n", ws_close_code(ws),
                   rc == WS_OK ? "" : " (the server did not answer the close)");
      status = rc == WS_OK ? 0 : 1;
      break;
    }
  }
  ws_free(ws);
  return status;
}

// ---------------------------------------------------------------- echo

std::atomic<bool> g_stop{false};
int g_stop_pipe[2] = {-1, -1};

void on_signal(int) {
  g_stop = true;
  char c = 1;
  ssize_t r = write(g_stop_pipe[1], &c, 1);
  (void)r;
}

void usage_echo() {
  std::puts(
      "usage: wscore echo [options]\n"
      "  Echoes every message with its type; answers a close with the same code.\n"
      "  Prints 'listening on HOST:PORT' when ready. SIGINT/SIGTERM: closes every\n"
      "  connection with 1001 and exits 0.\n"
      "options:\n"
      "  --port N             port (default 9001; 0 picks a free one)\n"
      "  --host H             address to bind (default 127.0.0.1)\n"
      "  --mode callback|blocking   callback mode on the loop thread (default) or\n"
      "                       the blocking API with one poll() thread\n"
      "  --max-message BYTES  largest message accepted (default 16 MiB)\n"
      "  --threads N          loop threads (only 1 is implemented so far)\n"
      "  --cert FILE --key FILE   serve wss:// (TLS is not built yet)");
}

void echo_on_message(ws_conn* ws, int type, const void* data, size_t len, void*) {
  if (type == WS_TEXT || type == WS_BINARY) ws_send(ws, data, len, type);
}

int cmd_echo(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 9001;
  bool callback = true;
  ws_options* o = ws_options_new();
  for (int i = 0; i < argc; i++) {
    std::string a = argv[i];
    auto need = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "wscore echo: %s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage_echo();
      return 0;
    } else if (a == "--port") {
      port = std::atoi(need("--port"));
    } else if (a == "--host") {
      host = need("--host");
    } else if (a == "--mode") {
      std::string m = need("--mode");
      if (m == "blocking") callback = false;
      else if (m != "callback") {
        std::fprintf(stderr, "wscore echo: --mode is callback or blocking\n");
        return 2;
      }
    } else if (a == "--max-message") {
      int rc = ws_options_set_max_message_size(o, std::strtoull(need("--max-message"), nullptr, 10));
      if (rc) die("--max-message", rc);
    } else if (a == "--threads") {
      int rc = ws_options_set_threads(o, std::atoi(need("--threads")));
      if (rc) die("--threads", rc);
    } else if (a == "--cert") {
      ws_options_set_tls_cert_file(o, need("--cert"));
    } else if (a == "--key") {
      ws_options_set_tls_key_file(o, need("--key"));
    } else {
      std::fprintf(stderr, "wscore echo: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (callback) {
    ws_callbacks cbs{};
    cbs.on_message = echo_on_message;
    ws_options_set_callbacks(o, &cbs, sizeof cbs, nullptr);
  }
  ws_server* srv = nullptr;
  int rc = ws_listen(host.c_str(), port, o, &srv);
  ws_options_free(o);
  if (rc) die("listen", rc);
  if (pipe(g_stop_pipe) != 0) return 1;
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  bool v6 = host.find(':') != std::string::npos;
  std::printf("listening on %s%s%s:%d\n", v6 ? "[" : "", host.c_str(), v6 ? "]" : "", ws_server_port(srv));
  std::fflush(stdout);

  if (callback) {
    char c;
    while (read(g_stop_pipe[0], &c, 1) < 0 && !g_stop) {
    }
  } else {
    // The blocking API from one thread: poll() over the server's and every
    // connection's descriptor, then non-blocking calls.
    std::vector<ws_conn*> conns;
    while (!g_stop) {
      std::vector<struct pollfd> fds;
      fds.push_back({g_stop_pipe[0], POLLIN, 0});
      fds.push_back({ws_server_fileno(srv), POLLIN, 0});
      for (ws_conn* c : conns) fds.push_back({ws_fileno(c), POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[0].revents) break;
      ws_conn* nc = nullptr;
      while (ws_accept(srv, &nc, 0) == WS_OK) conns.push_back(nc);
      for (size_t i = 0; i < conns.size();) {
        ws_message* m = nullptr;
        int r;
        while ((r = ws_receive(conns[i], &m, 0)) == WS_OK) {
          ws_send(conns[i], ws_message_data(m), ws_message_size(m), ws_message_type(m));
          ws_message_free(m);
        }
        if (r == WS_ECLOSED) {
          ws_free(conns[i]);
          conns.erase(conns.begin() + static_cast<long>(i));
        } else {
          i++;
        }
      }
    }
    for (ws_conn* c : conns) ws_free(c);
  }
  ws_server_close(srv);
  // Give the 1001 closes a moment to reach the peers before the process exits.
  usleep(200 * 1000);
  ws_server_free(srv);
  return 0;
}

// ---------------------------------------------------------------- serve

int cmd_serve(int argc, char** argv) {
  for (int i = 0; i < argc; i++)
    if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) {
      std::puts("usage: wscore serve [--port N] [--host H]\n  The demo: an echo server that tells you how to talk to it.");
      return 0;
    }
  std::puts("wscore demo server: every message you send comes back.\n"
            "Try:  wscore connect ws://127.0.0.1:PORT/   (or a browser: new WebSocket('ws://127.0.0.1:PORT/'))");
  return cmd_echo(argc, argv);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage_main();
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "connect") return cmd_connect(argc - 2, argv + 2);
  if (cmd == "echo") return cmd_echo(argc - 2, argv + 2);
  if (cmd == "serve") return cmd_serve(argc - 2, argv + 2);
  if (cmd == "version" || cmd == "--version") {
    std::printf("wscore %s\n", ws_version());
    return 0;
  }
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    usage_main();
    return 0;
  }
  std::fprintf(stderr, "wscore: unknown command '%s'\n", argv[1]);
  usage_main();
  return 2;
}
