#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) on its corpus and prints one
# line each: executions, libFuzzer's coverage counters (cov: edges, ft:
# features), corpus size, and any finding (kept in fuzz/artifacts/TARGET/).
# Needs the nightly toolchain and cargo-fuzz (installed when missing).
#
# Run:  bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(xip spokn airtel native roundtrip cloud9 ami upstream config)
[[ -d fuzz/corpus/xip ]] || python3 fuzz/seeds.py
cargo +nightly fuzz build --debug-assertions >/dev/null 2>&1 || cargo +nightly fuzz build --debug-assertions
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
fail=0
for t in "${TARGETS[@]}"; do
    # -rss_limit_mb: a parser that takes 512 MB for one input is a finding.
    if cargo +nightly fuzz run --debug-assertions "$t" -- -max_total_time="$SECONDS_EACH" \
        -rss_limit_mb=512 -timeout=10 >"$LOGS/$t.log" 2>&1; then
        found="nothing found"
    else
        found="FINDING: see fuzz/artifacts/$t/"
        fail=1
        tail -n 30 "$LOGS/$t.log" >&2
    fi
    last=$(grep -E '^#[0-9]+' "$LOGS/$t.log" | tail -1)
    execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
    echo "$t: ${execs:-?} executions in ${SECONDS_EACH} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}; $found"
done
exit $fail
