#!/usr/bin/env bash
# Build the libFuzzer target for the C frame parser with ASan + UBSan into tests/fuzz/build/.
# Usage: tests/fuzz/build.sh   (needs clang with the libFuzzer runtime: libclang-rt-14-dev)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/build"
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

# Only the parser and CRC sources: the fuzz target does no socket I/O.
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -I"$root/csrc" \
  "$here/fuzz_parse_batch.c" "$root/csrc/frame.c" "$root/csrc/crc32c.c" \
  -o "$out/fuzz_parse_batch"
echo "built $out/fuzz_parse_batch"
