#!/usr/bin/env bash
# Commands that could stall a site, side by side: chorus-server and
# redis-server 7.0 started fresh on loopback, both with an everysec AOF/op
# log, measured by the `stalls` bench binary (benches/stalls/main.rs): per-call
# times of the scans, random picks, ranks and ranges at each collection size,
# KEYS with the CVE-2022-36021 pattern, SCAN MATCH over KEYS keys, DEL of a
# KEYS-member set and FLUSHALL, each with the longest PING another client saw.
#
#     benches/stalls.sh                      # sizes 10000,1000000; 1,000,000 keys
#     SIZES=1000,10000 KEYS=100000 benches/stalls.sh
#
# Env: SIZES (10000,1000000) KEYS (1000000) CALLS (200) PIN (1: servers on
# core 1, the client on core 0)
# Needs: cargo, redis-server (Debian package redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-10000,1000000}
KEYS=${KEYS:-1000000}
CALLS=${CALLS:-200}
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-target}
echo "== building (release)" >&2
cargo build --release -q -p chorus-server
BENCH=$(cargo bench --bench stalls --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
SERVER=$TARGET/release/chorus-server
[ -x "$SERVER" ] && [ -x "$BENCH" ] || { echo "build did not produce $SERVER / the bench binary" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
CPORT=$(free_port)
RPORT=$(free_port)
mkdir -p "$WORK/c" "$WORK/r"
# Both servers share one core and the bench client has the other, when the
# machine has two or more (PIN=0 turns this off): left to the scheduler, a
# client and the server it talks to sometimes share a core and sometimes
# not, and loopback round trips then differ by 40-70 µs between the two
# servers for reasons that have nothing to do with either.
SRV=() CLI=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SRV=(taskset -c 1) CLI=(taskset -c 0)
fi
"${SRV[@]}" "$SERVER" --port "$CPORT" --appendfsync everysec --dir "$WORK/c" >"$WORK/chorus.log" 2>&1 &
PIDS+=($!)
"${SRV[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$WORK/r" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)

echo "== chorus-server $("$SERVER" --version 2>/dev/null || true) on $CPORT, $(redis-server --version | cut -d' ' -f1-3) on $RPORT" >&2
"${CLI[@]}" "$BENCH" --chorus "127.0.0.1:$CPORT" --redis "127.0.0.1:$RPORT" --sizes "$SIZES" --keys "$KEYS" --calls "$CALLS"
