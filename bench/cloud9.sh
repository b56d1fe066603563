#!/usr/bin/env bash
# Cloud9 authorisation benchmark: GET [cloud9] path (the seed's variables, a
# subscriber allowed with a balance c2cd holds) against GET /healthz of the
# same daemon, in the same run: the cost of a decision over the cost of HTTP.
#
# What it measures: requests/s and p50/p99 latency (wrk --latency, closed loop,
# keep-alive). Every Cloud9 request is parsed, decided on a balance read and
# recorded (request, decision, reply) in SQLite (synchronous=FULL, group
# commit) before the answer. It prints the ratio cloud9/healthz.
#
# Run:  bash bench/cloud9.sh
# Env:  DURATION (default 10s), CONNECTIONS (default 16; wrk threads fixed at 2),
#       KEEP=1 keeps the temp dir.
#
# c2cd listens on 127.0.0.1 only. Every wait is bounded.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=2

cd "$(dirname "$0")/.."
. bench/lib.sh
need_tools curl

cargo build --release --bin c2cd
C2CD=target/release/c2cd

scratch bench-c9

{ server_head "$TMP/bench.db"; cloud9_tables; } >"$TMP/c2cd.toml"

env $(unit_env) "$C2CD" serve --config "$TMP/c2cd.toml" 2>"$TMP/c2cd.log" &
PID=$!
port=$(wait_port "$TMP/c2cd.log" "$PID")
"$C2CD" balance credit +447700900123 1000.00 --config "$TMP/c2cd.toml" >/dev/null

Q='TIMESTAMP=2026-11-22+10:15:00&IMSI=234180000000001&TRANSACTIONID=1002&CARRIERID=C9BENCH&MSISDN=%2B447700900123&MCC=234&MNC=18&TADIG=GBWC9&REQUEST_TYPE=AUTH_CALLBACK_CALL&CALLDESTINATION=%2B441234567890&USER_BALANCE=0.00&IOT=0&IOT_CHARGE=0.00&MSRN=%2B447700900001&ECC=1'
URL="http://127.0.0.1:$port/cloud9/moc?$Q"
first=$(curl -sS -m 5 "$URL")
[[ $first == *"<REQUEST_STATUS>1</REQUEST_STATUS>"* && $first == *"<TIMER>60</TIMER>"* ]] ||
    { echo "the first request answered: $first" >&2; exit 1; }

bench() {
    local name=$1 url=$2 out=$TMP/wrk-$1.txt
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ($name)" >&2
    timeout 600 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$out"
    wrk_line "$name" "$out" >>"$TMP/results"
}
bench healthz "http://127.0.0.1:$port/healthz"
bench cloud9 "$URL"

echo
echo "c2cd Cloud9 authorisation: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, 127.0.0.1, $(nproc) CPUs"
awk '
    BEGIN { printf "%-8s %12s %10s %10s %10s\n", "name", "requests/s", "p50 ms", "p99 ms", "non-2xx" }
    { printf "%-8s %12.0f %10.3f %10.3f %10d\n", $1, $2, $3, $4, $5; rps[NR] = $2 }
    END { if (rps[1] > 0) printf "ratio cloud9/healthz requests/s: %.3f\n", rps[2] / rps[1] }
' "$TMP/results"
