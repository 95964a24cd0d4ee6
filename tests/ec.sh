#!/usr/bin/env bash
# Fault tests of erasure-coded objects (ec:4+2) with real processes on
# loopback: a rawstor-mdt and seven rawstor-ost (six for the layout, one
# spare). fio writes verifiable patterns while OSTs are SIGKILLed; two OSTs
# down still read; repair rebuilds (onto the spare when an OST is gone for
# good); a corrupted shard on disk reads back right and scrub reports it;
# a client killed mid-write plus a lost shard never reads back bytes nobody
# wrote (write intent); one writer per object (leases); an MDT restart
# under a running writer.
#   tests/ec.sh RAWSTOR_CLI FIO_ENGINE
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
WORK_TAG=ec
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=1000 RAWSTOR_OPTS_IO_ATTEMPTS=2
LIB=$(dirname "$RAWSTOR")/librawstor.so
PY=(env PYTHONPATH="$(dirname "$0")/../bindings/python" RAWSTOR_LIBRARY="$LIB" python3)

start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
mdt_addr=$MDT_ADDR
start_mdt_osts 7
assert "seven OSTs register" 'await_up 7'

# Addresses of an object's shards, in shard order (data 0-3, parity 0-1).
shards() { "$RAWSTOR" info "$1" | sed -n 's/^\(data\|parity\) shard [0-9]: ost:\/\/\([^ ]*\) .*/\2/p'; }

target=$($RAWSTOR create "mdt://$MDT_ADDR" --size 32M --chunk-size 4M --layout ec:4+2)
info=$($RAWSTOR info "$target")
mapfile -t addrs < <(shards "$target")
assert "ec:4+2 is placed on six distinct OSTs: four data and two parity shards, all up" \
    '[[ $info =~ "layout: ec:4+2" && ${#addrs[@]} -eq 6 && $(printf "%s\n" "${addrs[@]}" | sort -u | wc -l) -eq 6 && $(grep -c ", up)$" <<<"$info") -eq 6 ]]'
expect_failure "needs 9 OSTs" "a layout the cluster cannot satisfy is refused clearly" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --layout ec:6+3

# --- Round trips, partial stripes.
head -c $((32 << 20)) /dev/urandom >"$WORK/v1"
$RAWSTOR import "$WORK/v1" "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "32 MiB written through ec:4+2 reads back" 'cmp -s "$WORK/v1" "$WORK/back"'
assert "fio: unaligned and mixed-size writes (read-modify-write) verify" \
    'rfio "$target" --rw=randwrite --bsrange=512-96k --blockalign=512 --iodepth=16 --size=32M --io_size=8M \
        --verify=crc32c --verify_fatal=1 >/dev/null'
assert "fio: QD32 4K random writes verify" \
    'rfio "$target" --rw=randwrite --bs=4k --iodepth=32 --size=32M --io_size=4M --verify=crc32c --verify_fatal=1 >/dev/null'
# Whole-stripe writes start without a worker waiting for them; partial ones
# in the same stripes wait for them (stripe locks), and the other way round.
assert "fio: whole-stripe writes mixed with partial ones in the same stripes verify" \
    'rfio "$target" --rw=randwrite --bssplit=4k/40:16k/30:64k/20:1m/10 --blockalign=4k --iodepth=32 --size=32M \
        --io_size=16M --verify=crc32c --verify_fatal=1 >/dev/null'

# --- Scrub beside a live writer (another process): stripes the writer is
# in the middle of are not reported as damage.
scrubs_ok=$(scrubs_beside_writer "$target")
assert "scrub beside a live 4 KiB random writer reports nothing, three times" '[[ $scrubs_ok -eq 3 ]]'
assert "and finds the object clean once the writer is done" '$RAWSTOR scrub "$target" >/dev/null'

# --- SIGKILL a data shard's OST during verified writes.
job=(--rw=randwrite --bs=16k --iodepth=8 --size=32M --rate=8m --verify=crc32c --verify_fatal=1 --randseed=7)
rfio "$target" "${job[@]}" >"$WORK/fio1.out" 2>&1 &
fio_pid=$!
sleep 1.5
kill_ost "${addrs[1]}"
wait "$fio_pid" && rc=0 || rc=$?
assert "fio's writes and verification go on with a data shard's OST killed mid-run" '[[ $rc -eq 0 ]]'
assert "the shard that missed writes is recorded stale in the MDT" \
    '[[ $($RAWSTOR info "$target") =~ "data shard 1: ost://${addrs[1]} ("[^\)]*"down, stale)" ]]'
assert "the pattern verifies again from a new process (rebuilt from parity)" \
    'rfio "$target" "${job[@]}" --verify_only=1 >/dev/null 2>&1'
head -c $((32 << 20)) /dev/urandom >"$WORK/v2"
$RAWSTOR import "$WORK/v2" "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "writing and reading go on while degraded" 'cmp -s "$WORK/v2" "$WORK/back"'

# --- Restart it, repair, then kill a different one.
restart_ost "${addrs[1]}"
assert "the killed OST comes back" 'await_up 7'
out=$($RAWSTOR repair "$target" 2>&1)
assert "repair rebuilds the stale shard" '[[ $out =~ "repaired ost-id:" ]]'
assert "after repair no shard is stale" '[[ ! $($RAWSTOR info "$target") =~ stale ]]'
assert "scrub finds every shard and parity consistent" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
mapfile -t addrs < <(shards "$target")
kill_ost "${addrs[4]}"
$RAWSTOR export "$target" "$WORK/back"
assert "with a parity shard's OST killed everything reads" 'cmp -s "$WORK/v2" "$WORK/back"'
kill_ost "${addrs[2]}"
$RAWSTOR export "$target" "$WORK/back"
assert "ec:4+2 with two OSTs killed still reads everything correctly" 'cmp -s "$WORK/v2" "$WORK/back"'
assert "and still verifies fio's pattern written before" \
    'rfio "$target" --rw=read --bs=64k --size=32M --iodepth=8 >/dev/null 2>&1'
head -c $((4 << 20)) /dev/urandom >"$WORK/v3"
$RAWSTOR import "$WORK/v3" "$target"
cp "$WORK/v2" "$WORK/v23" && dd if="$WORK/v3" of="$WORK/v23" conv=notrunc status=none
$RAWSTOR export "$target" "$WORK/back"
assert "writes with two OSTs down land (on the four left)" 'cmp -s "$WORK/v23" "$WORK/back"'
kill_ost "${addrs[0]}"
expect_failure "3 of the 4 shards needed|only 3 of its 6 shards" \
    "with three OSTs down (more than M=2) reads fail clearly" "$RAWSTOR" export "$target" "$WORK/back"
restart_ost "${addrs[0]}"
restart_ost "${addrs[2]}"

# --- ost for addrs[4] is gone for good: repair moves its shard to the spare.
assert "two OSTs come back, one stays down" 'await_up 6'
out=$($RAWSTOR repair "$target" 2>&1)
mapfile -t moved < <(shards "$target")
assert "repair moves the lost shard to the spare OST and rebuilds it" \
    '[[ $out =~ "repaired" && ${moved[4]} != "${addrs[4]}" && ! $($RAWSTOR info "$target") =~ (stale|down) ]]'
$RAWSTOR export "$target" "$WORK/back"
assert "everything reads after the repair" 'cmp -s "$WORK/v23" "$WORK/back"'
assert "scrub is clean after the repair" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
addrs=("${moved[@]}")

# --- One writer per object.
rfio "$target" --rw=randwrite --bs=4k --size=32M --rate=1m --runtime=4 --time_based >/dev/null 2>&1 &
writer=$!
sleep 1
expect_failure "has a writer" "a second writer gets EBUSY" "$RAWSTOR" import "$WORK/v3" "$target"
assert "reading needs no lease" '$RAWSTOR export "$target" "$WORK/back"'
RAWSTOR_OPTS_BREAK_LEASE=1 $RAWSTOR import "$WORK/v3" "$target" && rc=0 || rc=$?
assert "a writer that asks to break the lease takes over" '[[ $rc -eq 0 ]]'
wait "$writer" && rc=0 || rc=$?
assert "the writer whose lease was broken is refused further writes" '[[ $rc -ne 0 ]]'

# --- Corrupt one shard's bytes on disk.
# Flips 4 bytes of block 2 (object bytes 32-36 KiB) in data shard 0's first
# chunk on its OST's disk, checksums left as they were.
corrupt_data_shard() { # TARGET
    local dir=$WORK/${ost_name[$(shards "$1" | sed -n 1p)]} chunk
    chunk=$(find "$dir" -path "*%ob/${1##*/}/*" -type f ! -name '*.crc' | sort | sed -n 1p)
    printf '\xa5\x5a\xa5\x5a' | dd of="$chunk" bs=1 seek=8192 conv=notrunc status=none
    sync
}
$RAWSTOR import "$WORK/v23" "$target"
uuid=${target##*/}
corrupt_data_shard "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "a corrupted shard block reads back right (rebuilt from the others)" 'cmp -s "$WORK/v23" "$WORK/back"'
out=$($RAWSTOR scrub "$target" 2>&1) && rc=0 || rc=$?
assert "scrub reports the corrupt shard block and fails" \
    '[[ $rc -ne 0 && $out =~ "${addrs[0]}"|"Input/output error"|checksum ]]'
out=$($RAWSTOR scrub --repair "$target" 2>&1) && rc=0 || rc=$?
assert "scrub --repair rebuilds the corrupt shard range from the others" \
    '[[ $rc -eq 0 && $out =~ "rebuilt from the others" ]] || { echo "$out"; false; }'
assert "and a scrub after it is clean" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
$RAWSTOR export "$target" "$WORK/back"
assert "the data is unchanged" 'cmp -s "$WORK/v23" "$WORK/back"'

# A corrupted block read through the queue (fio), whose reads go straight
# to the data shards: the read that fails its checksum is done again, with
# that shard rebuilt from the others.
t2=$($RAWSTOR create "mdt://$MDT_ADDR" --size 8M --layout ec:4+2)
rfio "$t2" --rw=write --bs=64k --size=8M --verify=crc32c --do_verify=0 >/dev/null 2>&1
corrupt_data_shard "$t2"
RAWSTOR_LOG= rfio "$t2" --rw=write --bs=64k --iodepth=8 --size=8M --verify=crc32c --verify_only=1 >"$WORK/t2.out" 2>&1 \
    && rc=0 || rc=$?
assert "fio's reads verify with a corrupted data shard block (queue reads fall back to a rebuild)" \
    '[[ $rc -eq 0 ]] && grep -q "failed (.*checksum.*); rebuilding it from the others" "$WORK/t2.out"'
# A 4 KiB write into that stripe reads the units it does not cover; the
# corrupted one fails its checksum, and the write is done again with it
# rebuilt from the others: the stripe's parity stays right.
$RAWSTOR export "$t2" "$WORK/t2.before"
RAWSTOR_LOG= rfio "$t2" --rw=write --bs=4k --offset=36k --size=4k --buffer_pattern=0xcc >"$WORK/t2w.out" 2>&1 \
    && rc=0 || rc=$?
python3 - "$WORK/t2.before" "$WORK/t2.want" <<'PYEOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[36864:40960] = b"\xcc" * 4096
open(sys.argv[2], "wb").write(data)
PYEOF
$RAWSTOR export "$t2" "$WORK/t2.after"
assert "a 4 KiB write next to the corrupted block rebuilds it to compute parity, and the object reads as written" \
    '[[ $rc -eq 0 ]] && grep -q "read of shard .* failed" "$WORK/t2w.out" && cmp -s "$WORK/t2.want" "$WORK/t2.after"'
$RAWSTOR remove "$t2"

# --- A data shard changed behind the client's back (checksums intact):
# its parity no longer matches; scrub --repair recomputes parity from data.
head -c $((64 << 10)) /dev/urandom >"$WORK/rogue"
$RAWSTOR import "$WORK/rogue" "ost://${addrs[1]}/$uuid"
out=$($RAWSTOR scrub "$target" 2>&1) && rc=0 || rc=$?
assert "scrub reports parity that does not match the data" \
    '[[ $rc -ne 0 && $out =~ "does not match the data" ]] || { echo "$out"; false; }'
out=$($RAWSTOR scrub --repair "$target" 2>&1) && rc=0 || rc=$?
assert "scrub --repair rewrites that parity from the data" \
    '[[ $rc -eq 0 && $out =~ "rewritten from the data" ]] || { echo "$out"; false; }'
assert "and a scrub after it is clean" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
$RAWSTOR export "$target" "$WORK/back"
assert "the object reads the data shard's bytes where they landed (units 1, 5, 9, ...)" \
    'python3 - "$WORK/v23" "$WORK/rogue" "$WORK/back" <<EOF
import sys
old, rogue, back = (open(p, "rb").read() for p in sys.argv[1:4])
want = bytearray(old)
for n in range(len(rogue) // 4096):
    at = (n * 4 + 1) * 4096
    want[at:at + 4096] = rogue[n * 4096:(n + 1) * 4096]
assert back == bytes(want)
EOF'

# --- No write hole: a client killed mid-write, then a lost data shard.
$RAWSTOR import "$WORK/v1" "$target"
kill_writer_mid_write "$target" 0xbb
assert "the killed writer left its write intent in the MDT" '[[ $($RAWSTOR info "$target") =~ "write intent:" ]]'
# It streamed about 10 MiB (three 4 MiB regions) of the 32 MiB object; the
# regions it headed for were marked ahead of it, up to the object's end.
marked=$($RAWSTOR info "$target" | sed -n 's/^write intent: \([0-9]*\) regions.*/\1/p')
assert "the regions ahead of a streaming writer were marked before it got there ($marked of 8)" \
    '[[ ${marked:-0} -ge 6 ]]'
# A random writer marks the whole 64 MiB group (16 regions) of a region it
# has to mark, in one MDT update, not one update per 4 MiB region.
t_random=$($RAWSTOR create "mdt://$MDT_ADDR" --size 256M --layout ec:4+2)
setsid fio --name=t --ioengine="external:$ENGINE" --filename="${t_random//:/\\:}" --rw=randwrite \
    --bs=4k --offset=96M --size=4M --rate_iops=20 --runtime=30 --time_based >/dev/null 2>&1 &
random_writer=$!
sleep 2
kill -KILL -- -"$random_writer"
wait "$random_writer" 2>/dev/null || true
marked=$($RAWSTOR info "$t_random" | sed -n 's/^write intent: \([0-9]*\) regions.*/\1/p')
assert "a random writer in one 4 MiB region marked its 64 MiB group ($marked of 16 regions)" \
    '[[ ${marked:-0} -eq 16 ]]'
kill_ost "${addrs[0]}"
# Every 4 KiB block reads as what was there (v1) or what fio wrote (0xbb),
# or fails with EIO where a rebuild would have to guess.
check_blocks() {
    "${PY[@]}" - "$target" "$WORK/v1" <<'EOF'
import sys, rawstor
target, old = sys.argv[1], open(sys.argv[2], "rb").read()
new = b"\xbb" * 4096
good = refused = 0
with rawstor.Client() as client, client.open(target) as obj:
    for off in range(0, len(old), 4096):
        try:
            block = obj.read(off, 4096)
        except OSError as e:
            assert "half-written" in str(e), e
            refused += 1
            continue
        assert block in (old[off:off + 4096], new), f"block at {off} holds bytes nobody wrote"
        good += 1
print(good, refused)
EOF
}
out=$(check_blocks 2>&1) && rc=0 || rc=$?
assert "with a shard lost after the crash, no block reads back bytes nobody wrote ($out read/refused)" \
    '[[ $rc -eq 0 && $(cut -d" " -f2 <<<"$out") -gt 0 ]]'
restart_ost "${addrs[0]}"
assert "the lost OST comes back" 'await_up 6'
after_lease "$RAWSTOR" repair "$target" >/dev/null 2>&1
assert "repair resyncs the left-over write intent" '[[ ! $($RAWSTOR info "$target") =~ "write intent:" ]]'
assert "scrub is clean after the resync" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
out=$(check_blocks 2>&1) && rc=0 || rc=$?
assert "every block reads, each old or new ($out)" '[[ $rc -eq 0 && $(cut -d" " -f2 <<<"$out") -eq 0 ]]'

# --- MDT restart under a running writer.
job=(--rw=randwrite --bs=16k --iodepth=4 --size=32M --rate=4m --runtime=6 --time_based --verify=crc32c --verify_fatal=1)
rfio "$target" "${job[@]}" >"$WORK/fio2.out" 2>&1 &
fio_pid=$!
sleep 1
kill -TERM "$MDT_PID"
wait "$MDT_PID" 2>/dev/null || true
expect_failure "mdt://$mdt_addr" "with the MDT down, a new open fails clearly" "$RAWSTOR" export "$target" "$WORK/back"
sleep 1
start_mdt mdt "$mdt_addr" --heartbeat-timeout-ms 1500
wait "$fio_pid" && rc=0 || rc=$?
assert "the open object's writes and verification went on through the MDT restart" '[[ $rc -eq 0 ]]'
assert "after the restart new opens work" '$RAWSTOR export "$target" "$WORK/back"'
assert "and a new writer gets the lease" '$RAWSTOR import "$WORK/v1" "$target"'
$RAWSTOR export "$target" "$WORK/back"
assert "what it wrote reads back" 'cmp -s "$WORK/v1" "$WORK/back"'

$RAWSTOR remove "$target"
expect_failure "does not exist" "a removed ec object is gone" "$RAWSTOR" info "$target"

echo "$fails failed"
[[ $fails -eq 0 ]]
