#!/usr/bin/env bash
# Replication benchmarks: two chorus-server sites on loopback (real processes,
# QUIC with mutual TLS), measured by the `replication` bench binary
# (benches/replication/) and loaded by redis-benchmark.
#
#  1. lag: probe lag p50/p99/max while site 1 takes LAG_RATE paced SETs/s
#  2. stream: ops/s applied at site 2 while redis-benchmark -P 16 -c 50 loads
#     site 1; site 1's redis-benchmark figure with the peer vs a site alone
#  3. catchup: a CATCHUP_OPS backlog built while the link is paused, then
#     resumed: ops/s until site 2 holds everything (digests compared)
#  4. bytes on the wire per op, from site 1's INFO figures for its peer, and
#     the op log's bytes per op for comparison
#
# Every bench starts fresh sites in a temp dir; everything started is killed
# on exit. Defaults take a few minutes; the issue's full sizes:
#     CATCHUP_OPS=1000000 STREAM_OPS=2000000 LAG_SECONDS=30 benches/replication.sh
#
# Env: LAG_RATE (50000) LAG_SECONDS (10) LAG_CONNS (4) STREAM_OPS (1000000)
#      CATCHUP_OPS (300000) KEYSPACE (100000, redis-benchmark -r) VALUE_BYTES (3, -d)
#      APPENDFSYNC (everysec) ROUNDS (1: stream/solo pairs) BENCHES ("lag stream catchup")
#      LAG_DUMP (a file: every probe as "<ms> <lag us>", slow GETs in <file>.slow-gets)
#      KEEP_LOGS (a directory: the sites' logs are copied there; RUST_LOG sets their filter)
# Needs: cargo, redis-benchmark and redis-cli (Debian package redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

LAG_RATE=${LAG_RATE:-50000}
LAG_SECONDS=${LAG_SECONDS:-10}
LAG_CONNS=${LAG_CONNS:-4}
STREAM_OPS=${STREAM_OPS:-1000000}
CATCHUP_OPS=${CATCHUP_OPS:-300000}
KEYSPACE=${KEYSPACE:-100000}
VALUE_BYTES=${VALUE_BYTES:-3}
APPENDFSYNC=${APPENDFSYNC:-everysec}
ROUNDS=${ROUNDS:-1}
BENCHES=${BENCHES:-lag stream catchup}
# Hard bounds (seconds) on each external step.
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
START_TIMEOUT=30

for tool in redis-benchmark redis-cli cargo; do
    command -v "$tool" >/dev/null || { echo "$tool not found (redis-tools / rustup)" >&2; exit 1; }
done

TARGET=${CARGO_TARGET_DIR:-target}
echo "== building (release)" >&2
cargo build --release -q -p chorus-server
BENCH=$(cargo bench --bench replication --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
SERVER=$TARGET/release/chorus-server
[ -x "$SERVER" ] && [ -x "$BENCH" ] || { echo "build did not produce $SERVER / the bench binary" >&2; exit 1; }

WORK=$(mktemp -d)
# Every child started here, until it is stopped or has ended.
PIDS=()
# Forgets a child, so that a pid the system reuses later is never signalled.
forget_pid() { # pid
    local p kept=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}
# Stops a child started here (TERM, up to 10 s, then KILL) and forgets it.
stop_pid() { # pid
    local pid=$1
    forget_pid "$pid"
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Runs a command in the background, its output into a file, and waits for it.
# A signal interrupts `wait` at once (the EXIT trap then stops the command),
# where a foreground command would hold the trap back until it ended.
run() { # outfile command...
    local out=$1 pid rc=0
    shift
    "$@" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# ---- certificates ------------------------------------------------------------
"$SERVER" cert ca --out "$WORK/ca" >/dev/null
for id in 1 2; do
    "$SERVER" cert site --ca "$WORK/ca" --site-id "$id" --out "$WORK/s$id" >/dev/null
done

# ---- sites ---------------------------------------------------------------------
wait_ping() { # port
    local deadline=$((SECONDS + START_TIMEOUT))
    until redis-cli -p "$1" PING >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then echo "no server on port $1" >&2; return 1; fi
        sleep 0.05
    done
}
RUN=0
# A site with no peer (the baseline): sets PORT_S, PID_S.
start_solo() {
    local ports port
    ports=$("$BENCH" ports 1)
    port=$ports
    RUN=$((RUN + 1))
    "$SERVER" --site-id 1 --port "$port" --dir "$WORK/run$RUN-solo" --appendfsync "$APPENDFSYNC" \
        --loglevel warning >"$WORK/run$RUN-solo.log" 2>&1 &
    PID_S=$!
    PIDS+=("$PID_S")
    PORT_S=$port
    wait_ping "$PORT_S"
}
# Two sites peered with each other: site 1 is A, site 2 is B.
start_pair() {
    local ports side id port repl pid_peer repl_peer name
    ports=$("$BENCH" ports 4)
    read -r P1 R1 P2 R2 <<<"$ports"
    for side in "1 $P1 $R1 2 $R2 A" "2 $P2 $R2 1 $R1 B"; do
        read -r id port repl pid_peer repl_peer name <<<"$side"
        RUN=$((RUN + 1))
        "$SERVER" --site-id "$id" --port "$port" --repl-port "$repl" --dir "$WORK/run$RUN-$name" \
            --appendfsync "$APPENDFSYNC" --loglevel warning \
            --tls-ca "$WORK/ca/ca.pem" --tls-cert "$WORK/s$id/site.pem" --tls-key "$WORK/s$id/site.key" \
            --peer "$pid_peer@127.0.0.1:$repl_peer" >"$WORK/run$RUN-$name.log" 2>&1 &
        PIDS+=("$!")
        printf -v "PID_$name" '%s' "$!"
        printf -v "DIR_$name" '%s' "$WORK/run$RUN-$name"
    done
    PORT_A=$P1
    PORT_B=$P2
    wait_ping "$PORT_A"
    wait_ping "$PORT_B"
    run "$WORK/ready.out" timeout "$STEP_TIMEOUT" "$BENCH" ready \
        --source "127.0.0.1:$PORT_A" --sink "127.0.0.1:$PORT_B" || { cat "$WORK/ready.out" >&2; return 1; }
}
stop_pair() {
    stop_pid "$PID_A"
    stop_pid "$PID_B"
}

# redis-benchmark -P 16 -c 50 against a port, -n N: sets RPS to its SET/s.
load() { # port n
    run "$WORK/redis-benchmark.out" timeout "$STEP_TIMEOUT" redis-benchmark -p "$1" -P 16 -c 50 \
        -r "$KEYSPACE" -d "$VALUE_BYTES" -t set -n "$2" --csv
    RPS=$(awk -F'"' '$2 == "SET" { print $4 }' "$WORK/redis-benchmark.out")
    [ -n "$RPS" ] || { cat "$WORK/redis-benchmark.out" >&2; return 1; }
}
# A key=value field from the RESULT line of a bench in a file.
field() { # file bench key
    awk -v b="$2" -v k="$3" '$1 == "RESULT" && $2 == b {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$1"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU time a process used so far (user + system), in clock ticks: unlike
# wall-clock rates, CPU per op hardly depends on what else the machine runs.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
us_per_op() { # ticks_before ticks_after ops
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }'
}
# Bytes per op in the op log of a data dir, given the ops it holds.
log_bytes_per_op() { # dir ops
    local bytes
    bytes=$(find "$1/log" -name '*.seg' -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
    awk -v b="$bytes" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", b / n; else print "-" }'
}
want() { case " $BENCHES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

LOAD_START=$(loadavg)
echo "== load average at start: $LOAD_START" >&2

# ---- 1. lag ----------------------------------------------------------------------
if want lag; then
    echo "== 1. lag: $LAG_RATE SET/s at site 1 for $LAG_SECONDS s, probes every 10 ms" >&2
    start_pair
    run "$WORK/lag.out" timeout "$STEP_TIMEOUT" "$BENCH" lag --write "127.0.0.1:$PORT_A" \
        --read "127.0.0.1:$PORT_B" --rate "$LAG_RATE" --seconds "$LAG_SECONDS" --conns "$LAG_CONNS" \
        --keys "$KEYSPACE" --value-bytes "$VALUE_BYTES" ${LAG_DUMP:+--dump "$LAG_DUMP"} \
        || { cat "$WORK/lag.out" >&2; exit 1; }
    cat "$WORK/lag.out" >&2
    LOAD_LAG=$(loadavg)
    stop_pair
fi

# ---- 2. sustained stream, and site 1 with vs without a peer --------------------
if want stream; then
    SOLO=()
    PEERED=()
    SOLO_CPU=()
    PEERED_CPU_A=()
    PEERED_CPU_B=()
    for round in $(seq 1 "$ROUNDS"); do
        echo "== 2. round $round: redis-benchmark -P 16 -c 50 -n $STREAM_OPS at a site alone" >&2
        start_solo
        t0=$(cpu_ticks "$PID_S")
        load "$PORT_S" "$STREAM_OPS"
        SOLO+=("$RPS")
        SOLO_CPU+=("$(us_per_op "$t0" "$(cpu_ticks "$PID_S")" "$STREAM_OPS")")
        stop_pid "$PID_S"
        echo "   alone: ${SOLO[-1]} SET/s" >&2

        echo "== 2. round $round: the same at site 1 with site 2 attached" >&2
        start_pair
        timeout "$STEP_TIMEOUT" "$BENCH" stream --source "127.0.0.1:$PORT_A" --sink "127.0.0.1:$PORT_B" \
            >"$WORK/stream$round.out" &
        STREAM_PID=$!
        PIDS+=("$STREAM_PID")
        sleep 0.5
        a0=$(cpu_ticks "$PID_A")
        b0=$(cpu_ticks "$PID_B")
        load "$PORT_A" "$STREAM_OPS"
        PEERED+=("$RPS")
        wait "$STREAM_PID" || { echo "stream measurement failed" >&2; cat "$WORK/stream$round.out" >&2; exit 1; }
        forget_pid "$STREAM_PID"
        PEERED_CPU_A+=("$(us_per_op "$a0" "$(cpu_ticks "$PID_A")" "$STREAM_OPS")")
        PEERED_CPU_B+=("$(us_per_op "$b0" "$(cpu_ticks "$PID_B")" "$STREAM_OPS")")
        cat "$WORK/stream$round.out" >&2
        echo "   with peer: ${PEERED[-1]} SET/s" >&2
        LOAD_STREAM=$(loadavg)
        stop_pair
    done
fi

# ---- 3. catch-up after a backlog ---------------------------------------------------
if want catchup; then
    echo "== 3. catch-up: link paused, $CATCHUP_OPS SETs at site 1, resumed" >&2
    start_pair
    redis-cli -p "$PORT_A" PEER PAUSE 2 >/dev/null
    redis-cli -p "$PORT_B" PEER PAUSE 1 >/dev/null
    load "$PORT_A" "$CATCHUP_OPS"
    BACKLOG_WRITE_RATE=$RPS
    OPS_A=$(redis-cli -p "$PORT_A" INFO replication | tr -d '\r' | awk -F: '$1 == "ops_local" { print $2 }')
    LOG_BPO=$(log_bytes_per_op "$DIR_A" "$OPS_A")
    BACKLOG_MIB=$(awk -v b="$LOG_BPO" -v n="$CATCHUP_OPS" 'BEGIN { printf "%.1f", b * n / 1048576 }')
    a0=$(cpu_ticks "$PID_A")
    b0=$(cpu_ticks "$PID_B")
    run "$WORK/catchup.out" timeout "$STEP_TIMEOUT" "$BENCH" catchup \
        --source "127.0.0.1:$PORT_A" --sink "127.0.0.1:$PORT_B" || { cat "$WORK/catchup.out" >&2; exit 1; }
    cat "$WORK/catchup.out" >&2
    CATCHUP_CPU_A=$(us_per_op "$a0" "$(cpu_ticks "$PID_A")" "$CATCHUP_OPS")
    CATCHUP_CPU_B=$(us_per_op "$b0" "$(cpu_ticks "$PID_B")" "$CATCHUP_OPS")
    LOAD_CATCHUP=$(loadavg)
    stop_pair
fi

# ---- table ---------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "Replication benchmarks, two sites on loopback ($(nproc) cores; appendfsync $APPENDFSYNC; keys -r $KEYSPACE, values $VALUE_BYTES B)"
echo "load average: start $LOAD_START${LOAD_LAG:+; lag $LOAD_LAG}${LOAD_STREAM:+; stream $LOAD_STREAM}${LOAD_CATCHUP:+; catch-up $LOAD_CATCHUP}"
printf '%-58s %-26s %s\n' "benchmark" "result" "target"
row() { printf '%-58s %-26s %s\n' "$1" "$2" "$3"; }
if want lag; then
    f() { field "$WORK/lag.out" lag "$1"; }
    row "1. probe lag p50 / p99 / max (ms) at $(f target_rate) SET/s" "$(f p50_ms) / $(f p99_ms) / $(f max_ms)" "p99 <= 5 ms"
    row "   achieved write rate at site 1 (SET/s)" "$(f achieved_rate)" ">= $LAG_RATE"
    row "   probes (timed out)" "$(f probes) ($(f timeouts))" ""
    row "   INFO time_lag_ms at site 1 for peer 2, p50 / max" "$(f info_time_lag_ms_p50) / $(f info_time_lag_ms_max)" "(durable lag)"
    row "   client GET at site 1 / site 2 meanwhile, p99 (ms)" "$(f write_get_p99_ms) / $(f read_get_p99_ms)" ""
    row "   client GET at site 1 / site 2 meanwhile, max (ms)" "$(f write_get_max_ms) / $(f read_get_max_ms)" ""
fi
if want stream; then
    for round in $(seq 1 "$ROUNDS"); do
        f() { field "$WORK/stream$round.out" stream "$1"; }
        row "2. applied at site 2 while site 1 is loaded (ops/s)" "$(f applied_rate_loaded)" ">= 300,000"
        row "   applied at site 2, first to last op (ops/s)" "$(f applied_rate_overall)" ""
        row "   peak 1 s at site 2 / ops behind at most" "$(f applied_rate_peak_1s) / $(f behind_max)" ""
        row "   site 2 caught up after site 1's last write (s)" "$(f drain_s)" ""
    done
    S=$(median "${SOLO[@]}")
    P=$(median "${PEERED[@]}")
    row "   site 1 redis-benchmark SET/s alone / with peer" "$S / $P" ""
    row "   site 1 change with one peer" "$(awk -v s="$S" -v p="$P" 'BEGIN { printf "%+.1f%%", (p - s) / s * 100 }')" ">= -20%"
    CS=$(median "${SOLO_CPU[@]}")
    CA=$(median "${PEERED_CPU_A[@]}")
    row "   site 1 CPU us per SET alone / with peer" "$CS / $CA ($(awk -v s="$CS" -v p="$CA" 'BEGIN { printf "%+.0f%%", (p - s) / s * 100 }'))" ""
    row "   site 2 CPU us per op applied" "$(median "${PEERED_CPU_B[@]}")" ""
fi
if want catchup; then
    f() { field "$WORK/catchup.out" catchup "$1"; }
    row "3. catch-up of a $(f ops)-op backlog (ops/s)" "$(f rate) in $(f seconds) s" ">= 500,000"
    row "   full sync needed / digests equal" "$(f full_sync) / $(f digests_equal)" "no / yes"
    row "   backlog written at (SET/s, link paused)" "$BACKLOG_WRITE_RATE" ""
    row "   CPU us per op: site 1 sending / site 2 applying" "$CATCHUP_CPU_A / $CATCHUP_CPU_B" ""
    row "   backlog size (op log bytes; the engine keeps 256 MiB)" "$BACKLOG_MIB MiB" "< 256 MiB"
    row "   client GET p50/p99/max (ms) meanwhile, site 1" "$(f source_get_ms)" ""
    row "   client GET p50/p99/max (ms) meanwhile, site 2" "$(f sink_get_ms)" ""
fi
if want stream; then
    row "4. bytes on the wire per op, stream (site 1 -> 2)" "$(field "$WORK/stream1.out" stream bytes_per_op) (from $(field "$WORK/stream1.out" stream bytes_per_op_from))" ""
fi
if want catchup; then
    row "   bytes on the wire per op, catch-up" "$(field "$WORK/catchup.out" catchup bytes_per_op) (from $(field "$WORK/catchup.out" catchup bytes_per_op_from))" ""
    row "   op log bytes per op at site 1 (for comparison)" "$LOG_BPO" ""
fi
echo "load average at end: $(loadavg)"
