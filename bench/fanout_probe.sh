#!/bin/bash
# bench/fanout_probe.sh [MTU]: the raw blast into one counting socket, alone, beside two older
# filtered sockets, and in one fanout group with them (bench/fanout_probe.c), 3 interleaved runs
# each, on a 2-host lab it builds and removes. Root only.
#
# Example: sudo bench/fanout_probe.sh 9000
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,6p' "$0"; exit 0; fi
cd "$(dirname "$0")/.."
MTU=${1:-1500}
NAME=fp$$
cc -O2 -o /tmp/fanout_probe.$$ bench/fanout_probe.c
trap '.venv/bin/l2fast lab down --name $NAME >/dev/null 2>&1 || true; rm -f /tmp/fanout_probe.$$' EXIT
.venv/bin/l2fast lab up --name $NAME --hosts 2 --mtu "$MTU" >/dev/null
for _ in 1 2 3; do
    for mode in alone separate fanout; do
        ip netns exec $NAME-h2 /tmp/fanout_probe.$$ $mode 3 > /tmp/fanout_probe.$$.out &
        sleep 0.7
        ip netns exec $NAME-h1 .venv/bin/python -m l2fast.rawblast tx --dst 02:4c:32:00:00:02 \
            --seconds 3 > /dev/null
        wait
        tail -1 /tmp/fanout_probe.$$.out
    done
done
rm -f /tmp/fanout_probe.$$.out
