#!/bin/sh
# run_fuzz.sh FUZZER WORKDIR SEEDDIR SECONDS: runs a libFuzzer target for a
# bounded time. New inputs go to WORKDIR (in the build tree), never into the
# committed seed corpus.
set -eu
fuzzer=$1 work=$2 seeds=$3 secs=$4
mkdir -p "$work"
# -error_exitcode=1: libFuzzer's default (77) is meson's "skipped", which would
# hide a crash as a skip.
exec "$fuzzer" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 \
  "$work" "$seeds"
