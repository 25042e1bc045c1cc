#!/usr/bin/env bash
# Fuzz the C batch parser for SECONDS (default 60) with ASan + UBSan.
# Usage: tests/fuzz/run.sh [SECONDS]
# Builds the target if it is missing or older than its sources, starts from the committed seeds
# (tests/fuzz/seeds/), keeps the growing corpus in tests/fuzz/corpus-run/ and writes any crashing
# input to tests/fuzz/build/. Exits non-zero on any finding (crash, leak, timeout, OOM).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-60}"
case "$seconds" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac

bin="$here/build/fuzz_parse_batch"
sources=("$here/fuzz_parse_batch.c" "$root/csrc/frame.c" "$root/csrc/crc32c.c"
         "$root/csrc/l2fast_core.h" "$root/csrc/wire_guard.h" "$here/build.sh")
rebuild=0
if [ ! -x "$bin" ]; then
  rebuild=1
else
  for s in "${sources[@]}"; do
    if [ "$s" -nt "$bin" ]; then rebuild=1; fi
  done
fi
if [ "$rebuild" = 1 ]; then "$here/build.sh"; fi

corpus="$here/corpus-run"
mkdir -p "$corpus" "$here/build"
# libFuzzer exits non-zero (1 for a crash, 70 for a timeout, 71 for OOM...) on any finding and
# writes the input to the artifact prefix.
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -print_final_stats=1 -artifact_prefix="$here/build/" "$corpus" "$here/seeds"
