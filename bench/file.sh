#!/usr/bin/env bash
# file:// benchmark: `rawstor bench` on an object against plain
# pread/pwrite on a file of the same filesystem, alternating contenders,
# RUNS rounds each; prints medians and ratios.
#   bench/file.sh [RUNTIME_S] [RUNS]
set -euo pipefail
RAWSTOR=$(realpath "${RAWSTOR:-target/release/rawstor}")
RUNTIME=${1:-3}
RUNS=${2:-3}
DIR=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rawstor-bench-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
SIZE_MB=1024

TARGET=$($RAWSTOR create "file://$DIR/store" --size ${SIZE_MB}M)
# Fill both contenders with the same bytes so reads hit written,
# page-cached data. The plain file is laid down in 64 KiB writes, as
# rawstor lays down its chunks: the kernel's folio size follows the size
# of the writes that fill a file, and it decides what a later 4 KiB write
# costs (docs: WRITE_PIECE_BYTES in librawstor/src/store/chunk.rs).
head -c $((SIZE_MB << 20)) /dev/urandom | dd of="$DIR/plain.img" bs=64K iflag=fullblock status=none
$RAWSTOR import "$DIR/plain.img" "$TARGET"
sync

value() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-10s %4s | %12s %9s %9s | %12s %9s %9s | %6s\n' \
    pattern qd "rawstor IOPS" "p50 us" "p99 us" "plain IOPS" "p50 us" "p99 us" ratio
for rw in randread randwrite; do
    for qd in 1 16; do
        : >"$DIR/lib" && : >"$DIR/plain"
        for _ in $(seq "$RUNS"); do
            $RAWSTOR bench "$TARGET" --rw $rw --bs 4K --iodepth $qd --runtime "$RUNTIME" | grep '^result' >>"$DIR/lib"
            $RAWSTOR bench --plain "$DIR/plain.img" --rw $rw --bs 4K --iodepth $qd --runtime "$RUNTIME" | grep '^result' >>"$DIR/plain"
        done
        li=$(value iops <"$DIR/lib" | median); pi=$(value iops <"$DIR/plain" | median)
        printf '%-10s %4s | %12.0f %9.2f %9.2f | %12.0f %9.2f %9.2f | %6.2f\n' $rw $qd \
            "$li" "$(value p50_us <"$DIR/lib" | median)" "$(value p99_us <"$DIR/lib" | median)" \
            "$pi" "$(value p50_us <"$DIR/plain" | median)" "$(value p99_us <"$DIR/plain" | median)" \
            "$(echo "$li / $pi" | bc -l)"
    done
done
echo "(medians of $RUNS alternating runs of ${RUNTIME}s; ratio = rawstor / plain; $(nproc) cores, $(uname -r))"
