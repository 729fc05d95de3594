// `wscore echo` (and `wscore serve`, the same server with a greeting): the
// echo server that tests, benchmarks and Autobahn drive as a black box. Keep
// its flags and its "listening on HOST:PORT" line stable.
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <wscore.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"

namespace wscli {
namespace {

void usage(bool demo) {
  if (demo) {
    std::puts(
        "usage: wscore serve [--port N] [--host H]\n"
        "  The demo: an echo server (wscore echo, callback mode) that prints how to\n"
        "  talk to it. Plain HTTP requests get 426 Upgrade Required: there is no web\n"
        "  page, use `wscore connect` or a browser console. Default port 9001.\n"
        "  SIGINT/SIGTERM stops it (connections are closed with 1001).");
    return;
  }
  std::puts(
      "usage: wscore echo [options]\n"
      "  Echoes every message with its type (text stays text); a peer's close is\n"
      "  answered with the same code and reason. Prints 'listening on HOST:PORT'\n"
      "  when ready. SIGINT/SIGTERM: closes every connection with 1001 and exits 0.\n"
      "  A peer that does not read its echoes until the send queue is full is\n"
      "  closed with 1008 (nothing is dropped silently).\n"
      "options:\n"
      "  --port N                 port (default 9001; 0 picks a free one)\n"
      "  --host H                 address to bind (default 127.0.0.1; :: for IPv6)\n"
      "  --mode callback|stream|blocking\n"
      "                           callback mode on the loop thread (default), the same\n"
      "                           forwarding each part of a message as it arrives (as a\n"
      "                           fragment; on_message_part), or the blocking API from\n"
      "                           one thread polling ws_fileno\n"
      "  --threads N              loop threads, 1..256 (default 1; SO_REUSEPORT)\n"
      "  --cert FILE --key FILE   serve wss:// with this PEM certificate chain and key\n"
      "  --max-message BYTES      largest message accepted (default 16 MiB; 1009 beyond)\n"
      "  --send-queue BYTES       send queue per connection (default 64 MiB)");
}

int g_signal_pipe[2] = {-1, -1};

void on_signal(int) {
  char c = 1;
  ssize_t r = write(g_signal_pipe[1], &c, 1);
  (void)r;
}

std::atomic<int> g_open{0};  // callback mode: connections not yet closed

// An echo reads nothing of the handshake: an idle connection need not keep it.
void cb_open(ws_conn* ws, void*) {
  ws_release_handshake(ws);
  g_open++;
}
void cb_close(ws_conn*, int, const char*, void*) { g_open--; }

void overflow(ws_conn* ws) {
  std::fprintf(stderr, "wscore echo: %s does not read its echoes (send queue full): closing with 1008\n",
               ws_peer_address(ws));
}

void cb_message(ws_conn* ws, int type, const void* data, size_t len, void*) {
  if (type != WS_TEXT && type != WS_BINARY) return;
  int rc = ws_send(ws, data, len, type);
  if (rc == WS_EAGAIN) {
    overflow(ws);
    ws_close(ws, WS_CLOSE_POLICY, "send queue full");
  }
  // Other errors mean the connection is closing: its on_close follows.
}

// Stream: each part goes back as it came, a message that came whole as one
// message, the parts of a longer one as its fragments.
void cb_message_part(ws_conn* ws, int type, const void* data, size_t len, int flags, void*) {
  int rc = flags == (WS_PART_FIRST | WS_PART_LAST) ? ws_send(ws, data, len, type)
                                                   : ws_send_fragment(ws, data, len, type, (flags & WS_PART_LAST) != 0);
  if (rc == WS_EAGAIN) {
    overflow(ws);
    ws_close(ws, WS_CLOSE_POLICY, "send queue full");
  }
}

// The blocking API from one thread: poll() over the server's descriptor and
// every connection's, then calls that do not block.
void serve_blocking(ws_server* srv) {
  std::vector<ws_conn*> conns;
  std::vector<struct pollfd> fds;
  for (;;) {
    fds.assign({{g_signal_pipe[0], POLLIN, 0}, {ws_server_fileno(srv), POLLIN, 0}});
    for (ws_conn* c : conns) fds.push_back({ws_fileno(c), POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("wscore echo: poll");
      break;
    }
    if (fds[0].revents) break;
    ws_conn* nc = nullptr;
    while (ws_accept(srv, &nc, 0) == WS_OK) {
      ws_release_handshake(nc);
      conns.push_back(nc);
    }
    for (size_t i = 2; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      ws_conn*& c = conns[i - 2];
      ws_message* m = nullptr;
      int r;
      while ((r = ws_receive(c, &m, 0)) == WS_OK) {
        int s = ws_send(c, ws_message_data(m), ws_message_size(m), ws_message_type(m));
        ws_message_free(m);
        if (s == WS_EAGAIN) {
          overflow(c);
          r = WS_ECLOSED;
          break;
        }
      }
      if (r == WS_ECLOSED) {
        ws_free(c);  // after an overflow: closes with 1001 without waiting for the peer
        c = nullptr;
      }
    }
    std::erase(conns, nullptr);
  }
  // ws_server_close sends every connection a 1001; wait (bounded) for the
  // peers' answers so that the closes are complete when the process exits.
  ws_server_close(srv);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (ws_conn* c : conns) {
    ws_message* m = nullptr;
    int r;
    while (std::chrono::steady_clock::now() < deadline && (r = ws_receive(c, &m, 100)) != WS_ECLOSED)
      if (r == WS_OK) ws_message_free(m);
    ws_free(c);
  }
}

}  // namespace

int run_echo(const char* name, int argc, char** argv, bool demo) {
  std::string host = "127.0.0.1";
  long long port = 9001;
  bool callback = true;
  bool stream = false;
  const char* cert = nullptr;
  const char* key = nullptr;
  Options opts(ws_options_new());
  if (!opts) return 1;
  ws_options* o = opts.get();
  // An echo never waits for room in a send queue (that would stall every
  // connection of the thread): a full queue is answered with 1008 instead.
  ws_options_set_send_timeout(o, 0);
  ws_options_set_send_queue_limit(o, 64u << 20);
  Args a(name, argc, argv);
  auto check = [&](int rc, const char* what) {
    if (rc != WS_OK) a.fail(std::string(what) + ": " + ws_strerror(rc));
  };
  while (a.next()) {
    if (a.is("-h", "--help")) {
      usage(demo);
      return 0;
    } else if (a.is("--port")) {
      port = a.integer(0, 65535);
    } else if (a.is("--host")) {
      host = a.value();
    } else if (!demo && a.is("--mode")) {
      std::string m = a.value();
      if (m != "callback" && m != "stream" && m != "blocking")
        a.fail("--mode is callback, stream or blocking, not '" + m + "'");
      callback = m != "blocking";
      stream = m == "stream";
    } else if (!demo && a.is("--threads")) {
      check(ws_options_set_threads(o, static_cast<int>(a.integer(1, 256))), "--threads");
    } else if (!demo && a.is("--cert")) {
      cert = a.value();
    } else if (!demo && a.is("--key")) {
      key = a.value();
    } else if (!demo && a.is("--max-message")) {
      check(ws_options_set_max_message_size(o, static_cast<uint64_t>(a.integer(1, 1LL << 40))), "--max-message");
    } else if (!demo && a.is("--send-queue")) {
      check(ws_options_set_send_queue_limit(o, static_cast<size_t>(a.integer(1, 1LL << 40))), "--send-queue");
    } else {
      a.fail("unknown argument '" + std::string(a.arg()) + "'");
    }
  }
  if (!cert != !key) a.fail("--cert and --key go together");
  if (cert) {
    check(ws_options_set_tls_cert_file(o, cert), "--cert");
    check(ws_options_set_tls_key_file(o, key), "--key");
  }
  if (callback) {
    ws_callbacks cbs{};
    cbs.on_open = cb_open;
    cbs.on_message = cb_message;
    if (stream) cbs.on_message_part = cb_message_part;
    cbs.on_close = cb_close;
    ws_options_set_callbacks(o, &cbs, sizeof cbs, nullptr);
  }
  raise_nofile_limit();
  if (pipe(g_signal_pipe) != 0) {
    std::perror("wscore echo: pipe");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ws_server* srv = nullptr;
  int rc = ws_listen(host.c_str(), static_cast<int>(port), o, &srv);
  opts.reset();
  if (rc != WS_OK) {
    report(name, "listen on " + host + ":" + std::to_string(port), rc);
    return 1;
  }
  bool v6 = host.find(':') != std::string::npos;
  std::string addr = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(ws_server_port(srv));
  std::printf("listening on %s\n", addr.c_str());
  if (demo) {
    std::string where = host == "0.0.0.0" || host == "::" ? "127.0.0.1:" + std::to_string(ws_server_port(srv)) : addr;
    std::printf(
        "wscore demo: every message you send comes back, with its type.\n"
        "  from a shell:   wscore connect ws://%s/   (type lines; Ctrl-D closes)\n"
        "  from a browser console (any page):\n"
        "      s = new WebSocket('ws://%s/'); s.onmessage = e => console.log(e.data);\n"
        "      s.onopen = () => s.send('hello');\n"
        "Ctrl-C stops the server.\n",
        where.c_str(), where.c_str());
  }
  std::fflush(stdout);

  if (callback) {
    char c;
    while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    ws_server_close(srv);
    // Each connection got a 1001; its on_close runs when the peer answered or
    // the close timeout passed. Exit when all are done (bounded).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
    while (g_open.load() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } else {
    serve_blocking(srv);
  }
  ws_server_free(srv);
  return 0;
}

int cmd_echo(int argc, char** argv) { return run_echo("echo", argc, argv, false); }
int cmd_serve(int argc, char** argv) { return run_echo("serve", argc, argv, true); }

}  // namespace wscli
