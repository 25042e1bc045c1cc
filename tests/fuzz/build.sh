#!/usr/bin/env bash
# Build a libFuzzer target with ASan + UBSan into tests/fuzz/build/.
# Usage: tests/fuzz/build.sh [TARGET]   (needs clang with the libFuzzer runtime: libclang-rt-14-dev)
#   TARGET: fuzz_parse_batch (default: the C frame parser) or fuzz_rxwindow (the receive path's
#   window, rings and writer, fed by a socketpair and a scribbling "other process"), or fuzz_echo
#   (the echo responder's per-frame decision and rate limits), or fuzz_txstream (the sender's
#   streaming burst, fed FEEDBACK frames by a socketpair)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/build"
target="${1:-fuzz_parse_batch}"
case "$target" in
  fuzz_parse_batch) units=(frame.c crc32c.c) ;;   # no socket I/O
  fuzz_rxwindow) units=(rxpath.c ring.c writer.c frame.c crc32c.c) ;;
  fuzz_echo) units=(echo.c rawsock.c frame.c crc32c.c) ;;   # the decision only: no socket opened
  fuzz_txstream) units=(txstream.c txpath.c rawsock.c frame.c crc32c.c) ;;
  *) echo "fuzz: unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "$out"

CC="${CC:-}"
if [ -z "$CC" ]; then
  for c in clang clang-14 clang-15 clang-16 clang-17 clang-18; do
    if command -v "$c" >/dev/null 2>&1; then CC="$c"; break; fi
  done
fi
if [ -z "$CC" ]; then
  echo "fuzz: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -I"$root/csrc" \
  "$here/$target.c" "${units[@]/#/$root/csrc/}" \
  -lpthread -o "$out/$target"
echo "built $out/$target"
