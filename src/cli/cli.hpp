// Internal to the `wscore` command-line tool: the subcommands and the small
// argument parser they share.
#pragma once

#include <wscore.h>

#include <memory>
#include <string>
#include <string_view>

namespace wscli {

// Each subcommand gets the arguments after its name and returns the process
// exit status: 0 success, 1 failure at run time, 2 bad usage.
int cmd_connect(int argc, char** argv);
int cmd_echo(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_autobahn_client(int argc, char** argv);

// An options object, freed on every way out of a subcommand.
struct OptionsFree {
  void operator()(ws_options* o) const { ws_options_free(o); }
};
using Options = std::unique_ptr<ws_options, OptionsFree>;

// Thrown by Args::fail once its message is printed; main answers it with exit
// status 2. An exception rather than exit(), so that what the subcommand holds
// is released on the way out.
struct UsageError {};

// Walks argv once. Every malformed value ends the subcommand with status 2 and
// a message naming the command and the option, so no subcommand runs on a
// half-understood command line.
class Args {
 public:
  Args(const char* command, int argc, char** argv) : cmd_(command), argc_(argc), argv_(argv) {}
  bool next();                        // advances; false at the end
  std::string_view arg() const { return argv_[i_]; }
  bool is(std::string_view a, std::string_view b = {}) const;
  const char* value();                // the option's value (the next argument)
  long long integer(long long lo, long long hi);  // value() as an integer in [lo, hi]
  [[noreturn]] void fail(const std::string& why) const;

 private:
  const char* cmd_;
  int argc_;
  char** argv_;
  int i_ = -1;
};

// "wscore CMD: WHAT: <library error text> (WS_NAME)" on stderr.
void report(const char* cmd, const std::string& what, int rc);

// Raises the soft limit on open files to the hard one: a server holds one
// descriptor per connection (two in the blocking API: the socket and its
// readiness descriptor).
void raise_nofile_limit();

}  // namespace wscli
