#include <sys/resource.h>
#include <wscore.h>

#include <cerrno>
#include <cstdio>

#include "cli.hpp"

namespace wscli {

bool Args::next() { return ++i_ < argc_; }

bool Args::is(std::string_view a, std::string_view b) const {
  return arg() == a || (!b.empty() && arg() == b);
}

const char* Args::value() {
  if (i_ + 1 >= argc_) fail(std::string(arg()) + " needs a value");
  return argv_[++i_];
}

long long Args::integer(long long lo, long long hi) {
  std::string opt(arg());
  const char* v = value();
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi)
    fail(opt + " takes a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
         ", not '" + v + "'");
  return n;
}

void Args::fail(const std::string& why) const {
  std::fprintf(stderr, "wscore %s: %s (see wscore %s --help)\n", cmd_, why.c_str(), cmd_);
  throw UsageError{};
}

void report(const char* cmd, const std::string& what, int rc) {
  std::fprintf(stderr, "wscore %s: %s: %s (%s)\n", cmd, what.c_str(), ws_strerror(rc), ws_err_name(rc));
}

void raise_nofile_limit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace wscli
