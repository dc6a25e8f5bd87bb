#!/usr/bin/env bash
# Memory per key, Chorus engine vs redis-server, in one run.
#
# Loads N string keys (16-byte keys "key:000000000000", 100-byte values) into
#  * redis-server (7.0; no persistence) via `redis-cli --pipe`, and
#  * the Chorus engine (the `engine` bench binary in memory mode, on the redb
#    backend: op log on disk, keyspace in memory), once with the default
#    backlog (encoded ops kept in memory for peers, 256 MiB max) and once with
#    no backlog (keyspace alone),
# and prints resident memory per key for each (RSS growth / N), plus redis's own
# used_memory growth / N.
#
# Usage: benches/memory.sh [N]   (default 1000000)
# Needs: redis-server, redis-cli, cargo. Builds the bench binary in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
PORT=${REDIS_PORT:-$((20000 + RANDOM % 20000))}
WORK=$(mktemp -d)
REDIS_PID=""
cleanup() {
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

info_field() { # port field
    redis-cli -p "$1" INFO memory | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

# ---- redis-server -------------------------------------------------------------
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 100); do
    if redis-cli -p "$PORT" PING >/dev/null 2>&1; then break; fi
    sleep 0.1
done
REDIS_VERSION=$(redis-cli -p "$PORT" INFO server | tr -d '\r' | awk -F: '$1 == "redis_version" { print $2 }')
RSS0=$(info_field "$PORT" used_memory_rss)
USED0=$(info_field "$PORT" used_memory)
awk -v n="$N" 'BEGIN {
    for (i = 0; i < n; i++) {
        k = sprintf("key:%012d", i)
        v = sprintf("value-%08d-", i)
        while (length(v) < 100) v = v "x"
        printf "*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$100\r\n%s\r\n", k, v
    }
}' | redis-cli -p "$PORT" --pipe >"$WORK/pipe.log"
KEYS=$(redis-cli -p "$PORT" DBSIZE | tr -d '\r')
RSS1=$(info_field "$PORT" used_memory_rss)
USED1=$(info_field "$PORT" used_memory)
if [ "$KEYS" != "$N" ]; then
    echo "redis holds $KEYS keys, expected $N" >&2
    cat "$WORK/pipe.log" >&2
    exit 1
fi
REDIS_RSS_PER_KEY=$(awk -v a="$RSS0" -v b="$RSS1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')
REDIS_USED_PER_KEY=$(awk -v a="$USED0" -v b="$USED1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""

# ---- chorus engine ----------------------------------------------------------------
cargo bench --bench engine --no-run -q 2>/dev/null || cargo bench --bench engine --no-run
chorus_run() { # backlog bytes (empty: default)
    local out
    if [ -n "$1" ]; then
        out=$(CHORUS_MEMORY_KEYS="$N" CHORUS_MEMORY_BACKLOG_BYTES="$1" cargo bench -q --bench engine 2>/dev/null | grep '^chorus ')
    else
        out=$(CHORUS_MEMORY_KEYS="$N" cargo bench -q --bench engine 2>/dev/null | grep '^chorus ')
    fi
    echo "$out" >&2
    echo "$out" | tr ' ' '\n' | awk -F= '$1 == "bytes_per_key" { print $2 }'
}
CHORUS_DEFAULT=$(chorus_run "")
CHORUS_NO_BACKLOG=$(chorus_run 0)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "memory per key, $N string keys (16-byte keys, 100-byte values)"
printf '%-44s %12s %10s\n' "store" "bytes/key" "x redis"
printf '%-44s %12s %10s\n' "redis-server $REDIS_VERSION (RSS growth)" "$REDIS_RSS_PER_KEY" "1.00"
printf '%-44s %12s %10s\n' "redis-server $REDIS_VERSION (used_memory growth)" "$REDIS_USED_PER_KEY" "$(ratio "$REDIS_USED_PER_KEY" "$REDIS_RSS_PER_KEY")"
printf '%-44s %12s %10s\n' "chorus engine, default backlog (RSS growth)" "$CHORUS_DEFAULT" "$(ratio "$CHORUS_DEFAULT" "$REDIS_RSS_PER_KEY")"
printf '%-44s %12s %10s\n' "chorus engine, no backlog (RSS growth)" "$CHORUS_NO_BACKLOG" "$(ratio "$CHORUS_NO_BACKLOG" "$REDIS_RSS_PER_KEY")"
