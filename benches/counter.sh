#!/usr/bin/env bash
# A hot counter through the server: chorus-server (one site, no peers) vs
# redis-server, side by side in one run.
#
# 1. RSS growth (VmRSS after minus before, same process) over N INCRs on one
#    key, sent with `redis-benchmark -P 16 -c 20 -t incr`, after the load
#    settles (SETTLE_S seconds).
# 2. INCR throughput on one key at -P 1 and -P 16 (ROUNDS rounds each,
#    alternating servers, best round of each), and the ratio chorus / redis.
#
# Usage: benches/counter.sh [N]     (default 10000000)
# Env:   CHORUS_SERVER  path of the chorus-server binary (default: build
#                       target/release/chorus-server with cargo)
#        SETTLE_S       seconds to wait after the load (default 3)
#        TPUT_N         requests per throughput round (default 1000000)
#        ROUNDS         throughput rounds per server and depth (default 3)
# Needs: redis-server, redis-cli, redis-benchmark, cargo (unless CHORUS_SERVER).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000000}
SETTLE_S=${SETTLE_S:-3}
TPUT_N=${TPUT_N:-1000000}
ROUNDS=${ROUNDS:-3}
RPORT=$((20000 + RANDOM % 10000))
CPORT=$((RPORT + 10000))
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${CHORUS_SERVER:-}" ]; then
    cargo build --release -q -p chorus-server
    CHORUS_SERVER="${CARGO_TARGET_DIR:-target}/release/chorus-server"
fi

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
wait_ping() {
    for _ in $(seq 1 200); do
        if redis-cli -p "$1" PING >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    exit 1
}

mkdir -p "$WORK/redis" "$WORK/chorus"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
RPID=$!; PIDS+=("$RPID")
"$CHORUS_SERVER" --port "$CPORT" --appendfsync everysec --dir "$WORK/chorus" \
    --loglevel warning >"$WORK/chorus.log" 2>&1 &
CPID=$!; PIDS+=("$CPID")
wait_ping "$RPORT"; wait_ping "$CPORT"
sleep 1
REDIS_VERSION=$(redis-cli -p "$RPORT" INFO server | tr -d '\r' | awk -F: '$1 == "redis_version" { print $2 }')

R0=$(rss_kib "$RPID"); C0=$(rss_kib "$CPID")
for port in "$RPORT" "$CPORT"; do
    redis-benchmark -p "$port" -n "$N" -P 16 -c 20 -t incr -q >/dev/null
done
sleep "$SETTLE_S"
R1=$(rss_kib "$RPID"); C1=$(rss_kib "$CPID")
RV=$(redis-cli -p "$RPORT" GET counter:__rand_int__ | tr -d '\r')
CV=$(redis-cli -p "$CPORT" GET counter:__rand_int__ | tr -d '\r')
if [ "$RV" != "$N" ] || [ "$CV" != "$N" ]; then
    echo "counter values differ from $N: redis $RV, chorus $CV" >&2
    exit 1
fi

# Throughput: best of ROUNDS per server and pipeline depth, alternating.
rps() { # port depth
    redis-benchmark -p "$1" -n "$TPUT_N" -P "$2" -c 20 -t incr -q \
        | tr '\r' '\n' | awk '/requests per second/ { v = $2 } END { print v + 0 }'
}
declare -A BEST
for depth in 1 16; do
    for _ in $(seq 1 "$ROUNDS"); do
        for who in redis chorus; do
            port=$RPORT; [ "$who" = chorus ] && port=$CPORT
            v=$(rps "$port" "$depth")
            k="$who-$depth"
            BEST[$k]=$(awk -v a="${BEST[$k]:-0}" -v b="$v" 'BEGIN { printf "%d", (b > a ? b : a) }')
        done
    done
done

mib() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "one hot counter, $N INCRs (redis-benchmark -P 16 -c 20 -t incr), redis-server $REDIS_VERSION vs chorus-server (one site, no peers)"
printf '%-16s %10s %10s %12s\n' "server" "RSS0 KiB" "RSS KiB" "growth MiB"
printf '%-16s %10s %10s %12s\n' "redis-server" "$R0" "$R1" "$(mib "$R0" "$R1")"
printf '%-16s %10s %10s %12s\n' "chorus-server" "$C0" "$C1" "$(mib "$C0" "$C1")"
echo "target: chorus growth <= redis growth + 16 MiB"
echo
printf '%-10s %14s %14s %8s\n' "INCR" "redis rps" "chorus rps" "ratio"
for depth in 1 16; do
    printf '%-10s %14s %14s %8s\n' "-P $depth" "${BEST[redis-$depth]}" "${BEST[chorus-$depth]}" \
        "$(ratio "${BEST[chorus-$depth]}" "${BEST[redis-$depth]}")"
done
echo "best of $ROUNDS rounds of $TPUT_N requests each, -c 20; target >= 0.9"
