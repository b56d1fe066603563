#!/usr/bin/env bash
# Blocklist benchmark: `c2cd block import` of a national do-not-call list of
# NUMBERS numbers (default 1 000 000), then the same lookups on that list and
# on an empty one, same binary, same box, same run.
#
# What it measures:
# - the import: wall time of one `c2cd block import` (FTC style `areacode,number`
#   CSV with a header, sorted by area code as the FTC ships it; one pass,
#   50 000 rows a transaction, synchronous=FULL), the database's size after it,
#   and the import's peak memory when GNU time is installed;
# - lookups: `c2cd block check --stdin --side b` of LOOKUPS numbers in shuffled
#   order, half of them listed, in one process, as the process itself times
#   them (each is what the daemon does for one side of a call: the number and
#   its prefixes looked up in the primary key, the ?-patterns matched). Each
#   list is checked twice and the second (warm) run counts.
# It prints lookups/s and µs per lookup on both lists, and the ratio
# large/empty of the time per lookup.
#
# Run:  bash bench/blocklist.sh
# Env:  NUMBERS  numbers in the list   (default 1000000)
#       LOOKUPS  numbers checked       (default 200000)
#       KEEP=1   keep the temp dir
set -euo pipefail

NUMBERS=${NUMBERS:-1000000}
LOOKUPS=${LOOKUPS:-200000}

cd "$(dirname "$0")/.."
. bench/lib.sh

cargo build --release --bin c2cd
C2CD=$PWD/target/release/c2cd

scratch bench-block

# NUMBERS numbers from area code 201 up, 10 000 an area code; listed numbers are
# 1AAA200NNNN. The lookups are as many listed as not (area codes from 900 down,
# none listed unless NUMBERS passes 6 million), shuffled.
echo "writing $NUMBERS numbers to $TMP/dnc.csv" >&2
dnc_files "$NUMBERS" "$LOOKUPS" "$TMP"

EMPTY=$TMP/empty.db
LARGE=$TMP/large.db
# An empty list: a database at the current schema whose list holds nothing.
"$C2CD" block add +1900* --database "$EMPTY" >/dev/null
"$C2CD" block remove +1900* --database "$EMPTY" >/dev/null

TIME=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M true 2>/dev/null; then
    TIME=(/usr/bin/time -f 'peak memory: %M KiB' -o "$TMP/import.mem")
fi
echo "c2cd block import ($NUMBERS numbers)" >&2
start=$(date +%s.%N)
"${TIME[@]}" "$C2CD" block import "$TMP/dnc.csv" --database "$LARGE" >"$TMP/import.out"
end=$(date +%s.%N)
cat "$TMP/import.out" >&2
listed=$(awk '/numbers listed:/ { print $3 }' "$TMP/import.out")
[[ $listed == "$NUMBERS" ]] || { echo "the import listed $listed of $NUMBERS numbers" >&2; exit 1; }

# check DB NAME: "NAME LOOKUPS/S US-EACH BLOCKED" from the warm run.
check() {
    local db=$1 name=$2 summary code
    for _ in 1 2; do
        code=0
        "$C2CD" block check --stdin --side b --database "$db" \
            <"$TMP/lookups.txt" >/dev/null 2>"$TMP/check-$name.err" || code=$?
        [[ $code == 0 || $code == 3 ]] || { cat "$TMP/check-$name.err" >&2; exit 1; }
    done
    summary=$(tail -n1 "$TMP/check-$name.err")
    echo "$name: $summary" >&2
    awk -v name="$name" '{
        secs = $5; us = $7; sub(/^\(/, "", us)
        printf "%s %.0f %.2f %d\n", name, $2 / secs, us, $10
    }' <<<"$summary" >>"$TMP/results"
}
check "$EMPTY" empty
check "$LARGE" large

echo
echo "c2cd blocklist: $NUMBERS numbers imported, $LOOKUPS lookups, $(nproc) CPUs"
awk -v s="$start" -v e="$end" 'BEGIN { printf "import: %.2f s wall (%.0f numbers/s)\n", e - s, '"$NUMBERS"' / (e - s) }'
echo "database: $(du -h "$LARGE" | cut -f1) ($(stat -c %s "$LARGE") bytes)"
[[ -s $TMP/import.mem ]] && echo "import $(cat "$TMP/import.mem")"
awk '
    BEGIN { printf "%-6s %12s %10s %10s\n", "list", "lookups/s", "us each", "blocked" }
    { printf "%-6s %12.0f %10.2f %10d\n", $1, $2, $3, $4; us[NR] = $3 }
    END { if (us[1] > 0) printf "ratio large/empty time per lookup: %.2f\n", us[2] / us[1] }
' "$TMP/results"
