#!/usr/bin/env bash
# Soak: DURATION (default 10 minutes) of XIP load at half c2cd's saturation
# rate, each request a call the simulator plays out whole (A rings RING, then
# B, both talk TALK, hang up) with a callback to a local receiver for each of
# its events; meanwhile c2cd's resident memory and open descriptors are
# sampled every SAMPLE seconds. It passes when there was no error answer and no
# socket error, memory and descriptors stayed flat (the last minute's mean
# within GROWTH % of the second minute's), and the callback outbox drained.
#
# The saturation rate is that of the soak's own work, measured first in the
# same run: wrk -c64 for SATURATE seconds, closed loop, on the soak's config,
# then the wait until every call has ended and every callback is delivered;
# the rate is the calls over that whole time. (Requests alone, on the instant
# simulator without callbacks, saturate far higher: each call here also makes
# eight callbacks, and the outbox would fall behind. That rate is measured and
# printed too.) The soak then offers half the rate with exponential gaps
# (bench/lib.sh poisson_lua).
#
# Run:  bash bench/soak.sh
# Env:  DURATION  soak length           (default 10m)
#       RING      the simulator's ring  (default 200ms)
#       TALK      the simulator's talk  (default 1s)
#       SAMPLE    seconds between samples (default 10)
#       GROWTH    allowed growth, %      (default 10)
#       DRAIN     seconds the outbox may take to drain after the load (default 300)
#       SATURATE  seconds of closed-loop load that measure the saturation (default 20)
#       C2CD, HELLO  prebuilt binaries: no cargo build
#       KEEP=1    keep the temp dir
#
# Everything listens on 127.0.0.1; wrk stops by itself after DURATION.
set -euo pipefail

DURATION=${DURATION:-10m}
RING=${RING:-200ms}
TALK=${TALK:-1s}
SAMPLE=${SAMPLE:-10}
GROWTH=${GROWTH:-10}
DRAIN=${DRAIN:-300}
SATURATE=${SATURATE:-20}
CONNECTIONS=64

[[ -n ${C2CD:-} ]] && C2CD=$(realpath "$C2CD")
[[ -n ${HELLO:-} ]] && HELLO=$(realpath "$HELLO")
cd "$(dirname "$0")/.."
. bench/lib.sh
need_tools curl python3

if [[ -z ${C2CD:-} || -z ${HELLO:-} ]]; then
    cargo build --release --bin c2cd --example hello
    C2CD=${C2CD:-$PWD/target/release/c2cd}
    HELLO=${HELLO:-$PWD/target/release/examples/hello}
fi

scratch soak

# The callback receiver: the hello-world answers 200 to any POST.
"$HELLO" 127.0.0.1:0 >"$TMP/hello.log" 2>&1 &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
for _ in $(seq 100); do
    grep -q 'listening on http://' "$TMP/hello.log" 2>/dev/null && break
    sleep 0.1
done
RECEIVER=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$TMP/hello.log" | head -1)
[[ -n $RECEIVER ]] || { echo "the receiver did not start:" >&2; cat "$TMP/hello.log" >&2; exit 1; }

# start NAME CONFIG: c2cd on CONFIG; sets PID and PORT.
start() {
    env $(unit_env) "$C2CD" serve --config "$2" 2>"$TMP/$1.log" &
    PID=$!
    PIDS+=("$PID")
    PORT=$(wait_port "$TMP/$1.log" "$PID")
}

# Requests alone: the instant simulator, no callbacks (printed, for scale).
xip_sim_config "$TMP/sat.db" "$PARTNER" "$SECRET" >"$TMP/sat.toml"
start sat "$TMP/sat.toml"
AUTH=$("$C2CD" sign --secret "$SECRET" --partner "$PARTNER" --requestor "$REQUESTOR" --fulfillment "$FULFILLMENT")
URL_PATH="/request/call.php?PartnerID=$PARTNER&Requestor=$REQUESTOR&Fulfillment=$FULFILLMENT&Auth=$AUTH"
timeout 600 wrk -t2 -c$CONNECTIONS -d10s --latency "http://127.0.0.1:$PORT$URL_PATH" >"$TMP/sat.txt"
stop_server "$PID"
REQ_SAT=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/sat.txt")

# soak_config DB: the whole lifecycle, a callback per event.
soak_config() {
    server_head "$1"
    cat <<EOF
[guard]
check_numbers = false
[callbacks]
max_backoff = "5s"
[[partner]]
id = "$PARTNER"
secret = "$SECRET"
provider = "sim"
callback_url = "http://$RECEIVER/callback"
callback_hosts = ["127.0.0.1"]
callback_secrets = ["soak-callback-secret-0123456789"]
[[provider]]
name = "sim"
kind = "sim"
ring = "$RING"
talk = "$TALK"
EOF
}

# count DB STATEMENT: one number from the database.
count() {
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1], timeout=10).execute(sys.argv[2]).fetchone()[0])" "$1" "$2"
}
OPEN_CALLS="select count(*) from calls where state not in ('rejected','handed_off','completed','failed','lost')"
PENDING_CALLBACKS="select count(*) from callbacks where state = 'pending'"

# The soak's own saturation: closed loop for SATURATE s, then until every call
# has ended and every callback is delivered (at most DRAIN s more).
soak_config "$TMP/e2e.db" >"$TMP/e2e.toml"
start e2e "$TMP/e2e.toml"
T0=$(date +%s.%N)
timeout 600 wrk -t2 -c$CONNECTIONS -d"${SATURATE}s" "http://127.0.0.1:$PORT$URL_PATH" >"$TMP/e2e.txt"
for _ in $(seq $((DRAIN * 2))); do
    [[ $(count "$TMP/e2e.db" "$OPEN_CALLS") == 0 && $(count "$TMP/e2e.db" "$PENDING_CALLBACKS") == 0 ]] && break
    sleep 0.5
done
T1=$(date +%s.%N)
E2E_CALLS=$(count "$TMP/e2e.db" "select count(*) from calls")
E2E_CALLBACKS=$(count "$TMP/e2e.db" "select count(*) from callbacks where state = 'delivered'")
E2E_LEFT=$(count "$TMP/e2e.db" "$PENDING_CALLBACKS")
stop_server "$PID"
SAT=$(awk -v n="$E2E_CALLS" -v a="$T0" -v b="$T1" 'BEGIN { printf "%.0f", n / (b - a) }')
RATE=$(awk -v s="$SAT" 'BEGIN { printf "%.0f", s / 2 }')
echo "requests alone saturate at $REQ_SAT/s; the soak's work at $SAT calls/s ($E2E_CALLS calls and $E2E_CALLBACKS callbacks in $(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }') s, $E2E_LEFT callbacks left); the soak offers $RATE/s for $DURATION" >&2

soak_config "$TMP/soak.db" >"$TMP/soak.toml"
start soak "$TMP/soak.toml"
SOAK_PID=$PID
poisson_lua >"$TMP/paced.lua"
DELAY=$(awk -v c=$CONNECTIONS -v r="$RATE" 'BEGIN { printf "%.3f", c * 1000 / r }')
timeout 7200 wrk -t2 -c$CONNECTIONS -d"$DURATION" --latency -s "$TMP/paced.lua" \
    "http://127.0.0.1:$PORT$URL_PATH" -- "$DELAY" >"$TMP/soak.txt" &
WRK=$!

# Samples: seconds since the start, RSS KiB, open descriptors.
: >"$TMP/samples"
START=$(date +%s)
while kill -0 "$WRK" 2>/dev/null; do
    echo "$(($(date +%s) - START)) $(proc_kb "$SOAK_PID" VmRSS) $(ls "/proc/$SOAK_PID/fd" | wc -l)" >>"$TMP/samples"
    sleep "$SAMPLE"
done
wait "$WRK"

# The outbox drains (bounded wait), then c2cd stops cleanly.
pending() { count "$TMP/soak.db" "$PENDING_CALLBACKS"; }
DELIVERED_AT_END=$(count "$TMP/soak.db" "select count(*) from callbacks where state = 'delivered'")
for _ in $(seq $((DRAIN * 2))); do
    [[ $(pending) == 0 ]] && break
    sleep 0.5
done
PENDING=$(pending)
stop_server "$SOAK_PID"
read -r CALLS DELIVERED DEAD OPEN < <(python3 - "$TMP/soak.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
q = lambda s: c.execute(s).fetchone()[0]
print(q("select count(*) from calls"),
      q("select count(*) from callbacks where state = 'delivered'"),
      q("select count(*) from callbacks where state = 'dead'"),
      q("select count(*) from calls where state not in ('rejected','handed_off','completed','failed','lost')"))
PY
)

NON2XX=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$TMP/soak.txt" | grep . || echo 0)
ERRS=$(wrk_errors "$TMP/soak.txt")
RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/soak.txt")
P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$TMP/soak.txt")")
# Flat: the mean of the last minute against the mean of the second minute.
read -r RSS2 FD2 RSSL FDL RSSMAX FDMAX < <(awk '
    { t[NR] = $1; r[NR] = $2; f[NR] = $3 }
    END {
        last = t[NR]
        for (i = 1; i <= NR; i++) {
            if (t[i] >= 60 && t[i] < 120) { r2 += r[i]; f2 += f[i]; n2++ }
            if (t[i] >= last - 60) { rl += r[i]; fl += f[i]; nl++ }
            if (r[i] > rm) rm = r[i]
            if (f[i] > fm) fm = f[i]
        }
        if (!n2) { r2 = r[1]; f2 = f[1]; n2 = 1 }
        printf "%.0f %.1f %.0f %.1f %d %d\n", r2 / n2, f2 / n2, rl / nl, fl / nl, rm, fm
    }' "$TMP/samples")

echo
echo "soak: $DURATION at $RATE requests/s offered (half of the soak's saturation, $SAT calls/s; requests alone $REQ_SAT/s), simulator ring $RING talk $TALK, a callback per event; $(nproc) CPUs"
echo "achieved $RPS requests/s, p99 $P99 ms; non-2xx $NON2XX; socket errors: $ERRS"
echo "calls $CALLS (open at the end: $OPEN); callbacks delivered $DELIVERED_AT_END when the load ended, $DELIVERED after the drain, dead $DEAD, pending $PENDING"
echo "RSS KiB: second minute $RSS2, last minute $RSSL, max $RSSMAX; descriptors: second minute $FD2, last minute $FDL, max $FDMAX"
ok=1
[[ $NON2XX == 0 ]] || { echo "FAIL: error answers" >&2; ok=0; }
[[ $ERRS == none ]] || { echo "FAIL: socket errors" >&2; ok=0; }
[[ $PENDING == 0 && $DEAD == 0 ]] || { echo "FAIL: callbacks not all delivered" >&2; ok=0; }
# Flat needs a second minute and a last one apart: three minutes at least.
if (($(tail -n1 "$TMP/samples" | cut -d' ' -f1) < 180)); then
    echo "(shorter than three minutes: memory and descriptors not judged)"
else
    awk -v a="$RSS2" -v b="$RSSL" -v g="$GROWTH" 'BEGIN { exit !(b <= a * (1 + g / 100)) }' ||
        { echo "FAIL: RSS grew more than $GROWTH%" >&2; ok=0; }
    awk -v a="$FD2" -v b="$FDL" -v g="$GROWTH" 'BEGIN { exit !(b <= a * (1 + g / 100) + 2) }' ||
        { echo "FAIL: descriptors grew more than $GROWTH%" >&2; ok=0; }
fi
((ok)) && echo "soak: passed"
((ok))
