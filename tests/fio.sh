#!/usr/bin/env bash
# End-to-end checks of the fio engine (fio-engine/librawstor_fio.so) with
# Debian's /usr/bin/fio: verified workloads at several depths and job
# layouts, flush/FUA/trim, engine options, and clear failures on bad
# targets.
#   tests/fio.sh RAWSTOR_CLI ENGINE_SO
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
WORK_TAG=fio
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet

esc() { printf '%s' "${1//:/\\:}"; }
# rfio (lib.sh) runs fio with the engine; without --size the engine takes
# it from the object.
# A field of fio's JSON output (python expression over job j).
jfield() { python3 -c "import json,sys; s=sys.stdin.read(); j=json.loads(s[s.index('{'):])['jobs'][0]; print($1)"; }

# fio's CPU (user + system, % of its runtime) for 200 4K reads a second for
# 2 s; the engine and file come as arguments.
rate_limited_cpu() {
    timeout 120 fio --name=t "$@" --rw=randread --bs=4k --iodepth=1 --rate_iops=200 --runtime=2 \
        --time_based --output-format=json | jfield 'j["usr_cpu"] + j["sys_cpu"]'
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

# Runs fio expecting failure within the timeout and a message matching $1.
expect_fio_error() {
    local pattern=$1 what=$2; shift 2
    local out rc=0
    out=$(rfio "$@" --rw=read --bs=4k 2>&1) || rc=$?
    if [[ $rc -ne 0 && $rc -ne 124 && $out =~ $pattern ]]; then
        pass "$what"
    else
        fail "$what (exit $rc: $(head -n2 <<<"$out"))"
    fi
}

help=$(fio --enghelp="$ENGINE" 2>&1)
assert "enghelp lists the engine options" \
    '[[ $help =~ rawstor_timeout_ms && $help =~ rawstor_retries && $help =~ rawstor_fua ]]'

start_ost ost-a; OST_A=$OST_ADDR
start_ost ost-b; OST_B=$OST_ADDR
# A rawstor-mdt with three OSTs, for a replicas:3 object.
start_cluster cluster 3

# Workloads run against each kind of target the build serves.
targets=(
    "$($RAWSTOR create "file://$WORK/store" --size 64M --chunk-size 1M)"
    "$($RAWSTOR create "ost://$OST_A" --size 64M --chunk-size 1M)"
    "$($RAWSTOR create "ost://$OST_A,ost://$OST_B" --size 64M --chunk-size 1M)"
    "$($RAWSTOR create "mdt://$MDT_ADDR" --size 64M --chunk-size 1M --layout replicas:3)"
)

for target in "${targets[@]}"; do
    kind=${target%%://*}://
    [[ $target == *,* ]] && kind="mirrored ost://"
    [[ $target == mdt://* ]] && kind="mdt:// replicas:3"

    out=$(rfio "$target" --rw=randwrite --bs=4k --iodepth=1 --verify=crc32c --output-format=json)
    assert "$kind QD1 randwrite + crc32c verify covers the whole object" \
        '[[ $(jfield "j[\"read\"][\"io_bytes\"]" <<<"$out") -eq $((64 << 20)) ]]'

    assert "$kind QD32 mixed block sizes verify" \
        'rfio "$target" --rw=randwrite --bsrange=4k-256k --iodepth=32 --verify=crc32c --verify_fatal=1 >/dev/null'
    assert "$kind iodepth 256 randrw verify" \
        'rfio "$target" --rw=randrw --bs=16k --iodepth=256 --verify=crc32c --verify_fatal=1 >/dev/null'
    if [[ $target == mdt://* ]]; then
        # One writer per object: each fio job is a client of its own.
        out=$(rfio "$target" --rw=randwrite --bs=8k --iodepth=8 --numjobs=4 --size=16M --offset_increment=16M \
            --verify=crc32c 2>&1) && rc=0 || rc=$?
        assert "$kind numjobs=4: one job holds the writer lease, the others get EBUSY" \
            '[[ $rc -ne 0 && $out =~ "Device or resource busy" ]] || { echo "$out" | tail -5; false; }'
        assert "$kind the jobs refused log why, once each: another client holds the lease" \
            '(( $(grep -c "fio: rawstor: .*has a writer" <<<"$out") >= 1 &&
                $(grep -c "fio: rawstor: .*has a writer" <<<"$out") <= 3 )) || { echo "$out" | grep rawstor | head; false; }'
    else
        assert "$kind numjobs=4 forked, each verifying its own quarter" \
            'rfio "$target" --rw=randwrite --bs=8k --iodepth=8 --numjobs=4 --size=16M --offset_increment=16M \
                --verify=crc32c --verify_fatal=1 >/dev/null'
        assert "$kind numjobs=4 --thread, each verifying its own quarter" \
            'rfio "$target" --rw=randwrite --bs=8k --iodepth=8 --numjobs=4 --thread --size=16M --offset_increment=16M \
                --verify=crc32c --verify_fatal=1 >/dev/null'
    fi

    # At QD1 fio asks for exactly one flush per 4 writes (none after the
    # last); deeper, fio itself repeats a flush while one is in flight.
    out=$(rfio "$target" --rw=randwrite --bs=4k --iodepth=1 --fsync=4 --number_ios=400 --output-format=json)
    assert "$kind --fsync=4 flushes once per 4 writes" \
        '[[ $(jfield "j[\"sync\"][\"total_ios\"]" <<<"$out") -eq 99 ]]'
    assert "$kind --sync=1 (FUA writes) verifies" \
        'rfio "$target" --rw=write --bs=64k --iodepth=4 --sync=1 --size=8M --verify=crc32c >/dev/null'
    assert "$kind rawstor_fua=1 engine option verifies" \
        'rfio "$target" --rw=write --bs=64k --iodepth=4 --rawstor_fua=1 --size=8M --verify=crc32c >/dev/null'

    # Trim: the range reads back as zeros afterwards.
    head -c $((16 << 20)) /dev/urandom >"$WORK/noise"
    $RAWSTOR import "$WORK/noise" "$target"
    rfio "$target" --rw=trim --bs=1M --iodepth=4 --size=8M >/dev/null
    $RAWSTOR export "$target" "$WORK/after"
    assert "$kind trim makes the range read as zeros" 'cmp -s -n $((8 << 20)) "$WORK/after" /dev/zero'
    assert "$kind trim leaves the rest alone" \
        'cmp -s -n $((8 << 20)) -i $((8 << 20)) "$WORK/after" "$WORK/noise"'

    # Idle between rate-limited I/Os: a waiter that spins would cost a whole
    # core. CPU accounting on this machine kind swings with its neighbours,
    # so rawstor runs alternately with fio's psync engine on a plain file at
    # the same rate, and the medians are compared.
    rawstor_cpu=() plain_cpu=()
    for _ in 1 2 3; do
        plain_cpu+=("$(rate_limited_cpu --ioengine=psync --filename="$WORK/plain" --size=64M)")
        rawstor_cpu+=("$(rate_limited_cpu --ioengine="external:$ENGINE" --filename="$(esc "$target")")")
    done
    cpu=$(median "${rawstor_cpu[@]}") base=$(median "${plain_cpu[@]}")
    assert "$kind idle between rate-limited I/Os: fio's CPU $cpu% (psync on a file: $base%) < 20% + 3x psync" \
        '(( $(echo "$cpu < 20 + 3 * $base" | bc) ))'
done

# A byte flipped on disk fails verification loudly instead of returning bad
# data (the checksum at rest, through fio).
target=${targets[0]}
rfio "$target" --rw=write --bs=64k --size=1M --verify=crc32c --do_verify=0 >/dev/null
chunk=$(find "$WORK/store" -path '*%ob*' -type f ! -name '*.crc' | sort | sed -n 1p)
printf '\xff' | dd of="$chunk" bs=1 seek=5000 conv=notrunc status=none
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
out=$(rfio "$target" --rw=read --bs=64k --size=1M --verify=crc32c --verify_only=1 2>&1) && rc=0 || rc=$?
assert "a corrupted block fails fio with EIO, not a verify mismatch" \
    '[[ $rc -ne 0 && $out =~ "Input/output error" && ! $out =~ "verify: bad" ]]'

expect_fio_error "does not exist" "missing object: clear message, non-zero exit" \
    "file://$WORK/store/0190a1b2-c3d4-7e5f-8a6b-000000000000"
expect_fio_error "bad target" "malformed target: clear message" "file://$WORK/store"
expect_fio_error "does not exist" "missing object on a server: clear message" \
    "ost://$OST_A/0190a1b2-c3d4-7e5f-8a6b-000000000000"
expect_fio_error "ost://127.0.0.1:1: cannot connect" "unreachable server: message names it, no hang" \
    "ost://127.0.0.1:1/0190a1b2-c3d4-7e5f-8a6b-000000000000"

if ((fails)); then
    echo "$fails fio check(s) failed"
    exit 1
fi
echo "all fio checks passed"
