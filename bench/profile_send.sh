#!/bin/sh
# Where the time of one `l2fast send` goes: a 1 GiB tmpfs file h1 -> h2 at MTU 9000 on a
# 2-host lab, the sender in-process (no daemon in h1) under cProfile, a receiving daemon in h2,
# and (if perf can sample here) `perf record -e cpu-clock -a -g` over both cores meanwhile.
#
#   sudo sh bench/profile_send.sh [OUTDIR]      (default /tmp/l2fast-profile)
#
# Writes OUTDIR/send.prof (cProfile of the sender), OUTDIR/send.json (its NDJSON),
# OUTDIR/perf.data and the text summaries OUTDIR/cprofile.txt, OUTDIR/perf-comm.txt and
# OUTDIR/perf-symbols.txt. The lab, the daemon and the files are removed at the end.
#
# The perf part, attributed per role (sender main loop, SHA-256 threads, receive process,
# writers, daemon loop, softirq) with CPU seconds per GiB, is bench/cpu_profile.py, which
# compare.py runs where a target is missed; this script stays for the sender's cProfile.
set -eu
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,14p' "$0"; exit 0; fi
OUT=${1:-/tmp/l2fast-profile}
PY=${PY:-.venv/bin/python}
LAB=prf$$
SIZE_MIB=${SIZE_MIB:-1024}
MTU=${MTU:-9000}
WORK=/dev/shm/l2fast-profile-$$
mkdir -p "$OUT" "$WORK/rx"
DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    "$PY" -m l2fast lab down --name "$LAB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
"$PY" -m l2fast lab up --name "$LAB" --hosts 2 --mtu "$MTU" >/dev/null
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/file.bin"
ip netns exec "$LAB-h2" "$PY" -m l2fast daemon -i eth0 --name h2 --accept all \
    --recv-dir "$WORK/rx" 2>"$OUT/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do
    ip netns exec "$LAB-h2" ss -xlH | grep -q @l2fast/eth0 && break
    sleep 0.05
done
PERF=
if command -v perf >/dev/null && perf record -e cpu-clock -o "$OUT/probe.data" true 2>/dev/null; then
    perf record -e cpu-clock -F 999 -a -g -o "$OUT/perf.data" 2>/dev/null &
    PERF=$!
    sleep 0.5
fi
MAC=$(ip netns exec "$LAB-h2" cat /sys/class/net/eth0/address)
ip netns exec "$LAB-h1" "$PY" -m cProfile -o "$OUT/send.prof" -m l2fast send "$MAC" \
    "$WORK/file.bin" --json -i eth0 --name h1 >"$OUT/send.json"
if [ -n "$PERF" ]; then
    kill -INT "$PERF"
    wait "$PERF" || true
    perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -20 >"$OUT/perf-comm.txt"
    perf report -i "$OUT/perf.data" --no-children --sort comm,dso,symbol --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 >"$OUT/perf-symbols.txt"
fi
"$PY" -c "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats('tottime').print_stats(25)" \
    "$OUT/send.prof" >"$OUT/cprofile.txt"
tail -n 1 "$OUT/send.json"
echo "profile in $OUT"
