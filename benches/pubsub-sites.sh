#!/usr/bin/env bash
# Pub/sub across sites (issue 17, item 2): two chorus-server sites on
# loopback, a publisher at site 1 and a subscriber at site 2, measured by
# the `pubsub_sites` bench binary (benches/pubsub_sites.rs):
#   * messages/s across sites: MESSAGES PUBLISHes pipelined at site 1, the
#     time until site 2's subscriber got them (and how many were dropped);
#   * publish-to-receive latency p50/p99 at RATE msgs/s for SECONDS.
# Then the sites' pub/sub counters (INFO replication).
#
# Usage: benches/pubsub-sites.sh [MESSAGES] [RATE] [SECONDS]
#        defaults 1000000, 10000, 5
# Env:   CHORUS_SERVER  path of chorus-server (default: cargo build --release)
# Needs: redis-cli, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=${1:-1000000}
RATE=${2:-10000}
SECONDS_RUN=${3:-5}
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
BENCH=$(cargo bench --bench pubsub_sites --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$CHORUS_SERVER" ] && [ -x "$BENCH" ] || { echo "build did not produce $CHORUS_SERVER / the bench binary" >&2; exit 1; }

wait_ping() {
    for _ in $(seq 1 300); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "no server on port $1" >&2
    return 1
}
field() { redis-cli -p "$1" INFO replication | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

"$CHORUS_SERVER" cert ca --out "$WORK/ca" >/dev/null
for id in 1 2; do
    "$CHORUS_SERVER" cert site --ca "$WORK/ca" --site-id "$id" --out "$WORK/s$id" >/dev/null
done
for id in 1 2; do
    other=$((3 - id))
    "$CHORUS_SERVER" --site-id "$id" --port $((BASE + id)) --repl-port $((BASE + 100 + id)) \
        --dir "$WORK/d$id" --appendfsync everysec --loglevel warning \
        --tls-ca "$WORK/ca/ca.pem" --tls-cert "$WORK/s$id/site.pem" --tls-key "$WORK/s$id/site.key" \
        --peer "$other@127.0.0.1:$((BASE + 100 + other))" >"$WORK/s$id.log" 2>&1 &
    PIDS+=($!)
done
for id in 1 2; do wait_ping $((BASE + id)); done
for id in 1 2; do
    for _ in $(seq 1 300); do
        [ "$(field $((BASE + id)) connected_peers)" = "1" ] && break
        sleep 0.1
    done
done

echo "== pub/sub across 2 sites on loopback: $MESSAGES messages pipelined, then $RATE msgs/s for ${SECONDS_RUN} s"
"$BENCH" $((BASE + 1)) $((BASE + 2)) "$MESSAGES" "$RATE" "$SECONDS_RUN"
for id in 1 2; do
    echo "site $id: pubsub_sent $(field $((BASE + id)) pubsub_sent), pubsub_received $(field $((BASE + id)) pubsub_received), pubsub_dropped $(field $((BASE + id)) pubsub_dropped), pubsub_duplicates $(field $((BASE + id)) pubsub_duplicates)"
done
