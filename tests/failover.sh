#!/usr/bin/env bash
# Failover latency: how long a writer and a reader stall when one OST fails
# under them, with real processes on loopback (a rawstor-mdt and six
# rawstor-ost). For each layout (replicas:3, ec:4+2) and each fault
#   kill - the OST is SIGKILLed and stays dead until fio is done, then
#          restarted on the same store;
#   stop - the OST hangs: SIGSTOP, SIGCONT FAILOVER_STOP_S (10) s later;
# a fresh object is filled with fio's verifiable blocks, then fio does 4 KiB
# random writes at a modest rate and depth (200 IOPS, QD4, about 16 s) with
# the fault injected 3 s in on an OST holding a copy / data shard of the
# object (FAILOVER_VICTIM: copy 1, data shard 1), and the same again with
# random reads (each read's block verified by fio). fio runs for RUN_S
# seconds (time_based), then waits for what is in flight, so a stall longer
# than the run still shows; each line also gives the I/Os done of the
# IOPS * RUN_S asked for. The max latency (fio's
# lat_ns max, submission to completion, --lat_percentiles=1) of the writes
# and of the reads is printed per case and in a table at the end; with
# FAILOVER_MAX_MS (default 1000) above 0 each is asserted below it, with 0
# they are only measured.
# After each run the OST is made available again and `rawstor repair` makes
# the copies current; then nothing is lost: no copy is stale or down, scrub
# finds the copies (or shards and parity) agreeing, every 4 KiB block fio
# wrote during the fault holds new bytes and every other block holds what
# was there before (rawstor export against a snapshot and fio's write log),
# every block passes fio's header and crc32c check, and the reads changed
# nothing.
#
# Settings (environment):
#   FAILOVER_MAX_MS=1000   bound asserted on each max latency; 0: measure only
#   FAILOVER_LAYOUTS="replicas:3 ec:4+2"   FAILOVER_FAULTS="kill stop"
#   FAILOVER_IOPS=200 FAILOVER_IODEPTH=4 FAILOVER_RUN_S=16  each fio run:
#                          4 KiB I/Os at IOPS, QD IODEPTH, for RUN_S seconds
#   FAILOVER_FAULT_AT_S=3  seconds after fio starts that the fault comes
#   FAILOVER_STOP_S=10     how long a stopped OST hangs
#   FAILOVER_VICTIM=1      which copy / shard (placement order) loses its OST
#   FAILOVER_SIZE_MB=64    object size
# Client timeouts are the library's defaults (RAWSTOR_OPTS_TIMEOUT_MS 5000,
# RAWSTOR_OPTS_IO_ATTEMPTS 3) unless the caller sets them: the issue's
# numbers were measured with the defaults. The MDT declares an OST down
# after 1.5 s without heartbeats (as in replicas.sh and ec.sh).
# Takes about 3.5 minutes (with the old client's 15 s stalls; less without).
#   tests/failover.sh RAWSTOR_CLI FIO_ENGINE
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
WORK_TAG=failover
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet

MAX_MS=${FAILOVER_MAX_MS:-1000}
LAYOUTS=${FAILOVER_LAYOUTS:-replicas:3 ec:4+2}
FAULTS=${FAILOVER_FAULTS:-kill stop}
IOPS=${FAILOVER_IOPS:-200}
IODEPTH=${FAILOVER_IODEPTH:-4}
RUN_S=${FAILOVER_RUN_S:-16}
FAULT_AT_S=${FAILOVER_FAULT_AT_S:-3}
STOP_S=${FAILOVER_STOP_S:-10}
VICTIM=${FAILOVER_VICTIM:-1}
SIZE_MB=${FAILOVER_SIZE_MB:-64}
OSTS=6
IOS=$((IOPS * RUN_S))

# A stopped OST would not act on the SIGTERM of lib.sh's cleanup: wake
# every server this script started first.
trap 'for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done; cleanup' EXIT

start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
start_mdt_osts "$OSTS"
assert "$OSTS OSTs register" "await_up $OSTS"

# Addresses of an object's copies or shards, in placement order.
holders() {
    "$RAWSTOR" info "$1" | sed -n 's/^\(copy\|data shard\|parity shard\) [0-9]*: ost:\/\/\([^ ]*\) .*/\2/p'
}

# Runs fio (FIO_OPTION...) on TARGET in the background, with FAULT (kill or
# stop) injected FAULT_AT_S seconds in on the OST at ADDR; a stopped OST is
# woken STOP_S seconds later, a killed one stays down. fio's JSON report goes
# to NAME.json, its output to NAME.out; sets FIO_RC.
run_with_fault() { # NAME TARGET FAULT ADDR FIO_OPTION...
    local name=$1 target=$2 fault=$3 addr=$4 pid
    shift 4
    rfio "$target" --bs=4k --iodepth="$IODEPTH" --rate_iops="$IOPS" --runtime="$RUN_S" --time_based \
        --lat_percentiles=1 --output-format=json --output="$WORK/$name.json" "$@" >"$WORK/$name.out" 2>&1 &
    local fio_pid=$!
    sleep "$FAULT_AT_S"
    pid=${ost_pid[$addr]}
    case $fault in
    kill) kill_ost "$addr" ;;
    stop)
        kill -STOP "$pid"
        sleep "$STOP_S"
        kill -CONT "$pid"
        ;;
    esac
    wait "$fio_pid" && FIO_RC=0 || FIO_RC=$?
}

# Makes the OST at ADDR available again after FAULT (a killed one restarts
# on its store, on a new port) and waits for the MDT to see all OSTs up.
recover() { # FAULT ADDR
    [[ $1 == kill ]] && restart_ost "$2"
    await_up "$OSTS"
}

# "MAX_MS P99_9_MS IOS" of DIRECTION (read or write) in fio's JSON report,
# or "- - 0" when there is none.
latency() { # JSON DIRECTION
    python3 - "$1" "$2" <<'EOF' 2>/dev/null || echo "- - 0"
import json, sys
s = open(sys.argv[1]).read()  # after anything fio printed before it
d = json.loads(s[s.index("{"):])["jobs"][0][sys.argv[2]]
lat = d["lat_ns"]
p = lat.get("percentile", {}).get("99.900000", 0)
print(f"{lat['max'] / 1e6:.0f} {p / 1e6:.1f} {d['total_ios']}")
EOF
}

# Repairs TARGET and checks it has no stale, down or half-written copy left
# and that its copies agree.
repair_and_check() { # LABEL TARGET
    local out rc
    out=$("$RAWSTOR" repair "$2" 2>&1) && rc=0 || rc=$?
    assert "$1: repair succeeds ($(head -n1 <<<"$out"))" '[[ $rc -eq 0 ]]'
    info=$("$RAWSTOR" info "$2")
    assert "$1: after repair no copy is stale or down and no write intent is left" \
        '[[ ! $info =~ (stale|down|"write intent") ]] || { echo "$info"; false; }'
    out=$("$RAWSTOR" scrub "$2" 2>&1) && rc=0 || rc=$?
    assert "$1: scrub finds the copies agreeing" '[[ $rc -eq 0 ]] || { echo "$out"; false; }'
}

declare -A result what=([kill]=killed [stop]=stopped)
for layout in $LAYOUTS; do
    for fault in $FAULTS; do
        label="$layout $fault"
        case=${layout//[:+]/-}-$fault  # file names of this case's fio runs
        target=$("$RAWSTOR" create "mdt://$MDT_ADDR" --size "${SIZE_MB}M" --chunk-size 4M --layout "$layout")
        # Every 4 KiB block a fio block that knows its offset (header, crc32c).
        rfio "$target" --rw=write --bs=1m --iodepth=4 --verify=crc32c --verify_interval=4k \
            --do_verify=0 >"$WORK/fill.out" 2>&1
        "$RAWSTOR" export "$target" "$WORK/before"

        # --- Writes.
        mapfile -t addrs < <(holders "$target")
        victim=${addrs[$VICTIM]}
        rm -f "$WORK/$case-write.iolog"  # fio appends to it
        run_with_fault "$case-write" "$target" "$fault" "$victim" --rw=randwrite --verify=crc32c --do_verify=0 \
            --write_iolog="$WORK/$case-write.iolog"
        read -r w_max w_p999 w_ios < <(latency "$WORK/$case-write.json" write)
        assert "$label: fio's writes go on without an error with the OST ${what[$fault]} ${FAULT_AT_S} s in ($w_ios of $IOS done)" \
            '[[ $FIO_RC -eq 0 && $w_ios -gt 0 ]] || { tail -n5 "$WORK/$case-write.out"; false; }'
        assert "$label: the OST is back" 'recover "$fault" "$victim"'
        repair_and_check "$label (writes)" "$target"
        "$RAWSTOR" export "$target" "$WORK/after"
        out=$(python3 - "$WORK/before" "$WORK/after" "$WORK/$case-write.iolog" <<'EOF' 2>&1
import struct, sys
before, after = (open(p, "rb").read() for p in sys.argv[1:3])
written = set()
for line in open(sys.argv[3]):
    f = line.split()
    if len(f) >= 4 and f[-3] == "write":
        assert int(f[-1]) == 4096, line
        written.add(int(f[-2]))
assert len(after) == len(before), f"{len(after)} bytes read back, {len(before)} before"
lost, changed = [], []
for o in range(0, len(before), 4096):
    old, new = before[o:o + 4096], after[o:o + 4096]
    if o in written:
        magic, = struct.unpack_from("<H", new, 0)
        at, = struct.unpack_from("<Q", new, 16)
        if new == old or magic != 0xACCA or at != o:
            lost.append(o)
    elif new != old:
        changed.append(o)
assert not lost, f"{len(lost)} of {len(written)} writes lost, first at {lost[0]}"
assert not changed, f"{len(changed)} blocks nobody wrote changed, first at {changed[0]}"
print(len(written))
EOF
        ) && rc=0 || rc=$?
        assert "$label: every block written during the fault holds its write, no other block changed ($out)" \
            '[[ $rc -eq 0 ]]'
        assert "$label: every block passes fio's header and crc32c check" \
            'rfio "$target" --rw=read --bs=1m --iodepth=4 --verify=crc32c --verify_interval=4k --verify_fatal=1 \
                >"$WORK/verify.out" 2>&1 || { tail -n5 "$WORK/verify.out"; false; }'

        # --- Reads (each block fio reads checked against its header).
        mapfile -t addrs < <(holders "$target")
        victim=${addrs[$VICTIM]}
        run_with_fault "$case-read" "$target" "$fault" "$victim" --rw=randread --verify=crc32c --verify_fatal=1
        read -r r_max r_p999 r_ios < <(latency "$WORK/$case-read.json" read)
        assert "$label: fio's reads go on and verify with the OST ${what[$fault]} ${FAULT_AT_S} s in ($r_ios of $IOS done)" \
            '[[ $FIO_RC -eq 0 && $r_ios -gt 0 ]] || { tail -n5 "$WORK/$case-read.out"; false; }'
        assert "$label: the OST is back" 'recover "$fault" "$victim"'
        repair_and_check "$label (reads)" "$target"
        "$RAWSTOR" export "$target" "$WORK/back"
        assert "$label: the reads changed nothing" 'cmp -s "$WORK/after" "$WORK/back"'
        "$RAWSTOR" remove "$target"

        printf 'failover: %-10s %-4s  write max %5s ms (p99.9 %s, %s of %s done)  read max %5s ms (p99.9 %s, %s of %s done)\n' \
            "$layout" "$fault" "$w_max" "$w_p999" "$w_ios" "$IOS" "$r_max" "$r_p999" "$r_ios" "$IOS"
        result[$label]="$w_max $w_p999 $w_ios $r_max $r_p999 $r_ios"
        if [[ $MAX_MS -gt 0 ]]; then
            assert "$label: max write latency $w_max ms < $MAX_MS ms" '[[ $w_max =~ ^[0-9]+$ && $w_max -lt $MAX_MS ]]'
            assert "$label: max read latency $r_max ms < $MAX_MS ms" '[[ $r_max =~ ^[0-9]+$ && $r_max -lt $MAX_MS ]]'
        fi
    done
done

echo
echo "failover: latency (ms) with one OST failing ${FAULT_AT_S} s into ${RUN_S} s of 4 KiB random I/O" \
    "at ${IOPS} IOPS, QD${IODEPTH} (kill: SIGKILL; stop: SIGSTOP for ${STOP_S} s); I/Os done of ${IOS}"
printf '%-10s %-5s %10s %8s %7s %10s %8s %7s\n' layout fault "write max" "p99.9" "I/Os" "read max" "p99.9" "I/Os"
for layout in $LAYOUTS; do
    for fault in $FAULTS; do
        read -r a b c d e f <<<"${result[$layout $fault]:-- - - - - -}"
        printf '%-10s %-5s %10s %8s %7s %10s %8s %7s\n' "$layout" "$fault" "$a" "$b" "$c" "$d" "$e" "$f"
    done
done
[[ $MAX_MS -gt 0 ]] && echo "bound: ${MAX_MS} ms" || echo "bound: none (FAILOVER_MAX_MS=0, measure only)"

echo "$fails failed"
[[ $fails -eq 0 ]]
