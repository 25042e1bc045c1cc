#!/bin/bash
# bench/movsb_probe.sh: GB/s of a 65000-byte `rep movsb` (the kernel's user-copy instruction) by
# the distance from source to destination modulo 4096, buffers in cache (bench/movsb_probe.c).
# Shows why l2fast places bulk frames at fixed offsets (csrc/l2fast_core.h, BENCHMARKS.md "Copy
# alignment"). No root needed.
#   bench/movsb_probe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,6p' "$0"; exit 0; fi
out=$(mktemp /tmp/movsb_probe.XXXXXX)
trap 'rm -f "$out"' EXIT
cc -O2 -Wall -Wextra -o "$out" bench/movsb_probe.c
echo "distance GB/s"
"$out"
