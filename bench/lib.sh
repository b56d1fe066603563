# Shared by the benchmark scripts: sourced, not run.

# The partner of the XIP loads (xip.sh, run.sh, profile.sh, compare.sh), and
# the numbers its requests ask to connect.
SECRET='B4n0ff13P13!_'
PARTNER=102821
REQUESTOR=16045551234
FULFILLMENT=16045550000

# scratch NAME: a temporary directory $TMP (c2cd-NAME.XXXXXX), removed on exit
# unless KEEP=1; on exit the servers started are stopped too: the pids in the
# array PIDS and the one in PID.
scratch() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/c2cd-$1.XXXXXX")
    PIDS=()
    PID=
    trap scratch_cleanup EXIT
}
scratch_cleanup() {
    local pid
    for pid in "${PIDS[@]}" ${PID:-}; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}

# server_head DB [SERVER_KEYS]: the tables every benchmark's config starts
# with: [server] on a free loopback port (with SERVER_KEYS), [database] DB,
# [log] at info.
server_head() {
    cat <<EOF
[server]
listen = ["127.0.0.1:0"]
max_connections = 4096
max_connections_per_source = 4096
${2:-}
[database]
path = "$1"
[log]
level = "info"
EOF
}

# need_tools TOOL…: installs wrk with apt-get when missing, then checks the other tools.
need_tools() {
    if ! command -v wrk >/dev/null; then
        echo "wrk not found; installing it with apt-get" >&2
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    fi
    local tool
    for tool in wrk "$@"; do
        command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
    done
}

# wait_port LOGFILE PID: waits (max 10 s) for "listening on http://ADDR" in
# LOGFILE and prints the port.
wait_port() {
    local log=$1 pid=$2 line
    for _ in $(seq 100); do
        line=$(grep -m1 'listening on http://' "$log" 2>/dev/null || true)
        if [[ -n $line ]]; then
            echo "${line##*:}"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the server exited before listening; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "no 'listening on http://' in $log within 10 s; the log:" >&2
    cat "$log" >&2
    return 1
}

# stop_server PID: SIGTERM, then at most 30 s before SIGKILL.
stop_server() {
    kill -TERM "$1"
    for _ in $(seq 300); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# to_ms VALUE: wrk's "635.91us" / "1.02ms" / "1.10s" / "2.00m" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n
    }'
}

# wrk_line NAME OUTFILE: "NAME RPS P50 P99 NON2XX" from a wrk --latency output.
wrk_line() {
    local out=$2
    echo "$1 $(awk '/^Requests\/sec:/ { print $2 }' "$out") $(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")") $(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")") $(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$out" | grep . || echo 0)"
}

# unit_env: the environment systemd/c2cd.service gives c2cd (its Environment=
# lines, e.g. the allocator's settings), as NAME=VALUE words for env(1): the
# benchmarks measure c2cd as it is shipped.
unit_env() {
    sed -n 's/^Environment=//p' "$(dirname "${BASH_SOURCE[0]}")/../systemd/c2cd.service"
}

# proc_kb PID FIELD: a field of /proc/PID/status in KiB (VmRSS, VmHWM, …).
proc_kb() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# wrk_errors OUTFILE: wrk's socket errors ("connect 0, read 1, write 0, timeout 0"),
# or "none".
wrk_errors() {
    sed -n 's/^ *Socket errors: *//p' "$1" | grep . || echo none
}

# cloud9_tables: the Cloud9 load's carrier (cloud9.sh, run.sh): calls to +44
# at 0.10 a minute, +4490 denied, one subscriber whose credit c2cd holds.
cloud9_tables() {
    cat <<EOF
[cloud9]
carrier_ids = ["C9BENCH"]
balance_holder = "c2cd"
[[cloud9.rate]]
prefix = "+44"
per_minute = "0.10"
[[cloud9.rule]]
prefix = "+4490"
action = "deny"
[[cloud9.subscriber]]
msisdn = "+447700900123"
EOF
}

# instant_sim: the [[provider]] of every load, the simulator in instant mode:
# phones answer at once, calls hang up at once.
instant_sim() {
    cat <<EOF
[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
EOF
}

# xip_sim_config DB PARTNER SECRET [GUARD_KEYS [PARTNER_KEYS]]: the config of
# the XIP load (xip.sh, profile.sh, compare.sh): one partner on the instant
# simulator, database DB; [guard] check_numbers = false unless GUARD_KEYS.
xip_sim_config() {
    server_head "$1"
    cat <<EOF
[guard]
${4:-check_numbers = false}
[[partner]]
id = "$2"
secret = "$3"
provider = "sim"
${5:-}
EOF
    instant_sim
}

# roundtrip_search_lua FILE: a wrk script of RoundTrip searches (POST /roundtrip
# as agency), each for another of N PBX calls: arguments N, STEP (the threads),
# and the first call's number (default 0). The PBX calls are those of
# bench/roundtrip.sh's fill: ANI +1 2000000000+k, target 8881234567, started at
# 1700000000+k.
roundtrip_search_lua() {
    cat >"$1" <<'LUA'
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end
function init(args)
    n = tonumber(args[1])
    step = tonumber(args[2])
    i = (tonumber(args[3]) or 0) + id
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/xml"
    wrk.headers["Authorization"] = "Basic YWdlbmN5OmFnZW5jeS1wYXNzd29yZC0wMTIzNDU2Nzg5"
end
function request()
    local k = i % n
    i = i + step
    local start = os.date("!%Y-%m-%dT%H:%M:%SZ", 1700000000 + k)
    local body = string.format(
        '<Call xmlns="http://www.dial800.com/roundtrip/2011-07-15"><ANI>tel:+1%d</ANI>' ..
        '<Target>tel:8881234567</Target><CallStart>%s</CallStart></Call>', 2000000000 + k, start)
    return wrk.format(nil, "/roundtrip", nil, body)
end
LUA
}

# dnc_files NUMBERS LOOKUPS DIR: DIR/dnc.csv, a do-not-call list of NUMBERS
# numbers as the FTC ships it (1AAA200NNNN from area code 201 up), and
# DIR/lookups.txt, LOOKUPS numbers to check, half of them listed, shuffled.
dnc_files() {
    awk -v n="$1" 'BEGIN {
        printf "AreaCode,PhoneNumber\r\n"
        for (i = 0; i < n; i++) printf "%d,%d\r\n", 201 + int(i / 10000), 2000000 + i % 10000
    }' >"$3/dnc.csv"
    awk -v n="$1" -v k="$2" 'BEGIN {
        srand(42)
        for (j = 0; j < k; j++) {
            i = int(rand() * n)
            if (j % 2 == 0) printf "+1%d%d\n", 201 + int(i / 10000), 2000000 + i % 10000
            else printf "+1%d%d\n", 900 - int(i / 10000) % 100, 2000000 + i % 10000
        }
    }' >"$3/lookups.txt"
}

# poisson_lua: a wrk script that makes each connection wait, before each
# request, an exponential time whose mean is its first argument in ms (Poisson
# arrivals, so that the connections do not send in step), rounded up or down
# at random so that the mean stays (wrk takes whole ms).
poisson_lua() {
    cat <<'LUA'
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("seed", threads)
end
function init(args)
    d = tonumber(args[1])
    math.randomseed(os.time() * 100 + seed)
end
function delay()
    local x = -d * math.log(1 - math.random())
    local ms = math.floor(x)
    if math.random() < x - ms then ms = ms + 1 end
    return ms
end
LUA
}
