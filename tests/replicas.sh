#!/usr/bin/env bash
# Fault tests of replicated objects (replicas:3) placed by a rawstor-mdt,
# with real processes on loopback: a rawstor-mdt and four rawstor-ost
# (three for the layout, one spare). fio writes verifiable patterns while
# an OST is SIGKILLed; the copy that missed writes is recorded stale in
# the MDT and never read; repair resyncs it, then a different OST dies;
# one writer per object (leases); a writer killed mid-write leaves its
# write intent, and the copies are made to agree again; an OST gone for
# good has its copy moved to the spare.
#   tests/replicas.sh RAWSTOR_CLI FIO_ENGINE
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
WORK_TAG=replicas
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=1000 RAWSTOR_OPTS_IO_ATTEMPTS=2

PY=(env PYTHONPATH="$(dirname "$0")/../bindings/python" RAWSTOR_LIBRARY="$(dirname "$RAWSTOR")/librawstor.so" python3)

start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
mdt_addr=$MDT_ADDR
start_mdt_osts 4
assert "four OSTs register" 'await_up 4'

# Addresses of an object's copies, in placement order.
copies() { "$RAWSTOR" info "$1" | sed -n 's/^copy [0-9]: ost:\/\/\([^ ]*\) .*/\1/p'; }

target=$($RAWSTOR create "mdt://$MDT_ADDR" --size 32M --chunk-size 4M --layout replicas:3)
mapfile -t addrs < <(copies "$target")
assert "replicas:3 is placed on three distinct OSTs" \
    '[[ ${#addrs[@]} -eq 3 && $(printf "%s\n" "${addrs[@]}" | sort -u | wc -l) -eq 3 ]]'

# --- Scrub beside a live writer (another process): blocks the writer has
# put on one copy and not yet on the others are not reported as damage.
rfio "$target" --rw=write --bs=1m --iodepth=4 --size=32M >/dev/null 2>&1
scrubs_ok=$(scrubs_beside_writer "$target")
assert "scrub beside a live 4 KiB random writer reports nothing, three times" '[[ $scrubs_ok -eq 3 ]]'
assert "and finds the copies agreeing once the writer is done" '$RAWSTOR scrub "$target" >/dev/null'

# --- SIGKILL a copy's OST during verified writes.
job=(--rw=randwrite --bs=16k --iodepth=8 --size=32M --rate=8m --verify=crc32c --verify_fatal=1 --randseed=7)
rfio "$target" "${job[@]}" >"$WORK/fio1.out" 2>&1 &
fio_pid=$!
sleep 1.5
kill_ost "${addrs[0]}"
wait "$fio_pid" && rc=0 || rc=$?
assert "fio's writes and verification go on with a copy's OST killed mid-run" \
    '[[ $rc -eq 0 ]] || { tail -5 "$WORK/fio1.out"; false; }'
assert "the copy that missed writes is recorded stale in the MDT" \
    '[[ $($RAWSTOR info "$target") =~ "copy 0: ost://${addrs[0]} ("[^\)]*"down, stale)" ]]'
assert "the pattern verifies again from a new process" \
    'rfio "$target" "${job[@]}" --verify_only=1 >/dev/null 2>&1'
head -c $((32 << 20)) /dev/urandom >"$WORK/v2"
$RAWSTOR import "$WORK/v2" "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "writing and reading go on while degraded" 'cmp -s "$WORK/v2" "$WORK/back"'

# --- The stale copy is back but never read; repair; then another OST dies.
restart_ost "${addrs[0]}"
assert "the killed OST comes back" 'await_up 4'
for _ in 1 2 3; do
    $RAWSTOR export "$target" "$WORK/back"
    cmp -s "$WORK/v2" "$WORK/back" || break
done
assert "with the stale copy reachable again, reads never return its old bytes" \
    'cmp -s "$WORK/v2" "$WORK/back"'
out=$($RAWSTOR repair "$target" 2>&1)
assert "repair resyncs the stale copy" '[[ $out =~ "repaired ost-id:" ]] || { echo "$out"; false; }'
assert "after repair no copy is stale" '[[ ! $($RAWSTOR info "$target") =~ stale ]]'
assert "scrub finds the three copies equal" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
mapfile -t addrs < <(copies "$target")
kill_ost "${addrs[1]}"
$RAWSTOR export "$target" "$WORK/back"
assert "with a different OST killed, everything reads" 'cmp -s "$WORK/v2" "$WORK/back"'
kill_ost "${addrs[2]}"
$RAWSTOR export "$target" "$WORK/back"
assert "with two of three copies down, everything still reads (from the repaired one)" \
    'cmp -s "$WORK/v2" "$WORK/back"'
restart_ost "${addrs[2]}"

# --- addrs[1] is gone for good: repair moves its copy to the spare.
assert "one OST comes back, one stays down" 'await_up 3'
out=$($RAWSTOR repair "$target" 2>&1)
mapfile -t moved < <(copies "$target")
assert "repair moves the lost copy to the spare OST and fills it" \
    '[[ $out =~ "repaired" && ${moved[1]} != "${addrs[1]}" && ! $($RAWSTOR info "$target") =~ (stale|down) ]]'
$RAWSTOR export "$target" "$WORK/back"
assert "everything reads after the repair" 'cmp -s "$WORK/v2" "$WORK/back"'
assert "scrub is clean after the repair" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
addrs=("${moved[@]}")

# --- A copy changed behind the client's back (checksums intact): scrub
# finds it differs, scrub --repair rewrites it from what the others hold.
uuid=${target##*/}
head -c $((1 << 20)) /dev/urandom >"$WORK/rogue"
$RAWSTOR import "$WORK/rogue" "ost://${addrs[2]}/$uuid"
out=$($RAWSTOR scrub "$target" 2>&1) && rc=0 || rc=$?
assert "scrub reports the copy that differs from the other two" \
    '[[ $rc -ne 0 && $out =~ "bytes 0..1048576: ost-id:" && $out =~ "differ from" ]] || { echo "$out"; false; }'
out=$($RAWSTOR scrub --repair "$target" 2>&1) && rc=0 || rc=$?
assert "scrub --repair rewrites it from the copies that agree" \
    '[[ $rc -eq 0 && $out =~ "differs from" && $out =~ "rewritten from" ]] || { echo "$out"; false; }'
assert "the copies agree again" '$RAWSTOR scrub "$target" >/dev/null 2>&1'
$RAWSTOR export "ost://${addrs[2]}/$uuid" "$WORK/back"
assert "and that copy holds the object's bytes again" 'cmp -s "$WORK/v2" "$WORK/back"'

# --- One writer per object.
rfio "$target" --rw=randwrite --bs=4k --size=32M --rate=1m --runtime=4 --time_based >/dev/null 2>&1 &
writer=$!
sleep 1
expect_failure "has a writer" "a second writer gets EBUSY" "$RAWSTOR" import "$WORK/v2" "$target"
assert "reading needs no lease" '$RAWSTOR export "$target" "$WORK/back"'
RAWSTOR_OPTS_BREAK_LEASE=1 $RAWSTOR import "$WORK/v2" "$target" && rc=0 || rc=$?
assert "a writer that asks to break the lease takes over" '[[ $rc -eq 0 ]]'
wait "$writer" && rc=0 || rc=$?
assert "the writer whose lease was broken is refused further writes" '[[ $rc -ne 0 ]]'

# --- A writer killed mid-write: the copies are made to agree again.
$RAWSTOR import "$WORK/v2" "$target"
kill_writer_mid_write "$target" 0xbb
assert "the killed writer left its write intent in the MDT" '[[ $($RAWSTOR info "$target") =~ "write intent:" ]]'
after_lease "$RAWSTOR" repair "$target" >/dev/null 2>&1
assert "repair resyncs the left-over write intent" '[[ ! $($RAWSTOR info "$target") =~ "write intent:" ]]'
out=$($RAWSTOR scrub "$target" 2>&1) && rc=0 || rc=$?
assert "the three copies agree after the resync" '[[ $rc -eq 0 ]] || { echo "$out"; false; }'
$RAWSTOR export "$target" "$WORK/back"
assert "every 4 KiB block holds what was there or what the killed writer wrote" \
    'python3 - "$WORK/v2" "$WORK/back" <<EOF
import sys
old, back = (open(p, "rb").read() for p in sys.argv[1:3])
new = b"\xbb" * 4096
bad = [o for o in range(0, len(old), 4096) if back[o:o + 4096] not in (old[o:o + 4096], new)]
assert not bad, f"{len(bad)} blocks hold bytes nobody wrote, first at {bad[0]}"
assert back[:4096] == new, "the writer wrote nothing"
EOF'

# The next writer (instead of repair) resyncs what a killed one left.
kill_writer_mid_write "$target" 0xcc
after_lease "$RAWSTOR" import "$WORK/v2" "$target" 2>/dev/null
assert "the next writer gets the lease once the killed one's runs out, and writes" \
    '$RAWSTOR export "$target" "$WORK/back" && cmp -s "$WORK/v2" "$WORK/back"'
assert "it resynced the left-over regions (none left after it closed)" \
    '[[ ! $($RAWSTOR info "$target") =~ "write intent:" ]]'
assert "the copies agree" '$RAWSTOR scrub "$target" >/dev/null 2>&1'

# --- A copy misses a write while the MDT is down: the miss cannot be
# recorded, so the write is not acknowledged (EIO); its region stays in
# the write intent, and a repair makes the copies agree again.
mapfile -t addrs < <(copies "$target")
victim=${addrs[2]}
out=$("${PY[@]}" - "$target" "$MDT_PID" "${ost_pid[$victim]}" <<'EOF' 2>&1
import os, signal, sys, rawstor
target, mdt, ost = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with rawstor.Client() as client, client.open(target) as obj:
    obj.write(0, b"a" * 65536)  # the lease, and the region marked
    os.kill(mdt, signal.SIGTERM)
    os.kill(ost, signal.SIGKILL)
    try:
        obj.write(0, b"b" * 65536)
        print("acknowledged")
    except OSError as e:
        print("refused", e.errno, e)
EOF
)
wait "$MDT_PID" "${ost_pid[$victim]}" 2>/dev/null || true
assert "a write that a copy missed is refused (EIO) when the MDT cannot record the miss" \
    '[[ $out =~ "refused 5" && $out =~ "the MDT could not record it" ]] || { echo "$out"; false; }'
start_mdt mdt "$mdt_addr" --heartbeat-timeout-ms 1500
restart_ost "$victim"
assert "the MDT and the OST come back" 'await_up 3'
assert "the unacknowledged write's region is still in the write intent" \
    '[[ $($RAWSTOR info "$target") =~ "write intent:" ]]'
after_lease "$RAWSTOR" repair "$target" >/dev/null 2>&1
assert "repair makes the copies agree again" \
    '[[ ! $($RAWSTOR info "$target") =~ "write intent:" ]] && $RAWSTOR scrub "$target" >/dev/null 2>&1'

$RAWSTOR remove "$target"
expect_failure "does not exist" "a removed object is gone" "$RAWSTOR" info "$target"

# --- Repair takes every block from a copy that verifies it: a byte flipped
# in block 1 of one copy, then the OST of another copy dies; the copy moved
# to a new OST is filled from both survivors, and the flipped one is mended.
for i in 5 6; do
    start_ost "ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "host-$i"
    ost_pid[$OST_ADDR]=$OST_PID ost_name[$OST_ADDR]=ost$i
done
assert "two more OSTs register" 'await_up 5'
target=$($RAWSTOR create "mdt://$MDT_ADDR" --size 8M --chunk-size 4M --layout replicas:3)
head -c $((8 << 20)) /dev/urandom >"$WORK/v9"
$RAWSTOR import "$WORK/v9" "$target"
mapfile -t addrs < <(copies "$target")
chunk=$(find "$WORK/${ost_name[${addrs[1]}]}/%ob/${target##*/}" -name c00000000)
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(4096 + 77); b = f.read(1); f.seek(4096 + 77); f.write(bytes([b[0] ^ 0xff]))' "$chunk"
expect_failure "found 1 problem" "scrub reports the flipped block" "$RAWSTOR" scrub "$target"
kill_ost "${addrs[0]}"
assert "the MDT sees the OST of copy 0 down" 'await_up 4'
out=$(after_lease "$RAWSTOR" repair "$target" 2>&1) && rc=0 || rc=$?
assert "repair moves copy 0 and fills it, taking block 1 from the copy that verifies" \
    '[[ $rc -eq 0 ]] || { echo "$out"; false; }'
$RAWSTOR export "$target" "$WORK/back9"
assert "the object reads back whole" 'cmp -s "$WORK/v9" "$WORK/back9"'
assert "scrub finds the three copies agreeing (the flipped block was mended)" \
    '$RAWSTOR scrub "$target" >/dev/null 2>&1'

echo "$fails failed"
[[ $fails -eq 0 ]]
