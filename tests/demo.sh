#!/usr/bin/env bash
# The main job on the embedded default: a file:// store in a scratch
# directory, one object, a verified write/read pass, a short benchmark.
# No configuration needed; RAWSTOR_DEMO_DIR picks another directory.
set -euo pipefail
RAWSTOR=$(realpath "${RAWSTOR:-target/release/rawstor}")
DIR=${RAWSTOR_DEMO_DIR:-$(mktemp -d /tmp/rawstor-demo-XXXXXX)}
trap '[[ -n "${RAWSTOR_DEMO_DIR:-}" ]] || rm -rf "$DIR"' EXIT

echo "== store file://$DIR"
TARGET=$($RAWSTOR create "file://$DIR" --size 256M)
echo "== created $TARGET"
$RAWSTOR info "$TARGET"
echo "== write, read back and compare 4096 blocks of 4K at io-depth 16"
$RAWSTOR testio "$TARGET" --block-size 4K --io-depth 16 --count 4096
echo "== fill the object, then 2 s of each 4K random pattern"
$RAWSTOR bench "$TARGET" --rw write --bs 1M --iodepth 4 --runtime 1 | head -n1
for rw in randread randwrite; do
    for qd in 1 16; do
        $RAWSTOR bench "$TARGET" --rw $rw --bs 4K --iodepth $qd --runtime 2 | head -n1
    done
done
$RAWSTOR remove "$TARGET"
echo "== done"
