#!/usr/bin/env bash
# The main job on the embedded default, no configuration needed: a local
# cluster on loopback (two rawstor-ost on ports they pick, each with a
# store in a scratch directory), a mirrored object on them, a verified
# write/read pass, a short benchmark, a server lost and repaired; then the
# same pass on a plain file:// store. RAWSTOR_DEMO_DIR picks another
# directory (kept afterwards).
set -euo pipefail
RAWSTOR=$(realpath "${RAWSTOR:-target/release/rawstor}")
WORK=${RAWSTOR_DEMO_DIR:-} KEEP_WORK=${RAWSTOR_DEMO_DIR:-} WORK_TAG=demo
source "$(dirname "$0")/lib.sh"
DIR=$WORK

pass() { # TARGET: verify, then benchmark
    echo "== write, read back and compare 4096 blocks of 4K at io-depth 16"
    $RAWSTOR testio "$1" --block-size 4K --io-depth 16 --count 4096
    echo "== fill the object, then 2 s of each 4K random pattern"
    $RAWSTOR bench "$1" --rw write --bs 1M --iodepth 4 --runtime 1 | sed -n 1p
    for rw in randread randwrite; do
        for qd in 1 16; do
            $RAWSTOR bench "$1" --rw "$rw" --bs 4K --iodepth "$qd" --runtime 2 | sed -n 1p
        done
    done
}

start_ost ost-a; A=$OST_ADDR A_PID=$OST_PID
start_ost ost-b; B=$OST_ADDR
echo "== cluster: rawstor-ost on $A and $B (stores under $DIR)"
TARGET=$($RAWSTOR create "ost://$A,ost://$B" --size 256M)
echo "== created the mirrored object $TARGET"
$RAWSTOR info "$TARGET"
pass "$TARGET"

echo "== stop the server on $A; the mirror keeps working on $B"
kill "$A_PID"
wait "$A_PID" 2>/dev/null || true
RAWSTOR_OPTS_TIMEOUT_MS=500 $RAWSTOR testio "$TARGET" --block-size 64K --io-depth 4 --count 256
echo "== restart it: its copy missed writes, so it is stale until repaired"
start_ost ost-a "$A"
$RAWSTOR repair "$TARGET"
$RAWSTOR remove "$TARGET"

echo "== store file://$DIR/local"
TARGET=$($RAWSTOR create "file://$DIR/local" --size 256M)
echo "== created $TARGET"
pass "$TARGET"
$RAWSTOR remove "$TARGET"
echo "== done"
