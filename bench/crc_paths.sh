#!/bin/bash
# bench/crc_paths.sh [--json]: ns per call of each CRC32C path of csrc/crc32c.c (table, SSE4.2
# three lanes, VPCLMULQDQ folding, 128-bit PCLMULQDQ folding) on 64 B, 256 B, 1486 B, 8986 B and
# 65000 B buffers, from C (bench/crc_paths.c, built here with the flags of the package build).
# No root needed.
#   bench/crc_paths.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,6p' "$0"; exit 0; fi
out=$(mktemp /tmp/crc_paths.XXXXXX)
trap 'rm -f "$out"' EXIT
cc -O2 -Icsrc -o "$out" bench/crc_paths.c csrc/crc32c.c -lpthread
"$out" ${1:+json}
