#!/usr/bin/env bash
# Throughput of chorus-server side by side with redis-server 7.0, measured
# with redis-benchmark (Debian's redis-tools 7.0) against two servers that are
# already running. Prints a Markdown table for docs/benchmarks.md.
#
# Usage:
#     benches/bench-vs-redis.sh CHORUS_HOST:PORT REDIS_HOST:PORT [REQUESTS]
#
# REQUESTS is redis-benchmark's -n per run (default 100000). The script starts
# and stops no server. Both fresh, both with an everysec AOF / op log:
#
#     cargo build --release -p chorus-server
#     redis-server --port 7400 --bind 127.0.0.1 --save '' --appendonly yes \
#         --appendfsync everysec --dir /tmp/rb --daemonize yes
#     ./target/release/chorus-server --port 7401 --appendfsync everysec --dir /tmp/cb &
#     benches/bench-vs-redis.sh 127.0.0.1:7401 127.0.0.1:7400 100000
#
# For every round, pipeline depth and test, it runs
#     redis-benchmark -h HOST -p PORT -c CLIENTS -n REQUESTS -P DEPTH \
#         -r KEYSPACE -d DATASIZE -t TEST --csv -q
# against both servers, one after the other: Chorus first in odd rounds,
# redis-server first in even rounds, so that neither always runs on the
# warmer or the quieter machine. Per test and depth the table shows the
# median ops/s of each server over the rounds, the ratio Chorus / Redis and
# the median p50 / p99 latencies (ms) of redis-benchmark's CSV; below it the
# geometric mean of the ratios and the lowest ratio.
#
# Environment (default):
#   BENCH_TESTS      redis-benchmark -t names ("set get incr hset sadd zadd mset"),
#                    and two GEO rows redis-benchmark has no -t for:
#                    "geoadd" (GEOADD geo:bench of a random point in the
#                    1°×1° square at 0,0 and a random member) and "geosearch"
#                    (GEOSEARCH geo:bench FROMLONLAT 0.5 0.5 BYRADIUS 2 km ASC
#                    COUNT 10, on what the geoadd runs added: run geoadd first),
#                    and two HyperLogLog rows: "pfadd" (PFADD hll:bench of a
#                    random element out of 10^9) and "pfcount" (PFCOUNT
#                    hll:bench, on what the pfadd runs added: run pfadd first)
#   BENCH_PIPELINES  -P depths, one row per test and depth ("1 16")
#   BENCH_CLIENTS    -c (50)
#   BENCH_ROUNDS     rounds (3)
#   BENCH_KEYSPACE   -r (100000)
#   BENCH_DATASIZE   -d, value bytes (3, redis-benchmark's own default)
#   BENCH_TIMEOUT    seconds allowed per redis-benchmark run (120); a run that
#                    fails or times out counts as NA
#   BENCH_LOGDIR     directory for the raw CSV of every run (default: a new
#                    directory from mktemp -d)
#
# Nothing is flushed: redis-benchmark's keys (key:*, counter:*, myhash,
# myset, myzset...) grow across runs, the same on both servers. Run it on
# fresh servers and compare ratios from one run, never absolute figures of
# different runs: on a small shared machine they move by tens of percent.
#
# Exit status: 0 when every run gave a figure, 1 when some were NA, 2 on a
# usage or set-up error (redis-benchmark missing, a server not answering).

set -u

me=bench-vs-redis.sh
die() { echo "$me: $*" >&2; exit 2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || usage

# "host:port" -> "host port" (the port is what follows the last colon)
host_port() {
    local hp=$1 h p
    case $hp in *:*) ;; *) die "'$hp' is not HOST:PORT" ;; esac
    h=${hp%:*} p=${hp##*:}
    [ -n "$h" ] || die "no host in '$hp'"
    case $p in '' | *[!0-9]*) die "bad port in '$hp'" ;; esac
    echo "$h $p"
}
read -r C_HOST C_PORT <<<"$(host_port "$1")" || exit 2
read -r R_HOST R_PORT <<<"$(host_port "$2")" || exit 2
[ -n "${C_PORT:-}" ] && [ -n "${R_PORT:-}" ] || exit 2

REQUESTS=${3:-100000}
TESTS=${BENCH_TESTS:-set get incr hset sadd zadd mset}
PIPELINES=${BENCH_PIPELINES:-1 16}
CLIENTS=${BENCH_CLIENTS:-50}
ROUNDS=${BENCH_ROUNDS:-3}
KEYSPACE=${BENCH_KEYSPACE:-100000}
DATASIZE=${BENCH_DATASIZE:-3}
RUN_TIMEOUT=${BENCH_TIMEOUT:-120}
whole_number() { # name value
    case $2 in '' | *[!0-9]*) die "$1 must be a whole number, not '$2'" ;; esac
}
whole_number REQUESTS "$REQUESTS"
whole_number BENCH_CLIENTS "$CLIENTS"
whole_number BENCH_ROUNDS "$ROUNDS"
whole_number BENCH_KEYSPACE "$KEYSPACE"
whole_number BENCH_DATASIZE "$DATASIZE"
whole_number BENCH_TIMEOUT "$RUN_TIMEOUT"
[ "$ROUNDS" -ge 1 ] || die "BENCH_ROUNDS must be at least 1"
for pl in $PIPELINES; do
    case $pl in '' | *[!0-9]* | 0) die "bad pipeline depth '$pl' in BENCH_PIPELINES" ;; esac
done
[ -n "${TESTS// /}" ] || die "BENCH_TESTS is empty"
[ -n "${PIPELINES// /}" ] || die "BENCH_PIPELINES is empty"

RB=$(command -v redis-benchmark) ||
    die "redis-benchmark not found: install Debian's redis-tools (apt-get install redis-tools)"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

# redis-benchmark 7.0 does not exit when it cannot connect (it retries and
# spins), so every run is preceded by a PING. Prints the first reply line.
ping_reply() { # host port
    local line
    line=$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r -t 3 line <&3 || exit 1
        printf "%s\n" "$line"' "$1" "$2" 2>/dev/null) || return 1
    printf '%s\n' "${line%$'\r'}"
}
for side in C R; do
    h=${side}_HOST p=${side}_PORT
    reply=$(ping_reply "${!h}" "${!p}") || die "${!h}:${!p} does not answer (is the server running?)"
    [ "$reply" = "+PONG" ] || die "${!h}:${!p} answered PING with '$reply'"
done

if [ -n "${BENCH_LOGDIR:-}" ]; then
    LOGDIR=$BENCH_LOGDIR
    mkdir -p "$LOGDIR" || die "cannot create $LOGDIR"
else
    LOGDIR=$(mktemp -d /tmp/bench-vs-redis.XXXXXX) || die "mktemp failed"
fi

# Only the redis-benchmark run in flight is ever signalled, by its PID.
RUNNING=""
stop_run() {
    if [ -n "$RUNNING" ]; then
        kill -TERM "$RUNNING" 2>/dev/null
        wait "$RUNNING" 2>/dev/null
        RUNNING=""
    fi
}
trap stop_run EXIT
trap 'stop_run; echo "$me: interrupted" >&2; exit 130' INT TERM

# The CSV row of a test: its name in capitals, possibly followed by a
# parenthesis ("MSET (10 keys)") or, for a command of its own, its arguments
# ("GEOADD geo:bench ..."); rows a test needs first ("LPUSH (needed to
# benchmark LRANGE)") are skipped.
csv_row_name() { tr '[:lower:]' '[:upper:]' <<<"$1"; }

# The redis-benchmark arguments that choose a test: -t, or for the GEO rows a
# command of their own (as PFADD and PFCOUNT). GEOADD's coordinates are __rand_int__e-9 with -r 1e9:
# uniform in [0, 1) degrees (each __rand_int__ is drawn on its own).
test_args() { # test
    case $1 in
    geoadd) echo "-r 1000000000 GEOADD geo:bench __rand_int__e-9 __rand_int__e-9 m:__rand_int__" ;;
    geosearch) echo "-r $KEYSPACE GEOSEARCH geo:bench FROMLONLAT 0.5 0.5 BYRADIUS 2 km ASC COUNT 10" ;;
    pfadd) echo "-r 1000000000 PFADD hll:bench el:__rand_int__" ;;
    pfcount) echo "-r $KEYSPACE PFCOUNT hll:bench" ;;
    *) echo "-r $KEYSPACE -t $1" ;;
    esac
}

# One redis-benchmark run. Sets RPS P50 P99 (NA when the run failed).
run_one() { # host port test depth file
    local host=$1 port=$2 test=$3 depth=$4 out=$5 name
    RPS=NA P50=NA P99=NA
    if [ "$(ping_reply "$host" "$port")" != "+PONG" ]; then
        echo "$host:$port did not answer PING; not run" >"$out.err"
        return
    fi
    # word splitting of the test's arguments is intended
    # shellcheck disable=SC2046
    timeout "$RUN_TIMEOUT" "$RB" -h "$host" -p "$port" -c "$CLIENTS" -n "$REQUESTS" \
        -P "$depth" -d "$DATASIZE" --csv -q $(test_args "$test") \
        >"$out" 2>"$out.err" </dev/null &
    RUNNING=$!
    wait "$RUNNING"
    RUNNING=""
    name=$(csv_row_name "$test")
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
    # "p95_latency_ms","p99_latency_ms","max_latency_ms"
    read -r RPS P50 P99 < <(awk -F'","' -v name="$name" '
        { sub(/^"/, ""); sub(/"\r?$/, "") }
        ($1 == name || index($1, name " ") == 1) && $1 !~ /needed to benchmark/ {
            if ($2 + 0 > 0) { print $2, $5, $7; found = 1; exit }
        }
        END { if (!found) print "NA NA NA" }' "$out")
}

median() { # values... (NA ignored) -> median, or NA
    printf '%s\n' "$@" | grep -v '^NA$' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) print "NA"
            else if (NR % 2) print v[(NR + 1) / 2]
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

declare -A RPS_OF P50_OF P99_OF # key "side depth test" -> one value per round
NA_RUNS=0
START=$(date +%s)
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown; }
LOAD_START=$(load)
echo "$me: Chorus $C_HOST:$C_PORT, Redis $R_HOST:$R_PORT; -n $REQUESTS -c $CLIENTS -r $KEYSPACE -d $DATASIZE; depths: $PIPELINES; tests: $TESTS; rounds: $ROUNDS" >&2
echo "$me: raw CSV in $LOGDIR" >&2

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="C R"; else order="R C"; fi
    for depth in $PIPELINES; do
        for test in $TESTS; do
            for side in $order; do
                h=${side}_HOST p=${side}_PORT
                run_one "${!h}" "${!p}" "$test" "$depth" "$LOGDIR/r${r}-P${depth}-${test}-${side}.csv"
                [ "$RPS" = NA ] && NA_RUNS=$((NA_RUNS + 1))
                RPS_OF["$side $depth $test"]+="$RPS "
                P50_OF["$side $depth $test"]+="$P50 "
                P99_OF["$side $depth $test"]+="$P99 "
            done
        done
        echo "$me: round $r, -P $depth done ($(($(date +%s) - START)) s)" >&2
    done
done

whole() { [ "$1" = NA ] && echo NA || awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

echo
echo "| test | P | Chorus ops/s | Redis ops/s | ratio | Chorus p50 / p99 ms | Redis p50 / p99 ms |"
echo "|---|---|---|---|---|---|---|"
RATIOS=""
for depth in $PIPELINES; do
    for test in $TESTS; do
        k="$depth $test"
        # word splitting of the per-round lists is intended
        # shellcheck disable=SC2086
        {
            c=$(median ${RPS_OF["C $k"]}) r=$(median ${RPS_OF["R $k"]})
            c50=$(median ${P50_OF["C $k"]}) c99=$(median ${P99_OF["C $k"]})
            r50=$(median ${P50_OF["R $k"]}) r99=$(median ${P99_OF["R $k"]})
        }
        ratio=NA
        if [ "$c" != NA ] && [ "$r" != NA ]; then
            ratio=$(awk -v c="$c" -v r="$r" 'BEGIN { printf "%.2f", c / r }')
            RATIOS+="$(awk -v c="$c" -v r="$r" 'BEGIN { printf "%.6f", c / r }') "
        fi
        name=$(csv_row_name "$test")
        printf '| %s | %s | %s | %s | %s | %s / %s | %s / %s |\n' "$name" "$depth" \
            "$(whole "$c")" "$(whole "$r")" "$ratio" "$c50" "$c99" "$r50" "$r99"
    done
done
echo
# shellcheck disable=SC2086
printf '%s\n' $RATIOS | awk '
    NF { n++; s += log($1); if (n == 1 || $1 < low) low = $1 }
    END {
        if (n == 0) { print "Geometric mean of the ratios: NA (no row has both figures)"; exit }
        printf "Geometric mean of the ratios: **%.2f** over %d rows; lowest ratio %.2f.\n", exp(s / n), n, low
    }'
echo
echo "ops/s: median over $ROUNDS round(s) of redis-benchmark -c $CLIENTS -n $REQUESTS -r $KEYSPACE -d $DATASIZE;" \
    "p50 / p99: medians of the per-run figures. $(nproc 2>/dev/null || echo '?') CPUs;" \
    "load average $LOAD_START at the start, $(load) at the end; $(($(date +%s) - START)) s; NA runs: $NA_RUNS."
[ "$NA_RUNS" -eq 0 ]
