#!/usr/bin/env bash
# The benchmark of issue 10 in one command: c2cd against the limits of this
# machine, every number measured in the same run, as absolute values and as
# ratios to a bare hyper hello-world (examples/hello.rs, the ceiling of this
# box's HTTP stack).
#
# What it measures (load: wrk -t2 -c64 --latency for DURATION, closed loop,
# keep-alive, 127.0.0.1 only; c2cd on the simulator in instant mode, ring =
# talk = 0s, [guard] check_numbers = false, log level info; each dialect on a
# fresh database; every request recorded in SQLite, synchronous=FULL, group
# commit, before its answer):
#   1. the ceiling: hello-world requests/s, p50, p99;
#   2. saturation requests/s, p50, p99 of
#        XIP        GET /request/call.php with a valid Auth,
#        Spokn      POST /c2c/1.0/call (form, HTTP Basic),
#        Airtel     POST /v2/execute/workflow (the seed's sample, maxRetries 0,
#                   no callBackURLs),
#        RoundTrip  POST /roundtrip searches (ANI + Target + CallStart), each for
#                   another of CALLS PBX calls (as bench/roundtrip.sh),
#        Cloud9     GET /cloud9/moc (a subscriber on a balance c2cd holds);
#      a repeated RoundTrip match answers 409: non-2xx are counted, not hidden;
#   3. XIP p50/p99 at half its saturation rate: before each request, each
#      connection waits 64 x 1000 / (rate / 2) ms on average (wrk delay(),
#      exponential: Poisson arrivals); the rate achieved is reported too;
#   4. c2cd's memory: VmRSS idle (1 s after it listens), VmRSS with 1,000 open
#      idle keep-alive connections (each sent one GET /healthz), then VmHWM
#      after the XIP saturation run;
#   5. time from exec to sd_notify READY=1 (NOTIFY_SOCKET) on a database of
#      CALLS calls (copies of a real XIP call, 98% completed) and CALLS PBX
#      calls: the median of 3 starts, warm page cache;
#   6. RoundTrip match latency at CALLS PBX calls with one connection (the
#      lookup and its durable write, no queueing: wrk -t1 -c1); blocklist lookup
#      time at NUMBERS numbers and on an empty list (as bench/blocklist.sh:
#      `c2cd block import` of an FTC-style CSV, then `c2cd block check --stdin`
#      of LOOKUPS numbers, half listed, warm run; a mean per lookup, as the
#      command times itself: it gives no p99);
#   7. callback deliveries per second: CB_CALLS native calls (POST /v1/calls,
#      8 client threads) whose events are POSTed to a local hello-world; the
#      rate is delivered callbacks / (last delivered_at - first created_at),
#      from the outbox itself, once nothing is pending;
#   8. database bytes per call: (db + WAL) / rows in calls, after the XIP runs,
#      c2cd stopped with SIGTERM (drained, WAL checkpointed).
# It prints a markdown table for BENCHMARKS.md: value, unit, ratio to the
# hello-world of this run, and issue 10's target where it gives one.
#
# Run:  bash bench/run.sh
# Env:  DURATION     wrk duration per run           (default 10s)
#       CONNECTIONS  wrk connections                 (default 64; threads 2)
#       CALLS        calls (and PBX calls) in the large database (default 1000000)
#       NUMBERS      numbers in the large blocklist  (default 1000000)
#       LOOKUPS      blocklist numbers checked       (default 200000)
#       IDLE_CONNS   idle connections held open      (default 1000)
#       CB_CALLS     calls placed for the callback run (default 2000)
#       C2CD, HELLO  prebuilt c2cd and hello binaries: no cargo build
#       KEEP=1       keep the temp dir (configs, logs, databases, wrk outputs)
#
# Every server listens on 127.0.0.1 only; every wait is bounded. A full run
# takes about 9 x DURATION plus filling the large database and the blocklist
# (about a minute each at 1,000,000 rows) plus the release build.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
CALLS=${CALLS:-1000000}
NUMBERS=${NUMBERS:-1000000}
LOOKUPS=${LOOKUPS:-200000}
IDLE_CONNS=${IDLE_CONNS:-1000}
CB_CALLS=${CB_CALLS:-2000}
THREADS=2

# Binaries given as paths relative to the caller's directory stay valid.
[[ -n ${C2CD:-} ]] && C2CD=$(realpath "$C2CD")
[[ -n ${HELLO:-} ]] && HELLO=$(realpath "$HELLO")
cd "$(dirname "$0")/.."
. bench/lib.sh
need_tools curl python3 base64

if [[ -z ${C2CD:-} || -z ${HELLO:-} ]]; then
    cargo build --release --bin c2cd --example hello
    C2CD=${C2CD:-$PWD/target/release/c2cd}
    HELLO=${HELLO:-$PWD/target/release/examples/hello}
fi
# 1,000 connections held open, plus c2cd's own files.
if (( $(ulimit -n) < IDLE_CONNS + 1024 )); then
    ulimit -n "$(( IDLE_CONNS + 1024 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

# --- temp dir, cleanup ------------------------------------------------------
scratch bench-run

say() { echo "== $*" >&2; }

# --- c2cd -------------------------------------------------------------------
CB_SECRET=callback-secret-0123456789
# config DB [CALLBACK_URL]: every front door on the instant simulator; with
# CALLBACK_URL, the native partner's events are POSTed there.
config() {
    local callbacks=
    [[ -n ${2:-} ]] && callbacks="callback_url = \"$2\"
callback_hosts = [\"127.0.0.1\"]
callback_secrets = [\"$CB_SECRET\"]"
    server_head "$1" 'public_url = "https://pbx.example.com:8443"'
    cat <<EOF
[guard]
check_numbers = false
$(cloud9_tables)
[[partner]]
id = "$PARTNER"
secret = "$SECRET"
provider = "sim"
[[partner]]
id = "spokn"
dialects = ["spokn"]
username = "spokn"
password = "spokn-password-0123456789"
provider = "sim"
[[partner]]
id = "airtel"
dialects = ["airtel"]
username = "airtel"
password = "airtel-password-0123456789"
customer_id = "CUST-1"
call_flow_ids = ["FLOW-1"]
provider = "sim"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "sim"
$callbacks
[[partner]]
id = "agency"
roundtrip = "full"
username = "agency"
password = "agency-password-0123456789"
EOF
    instant_sim
}
basic() { printf '%s' "$1" | base64 -w0; }

# serve NAME [CALLBACK_URL]: starts c2cd on $TMP/NAME.db (config $TMP/NAME.toml,
# log $TMP/NAME.log); sets PID and PORT.
serve() {
    config "$TMP/$1.db" "${2:-}" >"$TMP/$1.toml"
    # Emptied before the start, not by it: a second start of NAME must not
    # have wait_port read the port of the first from the old log.
    : >"$TMP/$1.log"
    env $(unit_env) "$C2CD" serve --config "$TMP/$1.toml" 2>"$TMP/$1.log" &
    PID=$!
    PIDS+=("$PID")
    PORT=$(wait_port "$TMP/$1.log" "$PID")
}

# first NAME EXPECT CURL_ARGS…: one request by hand, which must answer HTTP 200
# with EXPECT in its body, before the load.
first() {
    local name=$1 expect=$2 status
    shift 2
    status=$(curl -sS -m 5 -o "$TMP/first-$name.txt" -w '%{http_code}' "$@")
    if [[ $status != 200 ]] || { [[ -n $expect ]] && ! grep -qF -- "$expect" "$TMP/first-$name.txt"; }; then
        echo "$name: the first request answered HTTP $status, not 200 with '$expect':" >&2
        cat "$TMP/first-$name.txt" >&2
        echo >&2
        tail -n 20 "$TMP/$name.log" >&2 || true
        exit 1
    fi
}

# --- wrk --------------------------------------------------------------------
declare -A RPS P50 P99 NON2XX ERRS REQS
# load NAME URL [-t T -c C] [-s SCRIPT] [-- ARGS]: wrk --latency for DURATION;
# keeps its output in $TMP/wrk-NAME.txt and its numbers in RPS[NAME] etc.
load() {
    local name=$1 url=$2 out=$TMP/wrk-$1.txt t=$THREADS c=$CONNECTIONS rps p50 p99 non
    shift 2
    local opts=() rest=()
    while (( $# )); do
        case $1 in
            -t) t=$2; shift 2 ;;
            -c) c=$2; shift 2 ;;
            -s) opts+=(-s "$2"); shift 2 ;;
            --) rest=("$@"); break ;;
            *) echo "load: unknown argument $1" >&2; exit 2 ;;
        esac
    done
    say "wrk -t$t -c$c -d$DURATION --latency ${opts[*]} ($name)"
    # wrk runs for DURATION; timeout is a backstop only.
    timeout 600 wrk -t"$t" -c"$c" -d"$DURATION" --latency "${opts[@]}" "$url" "${rest[@]}" >"$out"
    read -r _ rps p50 p99 non <<<"$(wrk_line "$name" "$out")"
    RPS[$name]=${rps:-0} P50[$name]=$p50 P99[$name]=$p99 NON2XX[$name]=$non
    ERRS[$name]=$(wrk_errors "$out")
    REQS[$name]=$(awk '/ requests in / { print $1 }' "$out")
}

# post_lua NAME PATH CONTENT_TYPE USER:PASSWORD BODYFILE: a wrk script that
# POSTs BODYFILE to PATH with HTTP Basic; prints its path.
post_lua() {
    cat >"$TMP/$1.lua" <<LUA
wrk.method = "POST"
wrk.path = "$2"
wrk.headers["Content-Type"] = "$3"
wrk.headers["Authorization"] = "Basic $(basic "$4")"
local f = assert(io.open("$5", "rb"))
wrk.body = f:read("*a")
f:close()
LUA
    echo "$TMP/$1.lua"
}

# --- the table --------------------------------------------------------------
: >"$TMP/table"
# row MEASUREMENT VALUE UNIT RATIO TARGET NOTES
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@" >>"$TMP/table"; }
# calc FORMAT EXPR: awk arithmetic, "—" when it divides by zero.
calc() { awk "BEGIN { d = 1; $2; if (d == 0) print \"—\"; else printf \"$1\", v }"; }
ratio() { calc %.3f "d = $2 + 0; if (d) v = $1 / d"; }
# meets VALUE OP LIMIT: "met" or "missed".
meets() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<") ? v < l : v >= l; print ok ? "met" : "missed" }'; }
mib() { calc %.1f "v = $1 / 1024"; }

# wrk_rows LABEL NAME [NOTE]: requests/s, p50, p99 of run NAME, with ratios to hello.
wrk_rows() {
    local label=$1 n=$2 note=${3:-} target= rt
    local errs="non-2xx ${NON2XX[$n]}, socket errors: ${ERRS[$n]}"
    [[ -n $note ]] && errs="$errs; $note"
    rt=$(ratio "${RPS[$n]}" "${RPS[hello]}")
    [[ $n == xip ]] && target="≥ 0.5 of hello: $(meets "$rt" '>=' 0.5)"
    row "$label requests/s" "$(calc %.0f "v = ${RPS[$n]}")" "req/s" "$rt" "$target" "$errs"
    row "$label p50" "${P50[$n]}" ms "$(ratio "${P50[$n]}" "${P50[hello]}")" "" ""
    row "$label p99" "${P99[$n]}" ms "$(ratio "${P99[$n]}" "${P99[hello]}")" "" ""
}

# ============================================================================
# 1. The ceiling.
say "hello-world (the ceiling)"
"$HELLO" 127.0.0.1:0 2>"$TMP/hello.log" &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
HELLO_PORT=$(wait_port "$TMP/hello.log" "$HELLO_PID")
load hello "http://127.0.0.1:$HELLO_PORT/"
stop_server "$HELLO_PID"

# ============================================================================
# 2-4, 8. XIP: memory idle and with idle connections, saturation, peak memory,
# half the saturation rate, bytes per call.
say "c2cd XIP"
serve xip
XIP_PID=$PID
AUTH=$("$C2CD" sign --secret "$SECRET" --partner "$PARTNER" --requestor "$REQUESTOR" --fulfillment "$FULFILLMENT")
XIP_PATH="/request/call.php?PartnerID=$PARTNER&Requestor=$REQUESTOR&Fulfillment=$FULFILLMENT&Auth=$AUTH"
sleep 1
RSS_IDLE=$(proc_kb "$XIP_PID" VmRSS)
ANON_IDLE=$(proc_kb "$XIP_PID" RssAnon)

say "$IDLE_CONNS idle keep-alive connections"
# Prints "ANSWERED_200 STILL_OPEN VMRSS_KB C2CD_FDS" while they are all open.
read -r CONNS_OK CONNS_OPEN RSS_CONNS CONNS_FDS < <(timeout 120 python3 - "$PORT" "$XIP_PID" "$IDLE_CONNS" <<'PY'
import os, socket, sys, time
port, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
socks, ok = [], 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: c2cd\r\n\r\n")
    socks.append(s)
for s in socks:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    ok += head.startswith(b"HTTP/1.1 200")
time.sleep(0.5)
rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
fds = len(os.listdir(f"/proc/{pid}/fd"))
still = 0  # not closed by c2cd: no EOF waiting
for s in socks:
    s.setblocking(False)
    try:
        still += s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        still += 1
print(ok, still, rss, fds, flush=True)
PY
)

first xip '' "http://127.0.0.1:$PORT$XIP_PATH"
load xip "http://127.0.0.1:$PORT$XIP_PATH"
RSS_PEAK=$(proc_kb "$XIP_PID" VmHWM)

# Half the saturation rate: CONNECTIONS connections, each waiting DELAY ms on
# average before each request: exponential waits (Poisson arrivals, so the
# connections do not send in step), rounded up or down at random so that the
# mean stays DELAY (wrk takes whole ms). The rate achieved is a little under
# half: each connection also waits for its answers.
DELAY=$(calc %.3f "d = ${RPS[xip]} + 0; if (d) v = $CONNECTIONS * 1000 / (d / 2)")
[[ $DELAY == — ]] && { echo "XIP saturation rate is 0: no half-rate run" >&2; exit 1; }
poisson_lua >"$TMP/half.lua"
load xip-half "http://127.0.0.1:$PORT$XIP_PATH" -s "$TMP/half.lua" -- "$DELAY"

say "stopping c2cd (SIGTERM: drain, WAL checkpoint)"
stop_server "$XIP_PID"
XIP_ROWS=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from calls').fetchone()[0])" "$TMP/xip.db")
XIP_BYTES=$(( $(stat -c %s "$TMP/xip.db") + $(stat -c %s "$TMP/xip.db-wal" 2>/dev/null || echo 0) ))

# ============================================================================
# 2. Spokn, Airtel, Cloud9: each on a fresh database.
say "c2cd Spokn"
serve spokn
printf 'aparty=%%2B18474255380&bparty=%%2B14155550123' >"$TMP/spokn.body"
first spokn '<code>200</code>' -u spokn:spokn-password-0123456789 \
    -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$TMP/spokn.body" \
    "http://127.0.0.1:$PORT/c2c/1.0/call"
load spokn "http://127.0.0.1:$PORT" -s "$(post_lua spokn /c2c/1.0/call application/x-www-form-urlencoded \
    spokn:spokn-password-0123456789 "$TMP/spokn.body")"
stop_server "$PID"

say "c2cd Airtel"
serve airtel
# The seed's sample (tests/it/airtel.rs), maxRetries 0, without callBackURLs:
# no callbacks to deliver.
cat >"$TMP/airtel.body" <<'JSON'
{"callFlowId":"FLOW-1","customerId":"CUST-1","callType":"OUTBOUND","callerId":"8000000001","callFlowConfiguration":{"initiateCall_1":{"callerId":"8000000001","mergingStrategy":"SEQUENTIAL","participants":[{"participantAddress":"9810000001","callerId":"8000000001","participantName":"A","maxRetries":0,"maxTime":0}],"maxTime":0},"addParticipant_1":{"mergingStrategy":"SEQUENTIAL","maxTime":0,"participants":[{"participantAddress":"9810000002","callerId":"8000000001","participantName":"B","maxRetries":0,"maxTime":0,"enableEarlyMedia":true}]},"record":{"enabled":true}}}
JSON
first airtel '"status":"success"' -u airtel:airtel-password-0123456789 \
    -H 'Content-Type: application/json' --data-binary "@$TMP/airtel.body" \
    "http://127.0.0.1:$PORT/v2/execute/workflow"
load airtel "http://127.0.0.1:$PORT" -s "$(post_lua airtel /v2/execute/workflow application/json \
    airtel:airtel-password-0123456789 "$TMP/airtel.body")"
stop_server "$PID"

say "c2cd Cloud9"
serve cloud9
"$C2CD" balance credit +447700900123 1000.00 --config "$TMP/cloud9.toml" >/dev/null
C9_QUERY='TIMESTAMP=2026-11-22+10:15:00&IMSI=234180000000001&TRANSACTIONID=1002&CARRIERID=C9BENCH&MSISDN=%2B447700900123&MCC=234&MNC=18&TADIG=GBWC9&REQUEST_TYPE=AUTH_CALLBACK_CALL&CALLDESTINATION=%2B441234567890&USER_BALANCE=0.00&IOT=0&IOT_CHARGE=0.00&MSRN=%2B447700900001&ECC=1'
first cloud9 '<REQUEST_STATUS>1</REQUEST_STATUS>' "http://127.0.0.1:$PORT/cloud9/moc?$C9_QUERY"
load cloud9 "http://127.0.0.1:$PORT/cloud9/moc?$C9_QUERY"
stop_server "$PID"

# ============================================================================
# 5, 6. The large database: CALLS calls and CALLS PBX calls. READY, then
# RoundTrip matching at saturation and with one connection.
say "large database: $CALLS calls and $CALLS PBX calls"
serve large
# One real XIP call, the template of the CALLS rows.
first large '' "http://127.0.0.1:$PORT$XIP_PATH"
stop_server "$PID"
FILL_T0=$(date +%s)
python3 - "$TMP/large.db" "$CALLS" <<'PY'
import sqlite3, sys, time, uuid
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=DELETE")  # filling: no WAL of the whole table
c.execute("PRAGMA synchronous=OFF")
cur = c.execute("SELECT * FROM calls ORDER BY created_at DESC LIMIT 1")
cols = [d[0] for d in cur.description]
tmpl = cur.fetchone()
at = {name: i for i, name in enumerate(cols)}
now = int(time.time() * 1000)
first = now - 30 * 86_400_000 - 3_600_000  # spread over 30 days, up to an hour ago
step = max(1, 30 * 86_400_000 // max(n, 1))
deadline = None if tmpl[at["deadline_at"]] is None else tmpl[at["deadline_at"]] - tmpl[at["created_at"]]
def calls():
    for i in range(n):
        r = list(tmpl)
        ms = first + i * step
        r[at["id"]] = str(uuid.UUID(int=(ms << 80) | (7 << 76) | (2 << 62) | i))  # UUIDv7
        r[at["created_at"]] = ms
        r[at["updated_at"]] = ms + 2000
        if deadline is not None:
            r[at["deadline_at"]] = ms + deadline
        r[at["a_number"]] = f"+1{3_000_000_000 + i}"
        r[at["state"]] = "failed" if i % 100 == 0 else "rejected" if i % 100 == 1 else "completed"
        yield r
# PBX calls as bench/roundtrip.sh: call i from +1 (2 000 000 000 + i) to
# +1 888 123 4567, one a second.
base = 1_700_000_000_000
def pbx():
    for i in range(n):
        yield (str(uuid.UUID(int=i + 1)), "bench", str(i), f"+1{2_000_000_000 + i}",
               "+18881234567", base + i * 1000, "{}", base)
c.execute("BEGIN")
c.executemany(f"INSERT INTO calls ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", calls())
c.executemany(
    "INSERT INTO pbx_calls (id, source, unique_id, ani, target, started_at, received, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pbx())
c.execute("COMMIT")
c.execute("ANALYZE")
c.execute("PRAGMA journal_mode=WAL")
c.close()
PY
FILL_S=$(( $(date +%s) - FILL_T0 ))
say "filled in $FILL_S s"

say "time to READY=1, 3 starts"
READY_MS=$(timeout 300 python3 - "$C2CD" "$TMP/large.toml" "$TMP/notify.sock" "$TMP/ready" <<'PY'
import os, socket, subprocess, sys, time
c2cd, config, path, logs = sys.argv[1:]
times = []
for run in range(3):
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    with open(f"{logs}-{run}.log", "w") as log:
        t0 = time.monotonic()
        p = subprocess.Popen([c2cd, "serve", "--config", config],
                             env=dict(os.environ, NOTIFY_SOCKET=path), stdout=log, stderr=log)
        try:
            while b"READY=1" not in sock.recv(4096).split(b"\n"):
                pass
            times.append((time.monotonic() - t0) * 1000)
        finally:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            sock.close()
print(" ".join(f"{t:.1f}" for t in times))
PY
)
READY_MEDIAN=$(tr ' ' '\n' <<<"$READY_MS" | sort -n | sed -n 2p)

serve large
# Each request searches for the next PBX call of its thread, from OFFSET on.
roundtrip_search_lua "$TMP/search.lua"
# By hand, the last call (the load starts at the first).
LAST=$(( CALLS - 1 ))
first large '<ID>' -u agency:agency-password-0123456789 -H 'Content-Type: application/xml' \
    --data-binary "<Call xmlns=\"http://www.dial800.com/roundtrip/2011-07-15\"><ANI>tel:+1$(( 2000000000 + LAST ))</ANI><Target>tel:8881234567</Target><CallStart>$(date -u -d "@$(( 1700000000 + LAST ))" +%Y-%m-%dT%H:%M:%SZ)</CallStart></Call>" \
    "http://127.0.0.1:$PORT/roundtrip"
load roundtrip "http://127.0.0.1:$PORT" -s "$TMP/search.lua" -- "$CALLS" "$THREADS" 0
# One connection, on calls not searched yet (unless CALLS is too small).
load roundtrip-1 "http://127.0.0.1:$PORT" -t 1 -c 1 -s "$TMP/search.lua" -- "$CALLS" 1 "$(( ${REQS[roundtrip]:-0} + 1000 ))"
stop_server "$PID"

# ============================================================================
# 6. The blocklist (as bench/blocklist.sh).
say "blocklist: $NUMBERS numbers, $LOOKUPS lookups"
dnc_files "$NUMBERS" "$LOOKUPS" "$TMP"
"$C2CD" block add '+1900*' --database "$TMP/block-empty.db" >/dev/null
"$C2CD" block remove '+1900*' --database "$TMP/block-empty.db" >/dev/null
IMPORT_T0=$(date +%s.%N)
"$C2CD" block import "$TMP/dnc.csv" --database "$TMP/block-large.db" >"$TMP/import.out"
IMPORT_S=$(calc %.1f "v = $(date +%s.%N) - $IMPORT_T0")
listed=$(awk '/numbers listed:/ { print $3 }' "$TMP/import.out")
[[ $listed == "$NUMBERS" ]] || { echo "the import listed $listed of $NUMBERS numbers" >&2; cat "$TMP/import.out" >&2; exit 1; }
# check DB: µs per lookup of the warm (second) run, as `block check` reports it.
check() {
    local code
    for _ in 1 2; do
        code=0
        timeout 300 "$C2CD" block check --stdin --side b --database "$1" \
            <"$TMP/lookups.txt" >/dev/null 2>"$TMP/check.err" || code=$?
        [[ $code == 0 || $code == 3 ]] || { cat "$TMP/check.err" >&2; exit 1; }
    done
    tail -n1 "$TMP/check.err" >&2
    tail -n1 "$TMP/check.err" | awk '{ us = $7; sub(/^\(/, "", us); print us }'
}
BLOCK_EMPTY_US=$(check "$TMP/block-empty.db")
BLOCK_LARGE_US=$(check "$TMP/block-large.db")

# ============================================================================
# 7. Callback deliveries to a local receiver.
say "callbacks: $CB_CALLS native calls, their events POSTed to a hello-world"
"$HELLO" 127.0.0.1:0 2>"$TMP/receiver.log" &
RX_PID=$!
PIDS+=("$RX_PID")
RX_PORT=$(wait_port "$TMP/receiver.log" "$RX_PID")
serve callbacks "http://127.0.0.1:$RX_PORT/cb"
# Prints "STATUS:COUNT …" of the answers.
CB_PLACED=$(timeout 300 python3 - "$PORT" "$CB_CALLS" "$(basic crm:crm-password-0123456789)" <<'PY'
import collections, http.client, sys, threading
port, n, auth = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = '{"a":{"participants":[{"number":"+16045551234"}]},"b":{"participants":[{"number":"+16045550000"}]}}'
headers = {"Content-Type": "application/json", "Authorization": "Basic " + auth}
codes, lock = collections.Counter(), threading.Lock()
def place(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(k):
        conn.request("POST", "/v1/calls", body, headers)
        r = conn.getresponse()
        r.read()
        with lock:
            codes[r.status] += 1
    conn.close()
workers = [threading.Thread(target=place, args=(n // 8 + (w < n % 8),)) for w in range(8)]
for w in workers: w.start()
for w in workers: w.join()
print(" ".join(f"{s}:{c}" for s, c in sorted(codes.items())))
PY
)
say "placed: $CB_PLACED (HTTP status:count); waiting for the outbox to empty"
# Prints "DELIVERED DEAD PENDING SECONDS" once no call is open and nothing is
# pending (at most 300 s), from the outbox's own timestamps.
read -r CB_DELIVERED CB_DEAD CB_PENDING CB_SECONDS < <(python3 - "$TMP/callbacks.db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
one = lambda q: c.execute(q).fetchone()[0]
end = time.monotonic() + 300
while time.monotonic() < end:
    pending = one("SELECT count(*) FROM callbacks WHERE state = 'pending'")
    open_ = one("SELECT count(*) FROM calls WHERE state NOT IN ('rejected', 'handed_off', 'completed', 'failed', 'lost')")
    if pending == 0 and open_ == 0 and one("SELECT count(*) FROM callbacks") > 0:
        break
    time.sleep(0.1)
delivered = one("SELECT count(*) FROM callbacks WHERE state = 'delivered'")
dead = one("SELECT count(*) FROM callbacks WHERE state = 'dead'")
pending = one("SELECT count(*) FROM callbacks WHERE state = 'pending'")
span = one("SELECT max(delivered_at) - (SELECT min(created_at) FROM callbacks) FROM callbacks WHERE state = 'delivered'") or 0
print(delivered, dead, pending, span / 1000)
PY
)
stop_server "$PID"
stop_server "$RX_PID"
CB_RATE=$(calc %.0f "d = $CB_SECONDS + 0; if (d) v = $CB_DELIVERED / d")

# ============================================================================
# The report.
wrk_rows "hello-world (ceiling)" hello
wrk_rows "XIP" xip
row "XIP at half saturation: achieved rate" "$(calc %.0f "v = ${RPS[xip-half]}")" "req/s" "$(ratio "${RPS[xip-half]}" "${RPS[xip]}") of XIP" "" "each connection $DELAY ms apart on average (Poisson); non-2xx ${NON2XX[xip-half]}, socket errors: ${ERRS[xip-half]}"
row "XIP at half saturation: p50" "${P50[xip-half]}" ms "" "" ""
row "XIP at half saturation: p99" "${P99[xip-half]}" ms "" "< 5 ms: $(meets "${P99[xip-half]}" '<' 5)" ""
wrk_rows "Spokn" spokn
wrk_rows "Airtel" airtel
wrk_rows "RoundTrip search-match, $CALLS PBX calls" roundtrip "non-2xx are 409: a call matched already"
wrk_rows "Cloud9" cloud9
row "RoundTrip match, $CALLS PBX calls, 1 connection: p50" "${P50[roundtrip-1]}" ms "" "" "$(calc %.0f "v = ${RPS[roundtrip-1]}") req/s; non-2xx ${NON2XX[roundtrip-1]}"
row "RoundTrip match, $CALLS PBX calls, 1 connection: p99" "${P99[roundtrip-1]}" ms "" "< 1 ms: $(meets "${P99[roundtrip-1]}" '<' 1)" "the lookup and its durable write"
row "blocklist lookup, $NUMBERS numbers" "$BLOCK_LARGE_US" "µs" "" "< 1 ms: $(meets "$BLOCK_LARGE_US" '<' 1000)" "mean of $LOOKUPS (block check --stdin); $(ratio "$BLOCK_LARGE_US" "$BLOCK_EMPTY_US") x the empty list"
row "blocklist lookup, empty list" "$BLOCK_EMPTY_US" "µs" "" "" "mean of $LOOKUPS"
row "RSS idle" "$(mib "$RSS_IDLE")" MiB "" "< 15 MB: $(meets "$(mib "$RSS_IDLE")" '<' 15)" "VmRSS 1 s after listening; of it $(mib "$ANON_IDLE") MiB private (RssAnon), the rest the binary's pages mapped from its file"
row "RSS with $IDLE_CONNS open connections" "$(mib "$RSS_CONNS")" MiB "" "< 64 MB: $(meets "$(mib "$RSS_CONNS")" '<' 64)" "$CONNS_OK answered 200, $CONNS_OPEN still open, c2cd fds $CONNS_FDS"
row "RSS peak" "$(mib "$RSS_PEAK")" MiB "" "" "VmHWM after the XIP saturation run (the $IDLE_CONNS connections came before it)"
row "start to READY=1, $CALLS calls" "$READY_MEDIAN" ms "" "< 200 ms: $(meets "$READY_MEDIAN" '<' 200)" "median of 3: $READY_MS; + $CALLS PBX calls"
row "callback deliveries" "$CB_RATE" "/s" "" "" "$CB_DELIVERED delivered in $CB_SECONDS s, $CB_DEAD dead, $CB_PENDING pending; $CB_CALLS calls placed ($CB_PLACED)"
row "database bytes per call" "$(calc %.0f "d = $XIP_ROWS; if (d) v = $XIP_BYTES / d")" "B/call" "" "" "$XIP_BYTES bytes, $XIP_ROWS calls (XIP runs)"

echo
echo "c2cd benchmark (bench/run.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r)"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency on 127.0.0.1; CALLS=$CALLS NUMBERS=$NUMBERS LOOKUPS=$LOOKUPS CB_CALLS=$CB_CALLS"
echo "large database filled in $FILL_S s; blocklist of $NUMBERS imported in $IMPORT_S s"
echo
echo "| measurement | value | unit | ratio to hello | target (issue 10) | notes |"
echo "| --- | ---: | --- | ---: | --- | --- |"
cat "$TMP/table"
echo
echo "Ratios: requests/s over hello's (higher is better); latencies over hello's (lower is better)."
