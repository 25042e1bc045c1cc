#!/bin/bash
# bench/movsb_probe.sh: GB/s of a 65000-byte copy with the kernel's user-copy instruction (`rep
# movsb` on CPUs with ERMS, `rep movsq` without) by the distance from source to destination modulo
# 4096, buffers in cache (bench/movsb_probe.c); measures both and says which one this CPU's kernel
# runs. Shows why l2fast places bulk frames at fixed offsets (csrc/l2fast_core.h, BENCHMARKS.md
# "Copy alignment"). No root needed.
#   bench/movsb_probe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,7p' "$0"; exit 0; fi
out=$(mktemp /tmp/movsb_probe.XXXXXX)
trap 'rm -f "$out"' EXIT
cc -O2 -Wall -Wextra -o "$out" bench/movsb_probe.c
if grep -qw erms /proc/cpuinfo; then used=movsb; else used=movsq; fi
echo "this CPU's kernel copies with rep $used (ERMS $([ $used = movsb ] && echo present || echo absent))"
paste -d' ' <(echo "distance movsb-GB/s"; "$out" movsb) <(echo "movsq-GB/s"; "$out" movsq | awk '{print $2}') |
    awk '{printf "%8s %12s %12s\n", $1, $2, $3}'
