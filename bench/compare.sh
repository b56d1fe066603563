#!/usr/bin/env bash
# Before and after: the XIP load of bench/xip.sh against two c2cd binaries,
# alternated ROUNDS times in one run, so that the machine's drift hits both.
#
# What it measures: requests/s and p99 of wrk (-t2, CONNECTIONS, DURATION,
# keep-alive) at c2cd's XIP endpoint with a valid Auth, on the simulator in
# instant mode, each run on a new database. It prints each run, the sums, and
# the ratio new/old of requests/s (and of the summed p99s).
#
# With RATE set, the load is open-ish instead of saturating: each connection
# waits an exponential time before each request (bench/run.sh's half-rate
# run), so that the connections together offer about RATE requests/s; the
# latencies are then the ones to compare.
#
# Run:  bash bench/compare.sh OLD_BINARY NEW_BINARY
#       (keep a copy of the old one first: cp target/release/c2cd /tmp/c2cd-old)
# Env:  ROUNDS       alternations        (default 4)
#       DURATION     wrk duration a run  (default 5s)
#       CONNECTIONS  wrk connections     (default 64)
#       RATE         offered requests/s  (default: none, saturation)
set -euo pipefail

OLD=$(realpath "${1:?usage: bench/compare.sh OLD_BINARY NEW_BINARY}")
NEW=$(realpath "${2:?usage: bench/compare.sh OLD_BINARY NEW_BINARY}")
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
RATE=${RATE:-}

cd "$(dirname "$0")/.."
. bench/lib.sh
need_tools curl

scratch compare

SCRIPT=() ARGS=()
if [[ -n $RATE ]]; then
    poisson_lua >"$TMP/paced.lua"
    SCRIPT=(-s "$TMP/paced.lua")
    ARGS=(-- "$(awk -v c="$CONNECTIONS" -v r="$RATE" 'BEGIN { printf "%.3f", c * 1000 / r }')")
fi

# run NAME BINARY: one wrk run at a new daemon; appends "NAME RPS P50 P99".
run() {
    local name=$1 bin=$2 dir port auth
    dir=$(mktemp -d "$TMP/run.XXXXXX")
    xip_sim_config "$dir/bench.db" "$PARTNER" "$SECRET" >"$dir/c2cd.toml"
    env $(unit_env) "$bin" serve --config "$dir/c2cd.toml" 2>"$dir/c2cd.log" &
    PID=$!
    port=$(wait_port "$dir/c2cd.log" "$PID")
    auth=$("$bin" sign --secret "$SECRET" --partner "$PARTNER" --requestor "$REQUESTOR" --fulfillment "$FULFILLMENT")
    timeout 600 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "${SCRIPT[@]}" \
        "http://127.0.0.1:$port/request/call.php?PartnerID=$PARTNER&Requestor=$REQUESTOR&Fulfillment=$FULFILLMENT&Auth=$auth" \
        "${ARGS[@]}" >"$dir/wrk.txt"
    stop_server "$PID"
    PID=
    wrk_line "$name" "$dir/wrk.txt" | tee -a "$TMP/results" >&2
    rm -rf "$dir"
}

for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then run old "$OLD"; run new "$NEW"; else run new "$NEW"; run old "$OLD"; fi
done

echo
echo "c2cd XIP, old vs new: $ROUNDS rounds of wrk -t2 -c$CONNECTIONS -d$DURATION${RATE:+ at about $RATE requests/s}, 127.0.0.1, $(nproc) CPUs"
awk '
    { rps[$1] += $2; p99[$1] += $4; n[$1]++ }
    END {
        printf "old: %.0f requests/s on average, p99 %.2f ms\n", rps["old"] / n["old"], p99["old"] / n["old"]
        printf "new: %.0f requests/s on average, p99 %.2f ms\n", rps["new"] / n["new"], p99["new"] / n["new"]
        printf "ratio new/old requests/s: %.3f, p99: %.3f\n", rps["new"] / rps["old"], p99["new"] / p99["old"]
    }
' "$TMP/results"
