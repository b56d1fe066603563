#!/usr/bin/env bash
# XIP throughput benchmark: c2cd against a bare hyper hello-world, same build, same box.
#
# What it measures: requests/s and p50/p99 latency (wrk --latency, closed loop,
# keep-alive) of
#   1. examples/hello.rs: a minimal hyper 1 HTTP/1.1 server (the ceiling), and
#   2. c2cd's XIP endpoint, GET /request/call.php with a valid Auth, routed to
#      the "sim" provider in instant mode (ring = talk = 0s). Every request is a
#      real call: parsed, authenticated, written to SQLite (synchronous=FULL,
#      group commit) before the answer, then played out by the simulator.
#   3. with GUARDS=1, two more runs whose requests each ask for another
#      Requestor (200,000 of them, Auth computed beforehand, read by a wrk
#      script): c2cd as in 2, then c2cd with every guard rail on and none
#      tripping: numbers checked, a 30 s dedupe window, 3 calls per A number
#      in 15 minutes, the partner's rate, concurrency and busy-B limits (set
#      too high to be reached), and a blocklist of 1,000,000 numbers (imported
#      with `c2cd block import`, none of them called). Each on a new database.
# It prints the ratio c2cd/hello for requests/s (and guarded/unguarded), then the database size, the
# number of rows in `calls` and the bytes per call, measured after c2cd has
# stopped cleanly (SIGTERM: drain, WAL checkpoint).
#
# Run:  bash bench/xip.sh
# Env:  DURATION     wrk duration per run   (default 10s)
#       CONNECTIONS  wrk connections        (default 64; wrk threads fixed at 2)
#       GUARDS=1     also measure c2cd with every guard rail on (a third run)
#       KEEP=1       keep the temp dir (config, logs, database, wrk outputs)
#       TARGET       build c2cd for this target (x86_64-unknown-linux-musl: the
#                    shipped static binary); the hello-world stays native
#
# Both servers listen on 127.0.0.1 only. Every wait is bounded; the whole run
# takes about 2 x DURATION plus the release build.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=2

cd "$(dirname "$0")/.."

# --- tools ------------------------------------------------------------------
. bench/lib.sh
need_tools curl python3

cargo build --release --bin c2cd --example hello
C2CD=target/release/c2cd
HELLO=target/release/examples/hello
# TARGET=x86_64-unknown-linux-musl measures the shipped static binary instead.
if [[ -n ${TARGET:-} ]]; then
    cargo build --release --bin c2cd --target "$TARGET"
    C2CD=target/$TARGET/release/c2cd
fi

# --- temp dir, cleanup ------------------------------------------------------
scratch bench

DB=$TMP/bench.db
# config DB GUARD PARTNER_LIMITS: a config on database DB with these [guard]
# keys and partner keys.
config() {
    xip_sim_config "$1" "$PARTNER" "$SECRET" "$2" "$3"
}
config "$DB" 'check_numbers = false' '' >"$TMP/c2cd.toml"
config "$TMP/rot.db" 'check_numbers = false' '' >"$TMP/rot.toml"
config "$TMP/guarded.db" 'check_numbers = true
dedupe_window = "30s"
number_limits = ["3/15m"]' 'max_rate = "1000000/s"
max_calls = 1000000
max_calls_per_b = 1000000' >"$TMP/guarded.toml"

# bench NAME URL [SCRIPT]: runs wrk (with a Lua script), keeps its output in
# $TMP/wrk-NAME.txt and appends "NAME RPS P50 P99 NON2XX SOCKET_ERRORS" to
# $TMP/results.
bench() {
    local name=$1 url=$2 out=$TMP/wrk-$1.txt rps p50 p99 non2xx errs
    local script=()
    [[ -n ${3:-} ]] && script=(-s "$3")
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ${script[*]} ($name)" >&2
    # wrk runs for DURATION; timeout is a backstop only.
    timeout 600 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${script[@]}" "$url" >"$out"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$out")
    errs=$(sed -n 's/^ *Socket errors: *//p' "$out" | tr -d ' ')
    echo "$name ${rps:-0} $p50 $p99 ${non2xx:-0} ${errs:-none}" >>"$TMP/results"
}

# --- hello ------------------------------------------------------------------
"$HELLO" 127.0.0.1:0 2>"$TMP/hello.log" &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
HELLO_PORT=$(wait_port "$TMP/hello.log" "$HELLO_PID")
bench hello "http://127.0.0.1:$HELLO_PORT/"
kill "$HELLO_PID"

# --- c2cd XIP ---------------------------------------------------------------
env $(unit_env) "$C2CD" serve --config "$TMP/c2cd.toml" 2>"$TMP/c2cd.log" &
C2CD_PID=$!
PIDS+=("$C2CD_PID")
C2CD_PORT=$(wait_port "$TMP/c2cd.log" "$C2CD_PID")
AUTH=$("$C2CD" sign --secret "$SECRET" --partner "$PARTNER" --requestor "$REQUESTOR" --fulfillment "$FULFILLMENT")
URL="http://127.0.0.1:$C2CD_PORT/request/call.php?PartnerID=$PARTNER&Requestor=$REQUESTOR&Fulfillment=$FULFILLMENT&Auth=$AUTH"

status=$(curl -sS -m 5 -o "$TMP/first.txt" -w '%{http_code}' "$URL")
if [[ $status != 200 ]]; then
    echo "c2cd answered HTTP $status to the first XIP request, not 200:" >&2
    cat "$TMP/first.txt" >&2
    echo >&2
    tail -n 20 "$TMP/c2cd.log" >&2
    exit 1
fi
bench c2cd-xip "$URL"

# --- c2cd XIP, a Requestor per request, without and with the guard rails ------
# serve NAME: starts c2cd on $TMP/NAME.toml, runs the rotating load at it,
# stops it.
serve() {
    local name=$1 pid port
    env $(unit_env) "$C2CD" serve --config "$TMP/$name.toml" 2>"$TMP/$name.log" &
    pid=$!
    PIDS+=("$pid")
    port=$(wait_port "$TMP/$name.log" "$pid")
    bench "c2cd-$name" "http://127.0.0.1:$port" "$TMP/rotate.lua"
    kill -TERM "$pid"
    wait "$pid" || true
}
if [[ ${GUARDS:-0} == 1 ]]; then
    python3 - "$TMP/paths" "$SECRET" "$PARTNER" "$FULFILLMENT" <<'PY'
import hashlib, sys
path, secret, partner, fulfillment = sys.argv[1:]
with open(path, "w") as f:
    for i in range(200_000):
        a = str(16045200000 + i)  # 604-520-0000 onwards: valid Canadian numbers
        auth = hashlib.md5((secret + partner + a + fulfillment).encode()).hexdigest()
        f.write(f"/request/call.php?PartnerID={partner}&Requestor={a}&Fulfillment={fulfillment}&Auth={auth}\n")
PY
    cat >"$TMP/rotate.lua" <<LUA
local threads = 0
function setup(thread)
    thread:set("first", threads * 100000)
    threads = threads + 1
end
function init(args)
    paths = {}
    for line in io.lines("$TMP/paths") do paths[#paths + 1] = line end
    i = first
end
function request()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
    # A national do-not-call list's size, in the FTC's areacode,number form.
    python3 - "$TMP/dnc.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        f.write(f"212,{5_000_000 + i}\n")
PY
    "$C2CD" block import "$TMP/dnc.csv" --source dnc --config "$TMP/guarded.toml" >&2
    serve rot
    serve guarded
fi

# Stop cleanly so the WAL is checkpointed into the database file (max 30 s).
kill -TERM "$C2CD_PID"
for _ in $(seq 300); do
    kill -0 "$C2CD_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$C2CD_PID" 2>/dev/null; then
    echo "c2cd did not stop within 30 s of SIGTERM; killing it" >&2
    kill -KILL "$C2CD_PID" 2>/dev/null || true
fi
c2cd_rc=0
wait "$C2CD_PID" || c2cd_rc=$?

# --- report -----------------------------------------------------------------
ROWS=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from calls').fetchone()[0])" "$DB")
DB_BYTES=$(stat -c %s "$DB")
WAL_BYTES=$(stat -c %s "$DB-wal" 2>/dev/null || echo 0)

echo
echo "c2cd XIP benchmark: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, 127.0.0.1, $(nproc) CPUs"
awk '
    BEGIN { printf "%-10s %12s %10s %10s %10s  %s\n", "name", "requests/s", "p50 ms", "p99 ms", "non-2xx", "socket errors" }
    { printf "%-10s %12.0f %10.3f %10.3f %10d  %s\n", $1, $2, $3, $4, $5, $6; rps[NR] = $2 }
    END {
        if (rps[1] > 0) printf "ratio c2cd/hello requests/s: %.3f\n", rps[2] / rps[1]
        if (rps[3] > 0 && rps[4] > 0) printf "ratio guarded/unguarded requests/s (a Requestor per request): %.3f\n", rps[4] / rps[3]
    }
' "$TMP/results"
echo "database: $DB_BYTES bytes (+ $WAL_BYTES bytes WAL), $ROWS rows in calls, $(( ROWS > 0 ? (DB_BYTES + WAL_BYTES) / ROWS : 0 )) bytes/call"
echo "c2cd exit status after SIGTERM: $c2cd_rc"
echo "calls by state: $(python3 -c "import sqlite3,sys; print(', '.join(f'{s} {n}' for s, n in sqlite3.connect(sys.argv[1]).execute('select state, count(*) from calls group by state order by 2 desc')))" "$DB")"
# WARN/ERROR lines, split into those logged under load and those after SIGTERM.
awk '
    / SIGTERM: / { stopping = 1 }
    / (WARN|ERROR) / { if (stopping) after++; else before++ }
    END { printf "c2cd WARN/ERROR log lines: %d under load, %d after SIGTERM\n", before, after }
' "$TMP/c2cd.log"
{ grep -E ' (WARN|ERROR) ' "$TMP/c2cd.log" || true; } | sed -E 's/^[^ ]+ +//; s/call [0-9a-f-]+/call ID/' | sort | uniq -c | sort -rn | head -n 10
