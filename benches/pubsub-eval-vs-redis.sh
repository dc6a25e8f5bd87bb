#!/usr/bin/env bash
# PUBLISH and EVALSHA throughput of chorus-server side by side with
# redis-server 7.0, measured with redis-benchmark against two servers that
# are already running (as for benches/bench-vs-redis.sh). Prints a Markdown
# table for docs/benchmarks.md.
#
# Usage:
#     benches/pubsub-eval-vs-redis.sh CHORUS_PORT REDIS_PORT [REQUESTS]
#
# Rows, each run on both servers one after the other (127.0.0.1):
#   PUBLISH, no subscriber:     redis-benchmark PUBLISH ch hello
#   PUBLISH, 1 subscriber:      the same while a redis-cli SUBSCRIBE ch reads
#   EVALSHA read-modify-write:  a script that INCRs a random key and GETs it
# REQUESTS is redis-benchmark's -n (default 200000); -c 50 -P 1.
#
# Environment: BENCH_CLIENTS (-c, 50), BENCH_PIPELINE (-P, 1).

set -u

me=pubsub-eval-vs-redis.sh
die() { echo "$me: $*" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
C_PORT=$1 R_PORT=$2 REQUESTS=${3:-200000}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-1}
command -v redis-benchmark >/dev/null || die "redis-benchmark not found"
command -v redis-cli >/dev/null || die "redis-cli not found"

SCRIPT="local n = redis.call('incr', KEYS[1]) return tonumber(redis.call('get', KEYS[1])) + n"

# ops/s of one redis-benchmark run of "$@" against port $1
rate() {
    local port=$1
    shift
    redis-benchmark -h 127.0.0.1 -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$PIPELINE" \
        -r 100000 --csv "$@" 2>/dev/null | tail -n 1 | cut -d, -f2 | tr -d '"'
}

row() { # name, then the command
    local name=$1
    shift
    local c r
    c=$(rate "$C_PORT" "$@")
    r=$(rate "$R_PORT" "$@")
    awk -v n="$name" -v c="$c" -v r="$r" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.2f |\n", n, c, r, (r > 0 ? c / r : 0) }'
}

echo "| test | chorus ops/s | redis ops/s | chorus / redis |"
echo "|---|---|---|---|"
row "PUBLISH, no subscriber" PUBLISH ch hello

subs=()
for port in "$C_PORT" "$R_PORT"; do
    redis-cli -p "$port" SUBSCRIBE ch >/dev/null &
    subs+=($!)
done
sleep 0.5
row "PUBLISH, 1 subscriber" PUBLISH ch hello
kill "${subs[@]}" 2>/dev/null
wait "${subs[@]}" 2>/dev/null

c_sha=$(redis-cli -p "$C_PORT" SCRIPT LOAD "$SCRIPT")
r_sha=$(redis-cli -p "$R_PORT" SCRIPT LOAD "$SCRIPT")
[ "$c_sha" = "$r_sha" ] || die "SCRIPT LOAD gave $c_sha and $r_sha"
row "EVALSHA incr + get" EVALSHA "$c_sha" 1 "counter:__rand_int__"
