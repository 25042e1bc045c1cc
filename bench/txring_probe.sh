#!/bin/bash
# bench/txring_probe.sh [MTU] [RUNS]: a blast of MTU-sized frames sent with sendmmsg and through
# a PACKET_TX_RING (bench/txring_probe.c), interleaved, RUNS times each (default 3), into a
# counting socket across a 2-host lab it builds and removes; then, when perf is there, one more
# TX-ring run under perf to show where its sending core's time goes. Root only.
#
# Examples:
#   sudo bench/txring_probe.sh              MTU 65535, 3 runs of each
#   sudo bench/txring_probe.sh 9000 5
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,9p' "$0"; exit 0; fi
cd "$(dirname "$0")/.."
MTU=${1:-65535}
RUNS=${2:-3}
case "$MTU$RUNS" in '' | *[!0-9]*) echo "FAILED: MTU and RUNS must be numbers (see --help)" >&2; exit 1 ;; esac
if [ "$MTU" -lt 68 ] || [ "$MTU" -gt 65535 ]; then echo "FAILED: MTU must be 68..65535" >&2; exit 1; fi
[ "$(id -u)" = 0 ] || { echo "FAILED: run as root (it builds network namespaces)" >&2; exit 1; }
trap 'echo "FAILED: line $LINENO: $BASH_COMMAND" >&2' ERR
LEN=$((MTU + 14))
NAME=tr$$
BIN=/tmp/txring_probe.$$
OUT=/tmp/txring_probe.$$.out
cc -O2 -Wall -o $BIN bench/txring_probe.c
trap '.venv/bin/l2fast lab down --name $NAME >/dev/null 2>&1 || true; rm -f $BIN $OUT $BIN.perf' EXIT
.venv/bin/l2fast lab up --name $NAME --hosts 2 --mtu "$MTU" >/dev/null
one_run() {
    ip netns exec $NAME-h2 $BIN recv 3 > $OUT &
    local receiver=$!
    sleep 0.5
    if ! ip netns exec $NAME-h1 "$@"; then
        kill $receiver 2> /dev/null || true
        wait $receiver 2> /dev/null || true
        return 1
    fi
    wait $receiver
    cat $OUT
}
for _ in $(seq "$RUNS"); do
    for mode in sendmmsg txring; do
        one_run $BIN $mode 3 $LEN
    done
done
if command -v perf > /dev/null; then
    echo "one more txring run under perf (sending side, kernel symbols, top 8):"
    one_run perf record -q -o $BIN.perf $BIN txring 3 $LEN > /dev/null 2>&1 || true
    perf report -i $BIN.perf --no-children --stdio --sort symbol 2> /dev/null \
        | grep -E '^ +[0-9]' | awk 'NR <= 8' || true
fi
