#!/usr/bin/env bash
# Bounded requests on every kind of target (file://, ost://, a mirror of
# two OSTs, mdt:// replicas:3 and ec:2+1): lengths the limits forbid and
# ranges past the end are refused at once, before anything is allocated
# or sent; every handle sees the size another one set. The C program runs
# under a memory limit, so that a regression that allocates for a huge
# length fails instead of taking the machine.
#   tests/bounds.sh RAWSTOR_CLI TEST_BOUNDS
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
PROGRAM=$(realpath "${2:-target/build/test_bounds}")
WORK_TAG=bounds
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=2000
# Address space for the library's threads and the test, far below the
# gigabytes a huge length would need.
MEMORY_LIMIT_KIB=$((1536 * 1024))

start_cluster c 3
mdt=$MDT_ADDR
start_ost a
a=$OST_ADDR
start_ost b
b=$OST_ADDR
targets=(
    "$($RAWSTOR create "file://$WORK/files" --size 1M)"
    "$($RAWSTOR create "ost://$a" --size 1M)"
    "$($RAWSTOR create "ost://$a,ost://$b" --size 1M)"
    "$($RAWSTOR create "mdt://$mdt" --size 1M --layout replicas:3)"
    "$($RAWSTOR create "mdt://$mdt" --size 1M --layout ec:2+1)"
)
if (ulimit -v "$MEMORY_LIMIT_KIB"; LD_LIBRARY_PATH=$(dirname "$RAWSTOR") exec "$PROGRAM" "${targets[@]}"); then
    pass "every target refuses huge lengths at once under a ${MEMORY_LIMIT_KIB} KiB memory limit"
else
    fail "bounded requests (see above)"
fi
((fails == 0)) || { echo "$fails check(s) failed"; exit 1; }
echo "bounds: all passed"
