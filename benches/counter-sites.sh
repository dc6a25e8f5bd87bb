#!/usr/bin/env bash
# A hot counter incremented at 2 or 3 sites at once (issue 15): the RSS
# growth of each chorus-server (VmRSS after minus before, same process)
# once the load stops, the sites converge and the stability frontier has
# folded the increments, side by side with one redis-server taking all of
# them.
#
# Usage: benches/counter-sites.sh [N] [SITES]
#        N      INCRs in all (default 10000000), split evenly between sites
#        SITES  2 or 3 (default 2), a full mesh
# Env:   CHORUS_SERVER  path of chorus-server (default: cargo build --release)
#        SETTLE_S       seconds after convergence before RSS is read (default 3)
# Needs: redis-server, redis-cli, redis-benchmark, cargo (unless CHORUS_SERVER).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000000}
SITES=${2:-2}
SETTLE_S=${SETTLE_S:-3}
BASE=$((20000 + RANDOM % 10000))
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
    for _ in $(seq 1 300); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "no server on port $1" >&2
    return 1
}
field() { redis-cli -p "$1" INFO replication | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

"$CHORUS_SERVER" cert ca --out "$WORK/ca" >/dev/null
SPIDS=()
for id in $(seq 1 "$SITES"); do
    "$CHORUS_SERVER" cert site --ca "$WORK/ca" --site-id "$id" --out "$WORK/s$id" >/dev/null
done
for id in $(seq 1 "$SITES"); do
    peers=()
    for other in $(seq 1 "$SITES"); do
        [ "$other" = "$id" ] || peers+=(--peer "$other@127.0.0.1:$((BASE + 100 + other))")
    done
    "$CHORUS_SERVER" --site-id "$id" --port $((BASE + id)) --repl-port $((BASE + 100 + id)) \
        --dir "$WORK/d$id" --appendfsync everysec --loglevel warning \
        --tls-ca "$WORK/ca/ca.pem" --tls-cert "$WORK/s$id/site.pem" --tls-key "$WORK/s$id/site.key" \
        "${peers[@]}" >"$WORK/s$id.log" 2>&1 &
    SPIDS+=($!)
    PIDS+=($!)
done
redis-server --port $((BASE + 99)) --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for id in $(seq 1 "$SITES"); do wait_ping $((BASE + id)); done
wait_ping $((BASE + 99))
for id in $(seq 1 "$SITES"); do
    for _ in $(seq 1 300); do
        [ "$(field $((BASE + id)) connected_peers)" = "$((SITES - 1))" ] && break
        sleep 0.1
    done
done

declare -A BEFORE
for i in $(seq 0 $((SITES - 1))); do BEFORE[$i]=$(rss_kib "${SPIDS[$i]}"); done
RBEFORE=$(rss_kib "$RPID")
PER=$((N / SITES))
echo "== $N INCRs on one key: $PER at each of $SITES sites at once (-P 16 -c 20)"
LOADS=()
for id in $(seq 1 "$SITES"); do
    redis-benchmark -p $((BASE + id)) -n "$PER" -P 16 -c 20 -t incr -q >/dev/null 2>&1 &
    LOADS+=($!)
done
redis-benchmark -p $((BASE + 99)) -n $((PER * SITES)) -P 16 -c 20 -t incr -q >/dev/null 2>&1 &
LOADS+=($!)
for p in "${LOADS[@]}"; do wait "$p"; done
WANT=$((PER * SITES))
for id in $(seq 1 "$SITES"); do
    for _ in $(seq 1 600); do
        [ "$(redis-cli -p $((BASE + id)) GET counter:__rand_int__)" = "$WANT" ] && break
        sleep 0.1
    done
done
# Folding waits for a report round (a heartbeat interval) after the last op.
for id in $(seq 1 "$SITES"); do
    for _ in $(seq 1 300); do
        [ "$(field $((BASE + id)) counters_fold_queue)" = "0" ] && break
        sleep 0.1
    done
done
sleep "$SETTLE_S"
echo "redis:     value $(redis-cli -p $((BASE + 99)) GET counter:__rand_int__), growth $(( ($(rss_kib "$RPID") - RBEFORE) / 1024 )) MiB"
for i in $(seq 0 $((SITES - 1))); do
    id=$((i + 1))
    after=$(rss_kib "${SPIDS[$i]}")
    used=$(redis-cli -p $((BASE + id)) INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
    echo "site $id:    value $(redis-cli -p $((BASE + id)) GET counter:__rand_int__), growth $(( (after - ${BEFORE[$i]}) / 1024 )) MiB, used_memory $((used / 1048576)) MiB, backlog $(( $(field $((BASE + id)) repl_backlog_memory_bytes) / 1048576 )) MiB, counters_folded $(field $((BASE + id)) counters_folded), fold_queue $(field $((BASE + id)) counters_fold_queue), pinned_by $(field $((BASE + id)) stability_pinned_by)"
done
