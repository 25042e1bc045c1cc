#!/bin/bash
# bench/env_ab.sh VAR=VALUE [MTU] [REPS] [bench|folder|file]: one l2fast setting (an environment
# variable of both daemons) against the default, alternating, REPS runs each, on a 2-host lab.
#   bench:  `l2fast bench -t 3` between two daemons; prints MTU, setting, Gbit/s, sender CPU %,
#           receiver CPU %, retransmitted frames.
#   folder: `l2fast send` of a folder of 60 x 2 MiB files (one receive process each) into a
#           daemon; prints MTU, setting, seconds, verified.
#   file:   `l2fast send` of one 1 GiB tmpfs file into a daemon; prints MTU, setting, seconds,
#           Gbit/s, verified.
# Root only; the lab, daemons and files it made are removed on every exit.
#   sudo bench/env_ab.sh L2FAST_FANOUT=0 1500 3             receiving fanout group off / on
#   sudo bench/env_ab.sh L2FAST_FANOUT=0 9000 2 folder
#   sudo bench/env_ab.sh L2FAST_CRC32C=sse4.2 9000 3        CRC32C three lanes / folding
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,14p' "$0"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "FAILED: needs root (network namespaces): run it with sudo" >&2; exit 1; }
SETTING=${1:-}
case "$SETTING" in L2FAST_*=*) ;; *) echo "FAILED: first argument must be L2FAST_VAR=VALUE (see --help)" >&2; exit 1;; esac
MTU=${2:-1500}
REPS=${3:-3}
MODE=${4:-bench}
case "$MODE" in bench|folder|file) ;; *) echo "FAILED: mode must be bench, folder or file" >&2; exit 1;; esac
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
SRC=$(mktemp -d /dev/shm/fab-src.XXXXXX)
DIRS+=("$SRC")
if [ "$MODE" = folder ]; then
    for i in $(seq 60); do head -c 2097152 /dev/urandom > "$SRC/f$i.bin"; done
elif [ "$MODE" = file ]; then
    head -c 1073741824 /dev/urandom > "$SRC/big.bin"
fi
for _ in $(seq "$REPS"); do
    for label in "$SETTING" default; do
        if [ "$label" = default ]; then envset=(); else envset=("$SETTING"); fi
        $L lab up --name $NAME --hosts 2 --mtu "$MTU" >/dev/null
        PIDS=()
        for h in 1 2; do
            dir=$(mktemp -d /dev/shm/fab.XXXXXX)
            DIRS+=("$dir")
            env "${envset[@]}" ip netns exec $NAME-h$h $L daemon -i eth0 --name fab$h \
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
print($MTU, '$label', e['gbit_per_s'], e['sender_cpu_pct'], e['receiver_cpu_pct'],
      e['retransmits'])"
        else
            what="$SRC"
            [ "$MODE" = file ] && what="$SRC/big.bin"
            # file: the sender is this command, so it gets the setting too.
            env "${envset[@]}" ip netns exec $NAME-h1 $L send "$peer" "$what" --json | tail -1 | .venv/bin/python -c "
import json, sys
e = json.load(sys.stdin)
rate = '' if '$MODE' == 'folder' else round(e['bytes'] * 8 / e['seconds'] / 1e9, 2)
print($MTU, '$label', e['seconds'], rate, 'verified' if e['verified'] else 'NOT VERIFIED')"
        fi
        for p in "${PIDS[@]}"; do kill "$p"; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
        PIDS=()
        $L lab down --name $NAME >/dev/null
    done
done
