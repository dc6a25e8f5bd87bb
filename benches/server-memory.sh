#!/usr/bin/env bash
# Memory per key through the server: chorus-server vs redis-server, side by side.
#
# Loads N string keys (16-byte keys "key:000000000000", 100-byte values) into
#  * redis-server (7.0, `--save '' --appendonly no`) and
#  * chorus-server (`--appendfsync everysec`, no peers),
# both with `redis-cli --pipe` from the same file, then prints each process's
# resident set (VmRSS from /proc) before and after, per key, and the ratio.
# Chorus is measured twice: once the load has settled (the background tick has
# run its group commit, checkpoints and backlog trimming; no new checkpoint for
# SETTLE_S seconds), and again after an explicit `SAVE` (a checkpoint, after
# which the op-log backlog kept in memory shrinks to what peers still need:
# nothing here).
#
# With HLL=M, the keys are N HyperLogLogs ("hll:000000000000") of M elements
# each instead (one PFADD of M elements "e:<key>:<j>" per key; the commands
# are generated twice and streamed, not kept: N = 1,000,000 and M = 1,000 is
# about 13 GB), and PFCOUNT of the first and last key is compared.
#
# Usage: benches/server-memory.sh [N]     (default 1000000)
# Env:   CHORUS_SERVER  path of the chorus-server binary (default: build
#                       target/release/chorus-server with cargo)
#        SETTLE_S       seconds to wait after the load (default 5)
#        HLL            elements per HyperLogLog key (default: string keys)
# Needs: redis-server, redis-cli, cargo (unless CHORUS_SERVER is given).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
HLL=${HLL:-}
SETTLE_S=${SETTLE_S:-5}
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
dbsize() { redis-cli -p "$1" DBSIZE | tr -d '\r'; }

generate() {
    if [ -n "$HLL" ]; then
        awk -v n="$N" -v m="$HLL" 'BEGIN {
            for (i = 0; i < n; i++) {
                printf "*%d\r\n$5\r\nPFADD\r\n$16\r\nhll:%012d\r\n", m + 2, i
                for (j = 0; j < m; j++) {
                    e = sprintf("e:%d:%d", i, j)
                    printf "$%d\r\n%s\r\n", length(e), e
                }
            }
        }'
    else
        cat "$WORK/load.resp"
    fi
}
if [ -z "$HLL" ]; then
    echo "generating $N SET commands" >&2
    awk -v n="$N" 'BEGIN {
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            v = sprintf("value-%08d-", i)
            while (length(v) < 100) v = v "x"
            printf "*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$100\r\n%s\r\n", k, v
        }
    }' >"$WORK/load.resp"
fi

mkdir -p "$WORK/redis" "$WORK/chorus"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
RPID=$!; PIDS+=("$RPID")
"$CHORUS_SERVER" --port "$CPORT" --appendfsync everysec --dir "$WORK/chorus" \
    --loglevel warning >"$WORK/chorus.log" 2>&1 &
CPID=$!; PIDS+=("$CPID")
wait_ping "$RPORT"; wait_ping "$CPORT"
sleep 1
R0=$(rss_kib "$RPID"); C0=$(rss_kib "$CPID")
REDIS_VERSION=$(redis-cli -p "$RPORT" INFO server | tr -d '\r' | awk -F: '$1 == "redis_version" { print $2 }')

load() { # port name
    local t0 t1
    t0=$(date +%s.%N)
    generate | redis-cli -p "$1" --pipe >"$WORK/$2.pipe.log"
    t1=$(date +%s.%N)
    local keys; keys=$(dbsize "$1")
    if [ "$keys" != "$N" ]; then
        echo "$2 holds $keys keys, expected $N" >&2
        cat "$WORK/$2.pipe.log" >&2
        exit 1
    fi
    awk -v a="$t0" -v b="$t1" -v n="$N" -v who="$2" 'BEGIN { printf "%s: loaded %d keys in %.1f s\n", who, n, b - a }' >&2
}
load "$RPORT" redis
load "$CPORT" chorus

# Let chorus's background work (group commit, checkpoints of dirty rows,
# backlog trimming) catch up: wait until no checkpoint has run for SETTLE_S s.
last=""
for _ in $(seq 1 120); do
    now=$(redis-cli -p "$CPORT" LASTSAVE | tr -d '\r')
    if [ "$now" = "$last" ]; then break; fi
    last=$now
    sleep "$SETTLE_S"
done
R1=$(rss_kib "$RPID"); C1=$(rss_kib "$CPID")
redis-cli -p "$CPORT" SAVE >/dev/null
sleep 2
C2=$(rss_kib "$CPID")
CUSED=$(redis-cli -p "$CPORT" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
RUSED=$(redis-cli -p "$RPORT" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')

if [ -n "$HLL" ]; then
    for i in 0 $((N - 1)); do
        k=$(printf 'hll:%012d' "$i")
        rc=$(redis-cli -p "$RPORT" PFCOUNT "$k"); cc=$(redis-cli -p "$CPORT" PFCOUNT "$k")
        echo "PFCOUNT $k: redis $rc, chorus $cc$([ "$rc" = "$cc" ] || echo '  DIFFERENT')"
    done
fi

per_key() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.1f", (b - a) * 1024 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
RK=$(per_key "$R0" "$R1"); CK1=$(per_key "$C0" "$C1"); CK2=$(per_key "$C0" "$C2")
echo
if [ -n "$HLL" ]; then
    echo "memory per key through the server, $N HyperLogLog keys of $HLL elements, loaded with redis-cli --pipe"
else
    echo "memory per key through the server, $N string keys (16-byte keys, 100-byte values), loaded with redis-cli --pipe"
fi
printf '%-46s %10s %10s %10s %8s\n' "server" "RSS0 KiB" "RSS KiB" "B/key" "x redis"
printf '%-46s %10s %10s %10s %8s\n' "redis-server $REDIS_VERSION" "$R0" "$R1" "$RK" "1.00"
printf '%-46s %10s %10s %10s %8s\n' "chorus-server, settled" "$C0" "$C1" "$CK1" "$(ratio "$CK1" "$RK")"
printf '%-46s %10s %10s %10s %8s\n' "chorus-server, after SAVE" "$C0" "$C2" "$CK2" "$(ratio "$CK2" "$RK")"
echo "used_memory (INFO): redis $RUSED, chorus $CUSED"
echo "B/key = RSS growth / N; target: chorus <= 2 x redis"
