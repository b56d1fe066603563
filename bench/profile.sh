#!/usr/bin/env bash
# Where c2cd spends its CPU under the XIP load of bench/xip.sh: a sampling
# profile (perf record, cpu-clock: this box has no hardware counters) of the
# daemon while wrk saturates it, reported per thread and per function.
#
# What it does: builds `--profile profiling` (the release build with symbols),
# starts c2cd on 127.0.0.1:0 with the simulator in instant mode and the same
# config as bench/xip.sh, runs wrk (64 connections, DURATION) at its XIP
# endpoint with a valid Auth, and records c2cd meanwhile. It prints:
#   - the share of samples by thread (the writer, tokio's workers, the logger),
#   - the top functions overall, and the top functions of the writer thread.
# The raw profile stays in $TMP/perf.data with KEEP=1 (perf report -i …).
#
# Run:  bash bench/profile.sh
# Env:  DURATION     wrk duration   (default 10s)
#       CONNECTIONS  wrk connections (default 64)
#       CALLGRAPH=1  record call graphs (dwarf; bigger, slower)
#       TOP          functions listed (default 40)
#       KEEP=1       keep the temp dir
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
TOP=${TOP:-40}

cd "$(dirname "$0")/.."
. bench/lib.sh
need_tools curl
if ! command -v perf >/dev/null; then
    echo "perf not found; installing linux-perf with apt-get" >&2
    apt-get install -y linux-perf >/dev/null || { apt-get update >/dev/null && apt-get install -y linux-perf >/dev/null; }
fi

cargo build --profile profiling --bin c2cd
C2CD=$PWD/target/profiling/c2cd

scratch profile

xip_sim_config "$TMP/bench.db" "$PARTNER" "$SECRET" >"$TMP/c2cd.toml"

env $(unit_env) "$C2CD" serve --config "$TMP/c2cd.toml" 2>"$TMP/c2cd.log" &
PID=$!
PIDS+=("$PID")
PORT=$(wait_port "$TMP/c2cd.log" "$PID")
AUTH=$("$C2CD" sign --secret "$SECRET" --partner "$PARTNER" --requestor "$REQUESTOR" --fulfillment "$FULFILLMENT")
URL="http://127.0.0.1:$PORT/request/call.php?PartnerID=$PARTNER&Requestor=$REQUESTOR&Fulfillment=$FULFILLMENT&Auth=$AUTH"
status=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$URL")
[[ $status == 200 ]] || { echo "c2cd answered HTTP $status, not 200" >&2; exit 1; }

graph=()
[[ ${CALLGRAPH:-0} == 1 ]] && graph=(--call-graph dwarf,16384)
# wrk runs for DURATION; perf records a little less, inside the load.
secs=${DURATION%s}
timeout 600 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$URL" >"$TMP/wrk.txt" &
WRK=$!
sleep 1
perf record -q -e cpu-clock -F 999 "${graph[@]}" -p "$PID" -o "$TMP/perf.data" -- sleep $((secs > 2 ? secs - 2 : 1)) 2>"$TMP/perf.log"
wait "$WRK"
stop_server "$PID"

echo "c2cd under XIP load: $(wrk_line xip "$TMP/wrk.txt" | awk '{ printf "%.0f requests/s, p50 %s ms, p99 %s ms", $2, $3, $4 }')"
echo
echo "== samples by thread"
perf report -i "$TMP/perf.data" --stdio --sort comm 2>/dev/null | grep -E '^ +[0-9]' | head -n 10
echo
echo "== top $TOP functions (all threads)"
perf report -i "$TMP/perf.data" --stdio --no-children --sort sym 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP"
echo
echo "== top $TOP functions of the writer thread"
perf report -i "$TMP/perf.data" --stdio --no-children --comm c2cd-writer --sort sym 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP"
