#!/usr/bin/env bash
# Crash consistency, the long run: the suite's crash test (tests/it/crash.rs)
# with ROUNDS kills (default 25) instead of 3. Load through the XIP, native,
# Spokn, Airtel, Cloud9 and RoundTrip doors, native calls on a scripted
# Asterisk over AMI, and XIP calls deferred to a partner's opening (4 client
# threads, every other call to an upstream XIP server on loopback), SIGKILL at a random moment 100-500 ms into each life
# (after at least one success answer), restart on the same database; then it
# checks that every request answered with success is in the database as
# answered, that no call reached the upstream twice, PRAGMA integrity_check,
# that every call cut off by a kill was reconciled to a final state, and that
# every callback was delivered. The kills go on until 5 s past the deferring
# partner's opening (20 to 80 s away: hours are whole minutes), so that
# daemons die while the deferred calls are placed. Prints the counts (the
# "crash:" line).
#
# Run:  bash tests/crash/run.sh        (ROUNDS=50 bash tests/crash/run.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
C2CD_CRASH_DEFER=1 C2CD_CRASH_ROUNDS=${ROUNDS:-25} cargo test --test it crash:: -- --nocapture 2>&1 |
    grep -E '^crash:|^test |test result|panicked|assert'
