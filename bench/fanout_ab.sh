#!/bin/bash
# bench/fanout_ab.sh [MTU] [REPS] [bench|folder]: the receiving fanout group off
# (L2FAST_FANOUT=0: every socket on the EtherType is offered every frame) and on (the default),
# alternating, REPS runs each, on a 2-host lab. bench: `l2fast bench -t 3` between two daemons;
# prints MTU, fanout off/on, Gbit/s, sender CPU %, receiver CPU %, retransmitted frames.
# folder: `l2fast send` of a folder of 60 x 2 MiB files (one receive process each) into a
# daemon; prints MTU, fanout off/on, seconds, verified. Root only; the lab, daemons and files
# it made are removed on every exit.
#   sudo bench/fanout_ab.sh 1500 3
#   sudo bench/fanout_ab.sh 9000 2 folder
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,10p' "$0"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "FAILED: needs root (network namespaces): run it with sudo" >&2; exit 1; }
MTU=${1:-1500}
REPS=${2:-3}
MODE=${3:-bench}
case "$MODE" in bench|folder) ;; *) echo "FAILED: mode must be bench or folder" >&2; exit 1;; esac
L=.venv/bin/l2fast
NAME=fab$$
PIDS=()
DIRS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    $L lab down --name $NAME >/dev/null 2>&1 || true
    for d in "${DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
if [ "$MODE" = folder ]; then
    SRC=$(mktemp -d /dev/shm/fab-src.XXXXXX)
    DIRS+=("$SRC")
    for i in $(seq 60); do head -c 2097152 /dev/urandom > "$SRC/f$i.bin"; done
fi
for _ in $(seq "$REPS"); do
    for fanout in 0 1; do
        $L lab up --name $NAME --hosts 2 --mtu "$MTU" >/dev/null
        PIDS=()
        for h in 1 2; do
            dir=$(mktemp -d /dev/shm/fab.XXXXXX)
            DIRS+=("$dir")
            L2FAST_FANOUT=$fanout ip netns exec $NAME-h$h $L daemon -i eth0 --name fab$h \
                --recv-dir "$dir" --accept all >/dev/null 2>&1 &
            PIDS+=($!)
        done
        for _ in $(seq 50); do
            ip netns exec $NAME-h2 $L status --json >/dev/null 2>&1 && break
            sleep 0.1
        done
        peer=$(ip netns exec $NAME-h2 $L status --json | .venv/bin/python -c \
            "import json,sys; print(json.load(sys.stdin)['mac'])")
        if [ "$MODE" = bench ]; then
            ip netns exec $NAME-h1 $L bench "$peer" -t 3 --json | .venv/bin/python -c "
import json, sys
e = json.load(sys.stdin)['end']
print($MTU, 'fanout=' + ('on' if $fanout else 'off'), e['gbit_per_s'], e['sender_cpu_pct'],
      e['receiver_cpu_pct'], e['retransmits'])"
        else
            ip netns exec $NAME-h1 $L send "$peer" "$SRC" --json | tail -1 | .venv/bin/python -c "
import json, sys
e = json.load(sys.stdin)
print($MTU, 'fanout=' + ('on' if $fanout else 'off'), e['seconds'], 'verified' if e['verified'] else 'NOT VERIFIED')"
        fi
        for p in "${PIDS[@]}"; do kill "$p"; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
        PIDS=()
        $L lab down --name $NAME >/dev/null
    done
done
