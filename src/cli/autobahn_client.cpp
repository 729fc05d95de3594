// `wscore autobahn-client`: the client side of Autobahn's test protocol. The
// fuzzing server says how many cases it has, then each case is one connection
// on which we echo every message until the server closes it; the server
// judges what it saw. updateReports asks it to write its reports.
#include <wscore.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli.hpp"

namespace wscli {
namespace {

void usage() {
  std::puts(
      "usage: wscore autobahn-client URL --agent NAME [options]\n"
      "  Runs every case of an Autobahn fuzzing server at URL (ws://host:port or\n"
      "  wss://...): URL/getCaseCount, then URL/runCase?case=N&agent=NAME for each\n"
      "  case, echoing every message with its type until the server closes, then\n"
      "  URL/updateReports?agent=NAME. Messages up to 64 MiB are accepted.\n"
      "  Exit status 0 when every case ran (the server's reports hold the verdicts).\n"
      "options:\n"
      "  --agent NAME       the name the reports are filed under (required)\n"
      "  --cacert FILE      trust this CA (PEM) for wss://\n"
      "  --case-timeout MS  give up on a case that sends nothing for this long (default 60000)\n"
      "  -v, --verbose      one line per case: its number and how it closed");
}

// RFC 3986 unreserved characters stay; everything else is %XX.
std::string percent_encode(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", ch);
      out += buf;
    }
  }
  return out;
}

struct Client {
  std::string base;
  const char* cacert = nullptr;
  int case_timeout_ms = 60000;

  int open(const std::string& path, ws_conn** ws) const {
    Options opts(ws_options_new());
    if (!opts) return WS_ENOMEM;
    ws_options* o = opts.get();
    // Autobahn's 9.x cases send messages up to 16 MiB, the limit cases more.
    ws_options_set_max_message_size(o, 64ull << 20);
    ws_options_set_send_queue_limit(o, 128u << 20);
    if (cacert) ws_options_set_tls_ca_file(o, cacert);
    std::string url = base + path;
    int rc = ws_open(url.c_str(), o, ws);
    if (rc != WS_OK) {
      std::fprintf(stderr, "wscore autobahn-client: %s: %s", url.c_str(), ws_strerror(rc));
      if (*ws && *ws_error_detail(*ws)) std::fprintf(stderr, " (%s)", ws_error_detail(*ws));
      std::fprintf(stderr, "\n");
      ws_free(*ws);
      *ws = nullptr;
    }
    return rc;
  }
};

}  // namespace

int cmd_autobahn_client(int argc, char** argv) {
  Client cl;
  std::string url, agent;
  bool verbose = false;
  Args a("autobahn-client", argc, argv);
  while (a.next()) {
    if (a.is("-h", "--help")) {
      usage();
      return 0;
    } else if (a.is("--agent")) {
      agent = a.value();
    } else if (a.is("--cacert")) {
      cl.cacert = a.value();
    } else if (a.is("--case-timeout")) {
      cl.case_timeout_ms = static_cast<int>(a.integer(1, 3600000));
    } else if (a.is("-v", "--verbose")) {
      verbose = true;
    } else if (url.empty() && !a.arg().empty() && a.arg()[0] != '-') {
      url = a.arg();
    } else {
      a.fail("unknown argument '" + std::string(a.arg()) + "'");
    }
  }
  if (url.empty()) a.fail("the fuzzing server's URL is needed (ws://host:port)");
  if (agent.empty()) a.fail("--agent NAME is needed");
  while (!url.empty() && url.back() == '/') url.pop_back();
  cl.base = url;
  std::string agent_q = percent_encode(agent);

  ws_conn* ws = nullptr;
  if (cl.open("/getCaseCount", &ws) != WS_OK) return 1;
  ws_message* m = nullptr;
  int rc = ws_receive(ws, &m, 10000);
  if (rc != WS_OK) {
    report("autobahn-client", "getCaseCount", rc);
    ws_free(ws);
    return 1;
  }
  std::string text(static_cast<const char*>(ws_message_data(m)), ws_message_size(m));
  ws_message_free(m);
  ws_close(ws, WS_CLOSE_NORMAL, "");
  ws_free(ws);
  char* end = nullptr;
  errno = 0;
  long count = std::strtol(text.c_str(), &end, 10);
  if (errno || end == text.c_str() || *end || count < 0 || count > 1000000) {
    std::fprintf(stderr, "wscore autobahn-client: getCaseCount sent '%.60s', not a case count\n", text.c_str());
    return 1;
  }

  long not_run = 0;
  for (long n = 1; n <= count; n++) {
    if (cl.open("/runCase?case=" + std::to_string(n) + "&agent=" + agent_q, &ws) != WS_OK) {
      not_run++;
      continue;
    }
    for (;;) {
      rc = ws_receive(ws, &m, cl.case_timeout_ms);
      if (rc != WS_OK) break;
      // A failed send (the server already closing) ends in WS_ECLOSED next.
      ws_send(ws, ws_message_data(m), ws_message_size(m), ws_message_type(m));
      ws_message_free(m);
    }
    if (rc == WS_ETIMEDOUT) {
      std::fprintf(stderr, "wscore autobahn-client: case %ld sent nothing for %d ms: closing it\n", n,
                   cl.case_timeout_ms);
      ws_close(ws, WS_CLOSE_GOING_AWAY, "case timeout");
      not_run++;
    }
    if (verbose) std::printf("case %ld/%ld: closed %d %s\n", n, count, ws_close_code(ws), ws_close_reason(ws));
    ws_free(ws);
  }

  if (cl.open("/updateReports?agent=" + agent_q, &ws) != WS_OK) return 1;
  // The server closes once its reports are written.
  while ((rc = ws_receive(ws, &m, 60000)) == WS_OK) ws_message_free(m);
  ws_free(ws);
  if (rc != WS_ECLOSED) {
    report("autobahn-client", "updateReports", rc);
    return 1;
  }
  std::printf("ran %ld of %ld cases as agent '%s'\n", count - not_run, count, agent.c_str());
  return not_run ? 1 : 0;
}

}  // namespace wscli
