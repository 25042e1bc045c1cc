#!/usr/bin/env bash
# Fuzz a C target for SECONDS (default 60) with ASan + UBSan.
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET]   (TARGET: fuzz_parse_batch, the default,
# fuzz_rxwindow, fuzz_echo or fuzz_txstream; see build.sh)
# Builds the target if it is missing or older than its sources, starts from the committed seeds
# (tests/fuzz/seeds/), keeps the growing corpus in tests/fuzz/corpus-run/ and writes any crashing
# input to tests/fuzz/build/. Exits non-zero on any finding (crash, leak, timeout, OOM).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-60}"
case "$seconds" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac

target="${2:-fuzz_parse_batch}"
case "$target" in
  fuzz_parse_batch)
    units=(frame.c crc32c.c l2fast_core.h wire_guard.h)
    corpus="$here/corpus-run"; seeds=("$here/seeds"); max_len=8192 ;;
  fuzz_rxwindow)
    units=(rxpath.c ring.c writer.c frame.c crc32c.c datapath.h l2fast_core.h wire_guard.h)
    corpus="$here/build/corpus_rxwindow"; seeds=(); max_len=4096 ;;
  fuzz_echo)
    units=(echo.c rawsock.c frame.c crc32c.c echo.h l2fast_core.h wire_guard.h)
    corpus="$here/build/corpus_echo"; seeds=(); max_len=8192 ;;
  fuzz_txstream)
    units=(txstream.c txpath.c rawsock.c frame.c crc32c.c datapath.h l2fast_core.h wire_guard.h)
    corpus="$here/build/corpus_txstream"; seeds=(); max_len=4096 ;;
  *) echo "usage: $0 [SECONDS] [fuzz_parse_batch|fuzz_rxwindow|fuzz_echo|fuzz_txstream]" >&2; exit 2 ;;
esac

bin="$here/build/$target"
sources=("$here/$target.c" "$here/fuzz_input.h" "${units[@]/#/$root/csrc/}" "$here/build.sh")
rebuild=0
if [ ! -x "$bin" ]; then
  rebuild=1
else
  for s in "${sources[@]}"; do
    if [ "$s" -nt "$bin" ]; then rebuild=1; fi
  done
fi
if [ "$rebuild" = 1 ]; then "$here/build.sh" "$target"; fi

mkdir -p "$corpus" "$here/build"
# libFuzzer exits non-zero (1 for a crash, 70 for a timeout, 71 for OOM...) on any finding and
# writes the input to the artifact prefix.
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
  -print_final_stats=1 -artifact_prefix="$here/build/" "$corpus" ${seeds[@]+"${seeds[@]}"}
