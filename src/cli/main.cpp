// wscore — the command-line tool: connect (like wscat), echo (a server for
// tests and benchmarks; Autobahn drives it as a black box), serve (the demo),
// autobahn-client (the client side of the Autobahn protocol).
#include <wscore.h>

#include <cstdio>
#include <cstring>

#include "cli.hpp"

namespace {

void usage(FILE* to = stdout) {
  std::fputs(
      "usage: wscore <command> [options]\n"
      "\n"
      "commands:\n"
      "  connect URL          open a WebSocket; stdin lines go out, messages are printed\n"
      "  echo                 run an echo server (every message back with its type)\n"
      "  serve                the demo: an echo server that says how to talk to it\n"
      "  autobahn-client URL  run every case of an Autobahn fuzzing server, echoing\n"
      "  version              print the library version\n"
      "\n"
      "`wscore <command> --help` for the options of each.\n",
      to);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char* cmd = argv[1];
  int (*sub)(int, char**) = !std::strcmp(cmd, "connect")           ? wscli::cmd_connect
                            : !std::strcmp(cmd, "echo")            ? wscli::cmd_echo
                            : !std::strcmp(cmd, "serve")           ? wscli::cmd_serve
                            : !std::strcmp(cmd, "autobahn-client") ? wscli::cmd_autobahn_client
                                                                   : nullptr;
  if (sub) {
    try {
      return sub(argc - 2, argv + 2);
    } catch (const wscli::UsageError&) {
      return 2;  // the message is out already
    }
  }
  if (!std::strcmp(cmd, "version") || !std::strcmp(cmd, "--version")) {
    std::printf("wscore %s\n", ws_version());
    return 0;
  }
  if (!std::strcmp(cmd, "-h") || !std::strcmp(cmd, "--help") || !std::strcmp(cmd, "help")) {
    usage();
    return 0;
  }
  std::fprintf(stderr, "wscore: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
