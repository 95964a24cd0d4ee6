#!/usr/bin/env bash
# Full disks, with real processes on loopback. Stores live on small ext4
# file systems (loop devices: this needs root), partly taken by a filler
# file so that they fill in the middle of a write:
# - a single-copy object: the write fails with ENOSPC and a message naming
#   the chunk, the OST stays up, every byte written before reads back and
#   no block reads back as anything but what was written or zeros; once
#   space is freed, writes go through again;
# - replicas:3 and ec:4+2 with one OST's disk full: writes go on (that
#   copy or shard is recorded stale), reads verify, and repair rebuilds it
#   once space is back (it says why it cannot before); with every OST's
#   disk full, a write fails with ENOSPC, marks nothing stale, and every
#   block reads back as it was or as written;
# - the MDT's disk full: reads go on, a writer is told why it cannot take
#   the lease, and can once space is back.
#   tests/full.sh RAWSTOR_CLI FIO_ENGINE
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
WORK_TAG=full
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=1000 RAWSTOR_OPTS_IO_ATTEMPTS=2

# Whether every 4 KiB block of GOT is OLD's or NEW's (what the object held
# before a write, what the write put there), and at least MIN MiB from the
# start are NEW's.
old_or_new() { # GOT OLD NEW MIN_MB
    python3 - "$@" <<'EOF'
import sys
got, old, new = (open(f, "rb").read() for f in sys.argv[1:4])
min_mb = int(sys.argv[4])
prefix = 0
while prefix < len(new) and got[prefix:prefix + 4096] == new[prefix:prefix + 4096]:
    prefix += 4096
bad = [i for i in range(0, len(got), 4096) if got[i:i + 4096] not in (old[i:i + 4096], new[i:i + 4096])]
print(f"{prefix >> 20} MiB written before the disk filled, {len(bad)} blocks neither old nor new")
sys.exit(0 if prefix >= min_mb << 20 and not bad else 1)
EOF
}

# --- One copy (ost://): 48 MiB into a store with about 20 MiB free.
small_fs one 64
fill_fs one 20
start_ost one
one_pid=$OST_PID
target=$($RAWSTOR create "ost://$OST_ADDR" --size 64M)
head -c $((48 << 20)) /dev/urandom >"$WORK/src"
expect_failure "No space left on device" "a write to a full disk fails with ENOSPC and says so" \
    "$RAWSTOR" import "$WORK/src" "$target"
out=$("$RAWSTOR" import "$WORK/src" "$target" 2>&1) || true
assert "the message names the chunk that could not be written" \
    '[[ $out =~ "cannot write chunk "[0-9a-f-]+/c[0-9]+": No space left on device" ]] || { echo "$out"; false; }'
rfio "$target" --rw=write --bs=4k --offset=60M --size=4k >/dev/null 2>&1 && rc=0 || rc=$?
assert "a write far from the written part fails too, and the OST stays up" '[[ $rc -ne 0 ]] && kill -0 "$one_pid"'
assert "the object reads back whole, every block verified" '$RAWSTOR export "$target" "$WORK/back"'
truncate -s 64M "$WORK/zeros"
assert "what was written before the disk filled is there, and nothing else is" \
    'old_or_new "$WORK/back" "$WORK/zeros" "$WORK/src" 8'
free_fs one
assert "once space is freed the same write goes through" '$RAWSTOR import "$WORK/src" "$target"'
$RAWSTOR export "$target" "$WORK/back"
assert "and reads back" 'cmp -s -n $((48 << 20)) "$WORK/src" "$WORK/back"'

# --- replicas:3 and ec:4+2, each taking every OST of its cluster: the disk
# of one fills once the object is placed, then the disks of all.
job=(--rw=write --bs=1m --iodepth=4 --size=48M --verify=crc32c --verify_fatal=1)
head -c $((96 << 20)) /dev/urandom >"$WORK/src"

for layout in replicas:3 ec:4+2; do
    name=${layout/:/-}
    osts=$([[ $layout == ec:* ]] && echo 6 || echo 3)
    start_mdt "$name-mdt"
    for i in $(seq "$osts"); do
        small_fs "$name-ost$i" 128
        start_ost "$name-ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "d$name-$i"
        [[ $i -eq 1 ]] && full_addr=$OST_ADDR
    done
    await_up "$osts" || { echo "the OSTs did not register with rawstor-mdt" >&2; exit 1; }
    target=$($RAWSTOR create "mdt://$MDT_ADDR" --size 96M --chunk-size 4M --layout "$layout")
    assert "$layout: the OST with the small disk holds a part of the object" \
        '[[ $($RAWSTOR info "$target") =~ "ost://$full_addr" ]]'
    fill_fs "$name-ost1" 6
    rfio "$target" "${job[@]}" >"$WORK/$name-fio.out" 2>&1 && rc=0 || rc=$?
    assert "$layout: writes go on when one OST's disk fills, and verify" \
        '[[ $rc -eq 0 ]] || { tail -5 "$WORK/$name-fio.out"; false; }'
    assert "$layout: the part on the full disk is recorded stale" \
        '[[ $($RAWSTOR info "$target") =~ "ost://$full_addr ("[^\)]*"stale)" ]] || { $RAWSTOR info "$target"; false; }'
    # The fence (a few bytes) may still fit where the rebuilt part does not:
    # either way the repair names the object, the OST and the full disk.
    expect_failure "cannot repair object [-0-9a-f]*: .*ost://$full_addr.*No space left on device" \
        "$layout: repair says why it cannot rebuild onto the full disk" \
        "$RAWSTOR" repair "$target"
    free_fs "$name-ost1"
    out=$($RAWSTOR repair "$target" 2>&1) && rc=0 || rc=$?
    assert "$layout: once space is freed, repair rebuilds it" \
        '[[ $rc -eq 0 && ! $($RAWSTOR info "$target") =~ stale ]] || { echo "$out"; false; }'
    assert "$layout: scrub finds every part whole and in agreement" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
    assert "$layout: the pattern verifies from a new process" \
        'rfio "$target" "${job[@]}" --verify_only=1 >/dev/null 2>&1'

    $RAWSTOR export "$target" "$WORK/before"
    for i in $(seq "$osts"); do fill_fs "$name-ost$i" 0; done
    expect_failure "No space left on device" "$layout: with every OST's disk full, a write fails and says why" \
        "$RAWSTOR" import "$WORK/src" "$target"
    assert "$layout: and marks nothing stale" '[[ ! $($RAWSTOR info "$target") =~ stale ]]'
    $RAWSTOR export "$target" "$WORK/back" && rc=0 || rc=$?
    assert "$layout: the object reads back whole, each block as it was or as the failed write put it" \
        '[[ $rc -eq 0 ]] && old_or_new "$WORK/back" "$WORK/before" "$WORK/src" 0'
    for i in $(seq "$osts"); do free_fs "$name-ost$i"; done
    assert "$layout: with space back, the write goes through" '$RAWSTOR import "$WORK/src" "$target"'
    $RAWSTOR export "$target" "$WORK/back"
    assert "$layout: and reads back" 'cmp -s "$WORK/src" "$WORK/back"'
    assert "$layout: scrub is clean" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
done

# --- The MDT's disk full: objects read on; a writer cannot take the lease
# (its epoch is on disk before it is granted) and is told why; with space
# back it can.
small_fs meta 16
start_cluster meta 3
target=$($RAWSTOR create "mdt://$MDT_ADDR" --size 16M --layout replicas:3)
head -c $((4 << 20)) /dev/urandom >"$WORK/src"
$RAWSTOR import "$WORK/src" "$target"
fill_fs meta 0
assert "with the MDT's disk full, objects read on" \
    '$RAWSTOR export "$target" "$WORK/back" && cmp -s -n $((4 << 20)) "$WORK/src" "$WORK/back"'
head -c $((4 << 20)) /dev/urandom >"$WORK/src2"
expect_failure "cannot write .*/objects/.*: No space left on device" \
    "a writer is told that the MDT cannot record its lease" "$RAWSTOR" import "$WORK/src2" "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "and the object keeps what it held" 'cmp -s -n $((4 << 20)) "$WORK/src" "$WORK/back"'
assert "the MDT stays up" 'kill -0 "$MDT_PID"'
free_fs meta
assert "with space back, the writer gets the lease and writes" '$RAWSTOR import "$WORK/src2" "$target"'
$RAWSTOR export "$target" "$WORK/back"
assert "and it reads back" 'cmp -s -n $((4 << 20)) "$WORK/src2" "$WORK/back"'

echo "full-disk tests: $fails failed"
[[ $fails -eq 0 ]]
