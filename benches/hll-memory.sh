#!/usr/bin/env bash
# Memory of HyperLogLog keys through the server: chorus-server vs redis-server.
#
# Loads N HyperLogLog keys ("hll:000000000000") of M elements each (one PFADD
# of M elements per key, elements "e:<key>:<j>") into
#  * redis-server (7.0, `--save '' --appendonly no`) and
#  * chorus-server (`--appendfsync everysec`, no peers),
# both with `redis-cli --pipe` from the same generator (streamed, not kept on
# disk: N = 1,000,000 and M = 1,000 is about 13 GB of commands), then prints
# each process's resident set growth per key (after the load settled, and
# for Chorus again after a `SAVE`), the ratio, and PFCOUNT of the first and
# last keys on both (they must be equal).
#
# Usage: benches/hll-memory.sh [N [M]]     (default 1000000 1000)
# Env:   CHORUS_SERVER  path of the chorus-server binary (default: build
#                       target/release/chorus-server with cargo)
#        SETTLE_S       seconds to wait after the load (default 5)
# Needs: redis-server, redis-cli, awk, cargo (unless CHORUS_SERVER is given).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
M=${2:-1000}
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
    awk -v n="$N" -v m="$M" 'BEGIN {
        for (i = 0; i < n; i++) {
            k = sprintf("hll:%012d", i)
            printf "*%d\r\n$5\r\nPFADD\r\n$16\r\n%s\r\n", m + 2, k
            for (j = 0; j < m; j++) {
                e = sprintf("e:%d:%d", i, j)
                printf "$%d\r\n%s\r\n", length(e), e
            }
        }
    }'
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

first=$(printf 'hll:%012d' 0); lastkey=$(printf 'hll:%012d' $((N - 1)))
for k in "$first" "$lastkey"; do
    rc=$(redis-cli -p "$RPORT" PFCOUNT "$k"); cc=$(redis-cli -p "$CPORT" PFCOUNT "$k")
    echo "PFCOUNT $k: redis $rc, chorus $cc$([ "$rc" = "$cc" ] || echo '  DIFFERENT')"
done

per_key() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.1f", (b - a) * 1024 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
RK=$(per_key "$R0" "$R1"); CK1=$(per_key "$C0" "$C1"); CK2=$(per_key "$C0" "$C2")
echo
echo "memory per HyperLogLog key through the server, $N keys of $M elements, loaded with redis-cli --pipe"
printf '%-46s %10s %10s %10s %8s\n' "server" "RSS0 KiB" "RSS KiB" "B/key" "x redis"
printf '%-46s %10s %10s %10s %8s\n' "redis-server $REDIS_VERSION" "$R0" "$R1" "$RK" "1.00"
printf '%-46s %10s %10s %10s %8s\n' "chorus-server, settled" "$C0" "$C1" "$CK1" "$(ratio "$CK1" "$RK")"
printf '%-46s %10s %10s %10s %8s\n' "chorus-server, after SAVE" "$C0" "$C2" "$CK2" "$(ratio "$CK2" "$RK")"
echo "B/key = RSS growth / N; issue 20 target: chorus <= 1.5 x redis"
