#!/usr/bin/env bash
# RoundTrip matching benchmark: POST /roundtrip searches against a database of
# 1 000 calls (the baseline) and of CALLS calls (default 1 000 000), same
# binary, same box, same run.
#
# What it measures: requests/s and p50/p99 latency (wrk --latency, closed loop,
# keep-alive) of searches (ANI + Target + CallStart), each for a different
# call, so each is a real match: parsed, authenticated, looked up through the
# index and recorded with its match in SQLite (synchronous=FULL, group commit)
# before the answer. The calls are the PBX's (pbx_calls, as CDR ingest makes
# them), one a second from one caller each to one call-center number, so the
# ±900 s window holds 1 800 calls of that Target and the ANI must pick one.
# It prints the ratio large/baseline of requests/s and of p50.
#
# Run:  bash bench/roundtrip.sh
# Env:  DURATION     wrk duration per run  (default 10s)
#       CONNECTIONS  wrk connections       (default 16; wrk threads fixed at 2)
#       CALLS        calls in the large database (default 1000000)
#       KEEP=1       keep the temp dir
#
# c2cd listens on 127.0.0.1 only. Every wait is bounded.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
CALLS=${CALLS:-1000000}
THREADS=2

cd "$(dirname "$0")/.."
. bench/lib.sh
need_tools curl python3

cargo build --release --bin c2cd
C2CD=target/release/c2cd

scratch bench-rt

config() {
    server_head "$1"
    cat <<EOF
[[partner]]
id = "agency"
roundtrip = "full"
username = "agency"
password = "agency-password-0123456789"
EOF
}

# fill DB N: migrates DB (c2cd starts and stops on it), then adds N PBX calls:
# call i from +1 2xx xxx xxxx (2 000 000 000 + i) to +1 888 123 4567, one a second.
fill() {
    local db=$1 n=$2
    config "$db" >"$TMP/fill.toml"
    env $(unit_env) "$C2CD" serve --config "$TMP/fill.toml" 2>"$TMP/fill.log" &
    PID=$!
    wait_port "$TMP/fill.log" "$PID" >/dev/null
    stop_server "$PID"
    PID=
    python3 - "$db" "$n" <<'PY'
import sqlite3, sys, uuid
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
base = 1_700_000_000_000
def rows():
    for i in range(n):
        yield (str(uuid.UUID(int=i + 1)), "bench", str(i), f"+1{2_000_000_000 + i}",
               "+18881234567", base + i * 1000, "{}", base)
with c:
    c.executemany(
        "INSERT INTO pbx_calls (id, source, unique_id, ani, target, started_at, received, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows())
c.execute("ANALYZE")
c.close()
PY
}

# The wrk script: each request searches for the next call of its thread.
roundtrip_search_lua "$TMP/search.lua"

# bench NAME N: fills a database with N calls, serves it, loads it with wrk,
# appends "NAME RPS P50 P99 NON2XX" to results.
bench() {
    local name=$1 n=$2 db=$TMP/$1.db out=$TMP/wrk-$1.txt port t0
    t0=$(date +%s)
    fill "$db" "$n"
    echo "$name: $n calls written in $(( $(date +%s) - t0 )) s" >&2
    config "$db" >"$TMP/$name.toml"
    env $(unit_env) "$C2CD" serve --config "$TMP/$name.toml" 2>"$TMP/$name.log" &
    PID=$!
    port=$(wait_port "$TMP/$name.log" "$PID")
    # One search by hand first: it must match.
    local first
    first=$(curl -sS -m 5 -u agency:agency-password-0123456789 -H 'Content-Type: application/xml' \
        --data-binary '<Call xmlns="http://www.dial800.com/roundtrip/2011-07-15"><ANI>tel:+12000000000</ANI><Target>tel:8881234567</Target><CallStart>2023-11-14T22:13:20Z</CallStart></Call>' \
        -w ' %{http_code}' "http://127.0.0.1:$port/roundtrip")
    [[ $first == *" 200" ]] || { echo "the first search answered: $first" >&2; exit 1; }
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ($name)" >&2
    timeout 600 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$TMP/search.lua" \
        "http://127.0.0.1:$port" -- "$n" "$THREADS" >"$out"
    stop_server "$PID"
    PID=
    wrk_line "$name" "$out" >>"$TMP/results"
}

bench baseline 1000
bench large "$CALLS"

echo
echo "c2cd RoundTrip matching: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, 127.0.0.1, $(nproc) CPUs; baseline 1000 calls, large $CALLS calls"
awk '
    BEGIN { printf "%-10s %12s %10s %10s %10s\n", "name", "requests/s", "p50 ms", "p99 ms", "non-2xx" }
    { printf "%-10s %12.0f %10.3f %10.3f %10d\n", $1, $2, $3, $4, $5; rps[NR] = $2; p50[NR] = $3 }
    END { if (rps[1] > 0 && p50[1] > 0) printf "ratio large/baseline: requests/s %.3f, p50 %.3f\n", rps[2] / rps[1], p50[2] / p50[1] }
' "$TMP/results"
