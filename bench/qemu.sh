#!/usr/bin/env bash
# qemu-img bench through the rawstor driver beside QEMU's own paths, side by
# side in one run: a raw file on the same filesystem (file-posix), rawstor
# file://, rawstor ost:// on loopback, and qemu-nbd on loopback serving the
# raw file. 4K sequential reads at depth 1 and 16 over a 256 MiB image,
# contenders rotated each round, median of ROUNDS.
#   bench/qemu.sh RAWSTOR_CLI QEMU_BIN_DIR [ROUNDS]
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
QEMU_IMG=$(realpath "${2:-target/qemu/bin}")/qemu-img
ROUNDS=${3:-3}
COUNT=40000
WORK_TAG=bench-qemu
source "$(dirname "$0")/../tests/lib.sh"
export RAWSTOR_LOG=quiet

start_ost ost
head -c 256M /dev/urandom >"$WORK/plain.raw"
file_target=$($RAWSTOR create "file://$WORK/store" --size 256M)
ost_target=$($RAWSTOR create "ost://$OST_ADDR" --size 256M)
$RAWSTOR import "$WORK/plain.raw" "$file_target"
$RAWSTOR import "$WORK/plain.raw" "$ost_target"
port=$((20000 + RANDOM % 20000))
qemu-nbd -f raw -x d -b 127.0.0.1 -p "$port" -t "$WORK/plain.raw" &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

names=("raw file (file-posix)" "rawstor file://" "rawstor ost://" "qemu-nbd")
images=("$WORK/plain.raw" "rawstor:$file_target" "rawstor:$ost_target" "nbd://127.0.0.1:$port/d")
declare -A seconds
for ((round = 0; round < ROUNDS; round++)); do
    for ((k = 0; k < ${#images[@]}; k++)); do
        i=$(((k + round) % ${#images[@]}))
        for depth in 1 16; do
            s=$("$QEMU_IMG" bench -f raw -c $COUNT -d $depth -s 4k "${images[$i]}" 2>&1 |
                sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p')
            seconds[$i,$depth]+="$s "
        done
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
iops() { echo "$COUNT / $(median "${seconds[$1,$2]}")" | bc; }
echo "qemu-img bench: $COUNT 4K sequential reads, median of $ROUNDS rounds"
ratio() { echo "$1 / $2" | bc -l; }
printf '%-24s %10s %10s %11s %11s %11s %11s\n' contender "IOPS d1" "IOPS d16" \
    "d1 vs raw" "d16 vs raw" "d1 vs nbd" "d16 vs nbd"
for ((i = 0; i < ${#images[@]}; i++)); do
    d1=$(iops "$i" 1) d16=$(iops "$i" 16)
    printf '%-24s %10s %10s %10.2fx %10.2fx %10.2fx %10.2fx\n' "${names[$i]}" "$d1" "$d16" \
        "$(ratio "$d1" "$(iops 0 1)")" "$(ratio "$d16" "$(iops 0 16)")" \
        "$(ratio "$d1" "$(iops 3 1)")" "$(ratio "$d16" "$(iops 3 16)")"
done
