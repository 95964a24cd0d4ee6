#!/usr/bin/env bash
# End-to-end checks of the QEMU block driver (qemu-patch/): qemu-img
# create/info/convert/resize/compare, qemu-io data checks, clear errors,
# and a VM that boots under TCG from a rawstor disk, reads what the host
# put there, writes a pattern, syncs and powers off. Each runs over
# file://, ost://, a mirror over two rawstor-ost, and mdt:// (replicas:3
# placed by a rawstor-mdt); the VM also boots from an ec:2+1 disk.
#   tests/qemu.sh RAWSTOR_CLI QEMU_BIN_DIR VM_ASSETS [--vm-only]
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
QEMU_BIN=$(realpath "${2:-target/qemu/bin}")
ASSETS=${3:?usage: tests/qemu.sh RAWSTOR_CLI QEMU_BIN_DIR VM_ASSETS [--vm-only]}
VM_ONLY=${4:-}
WORK_TAG=qemu
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet
QEMU_IMG=$QEMU_BIN/qemu-img
QEMU_IO=$QEMU_BIN/qemu-io
QEMU_SYSTEM=$QEMU_BIN/qemu-system-x86_64
MB=$((1 << 20))


# qemu-io on a target; the commands follow. Fails on any failed command or
# pattern mismatch (qemu-io itself exits 0 after a failed command).
qio() {
    local target=$1; shift
    local args=() out
    for c in "$@"; do args+=(-c "$c"); done
    out=$(timeout 60 "$QEMU_IO" -f raw "${args[@]}" "rawstor:$target" 2>&1) || return 1
    ! grep -Eq 'failed|error|Error|mismatch' <<<"$out" || { echo "$out" >&2; return 1; }
}

# Bytes that qemu-img map reports with FIELD (data or zero) true.
map_bytes() {
    timeout 60 "$QEMU_IMG" map -f raw --output=json "rawstor:$1" |
        python3 -c "import json, sys; print(sum(e['length'] for e in json.load(sys.stdin) if e['$2']))"
}

start_ost ost-a; OST_A=$OST_ADDR
start_ost ost-b; OST_B=$OST_ADDR
# A rawstor-mdt with three OSTs: mdt:// objects are replicas:3 (the default).
start_cluster cluster 3
locations=("file://$WORK/store" "ost://$OST_A" "ost://$OST_A,ost://$OST_B" "mdt://$MDT_ADDR")
kind_of() {
    case $1 in
        *,*) echo "mirrored ost://" ;;
        mdt://*) echo "mdt:// replicas:3" ;;
        *) echo "${1%%://*}://" ;;
    esac
}

image_checks() {
    local location=$1 kind out target uuid
    kind=$(kind_of "$location")

    # create at a location: a new object, its target printed.
    out=$(timeout 60 "$QEMU_IMG" create -f raw "rawstor:$location" 64M 2>&1)
    target=$(sed -n 's/.*rawstor: created //p' <<<"$out")
    assert "$kind qemu-img create at a location prints the new target" \
        '[[ -n $target && $($RAWSTOR info "$target") =~ size_bytes:\ 67108864 ]]'
    # create with a target: that UUID.
    uuid=0190a1b2-c3d4-7e5f-8a6b-$(printf '%012x' $RANDOM$RANDOM)
    local named=${location//,//$uuid,}/$uuid
    timeout 60 "$QEMU_IMG" create -f raw "rawstor:$named" 16M -o chunk-size=1M >/dev/null
    assert "$kind qemu-img create with a target makes that object, chunk-size option" \
        '[[ $($RAWSTOR info "$named") =~ chunk_size:\ 1M ]]'

    out=$(timeout 60 "$QEMU_IMG" info --output=json "rawstor:$target")
    assert "$kind qemu-img info: virtual size and format" \
        '[[ $out =~ \"virtual-size\":\ 67108864 && $out =~ \"format\":\ \"raw\" ]]'

    # Block status: a new object is one hole.
    assert "$kind qemu-img map: a new object is all zeros, nothing stored" \
        '[[ $(map_bytes "$target" data) -eq 0 && $(map_bytes "$target" zero) -eq $((64 * MB)) ]]'

    # convert into and out of the object: the same bytes.
    head -c $((24 * MB)) /dev/urandom >"$WORK/src.raw"
    truncate -s 64M "$WORK/src.raw"
    timeout 120 "$QEMU_IMG" convert -n -f raw -O raw "$WORK/src.raw" "rawstor:$target"
    timeout 120 "$QEMU_IMG" convert -f raw -O raw "rawstor:$target" "$WORK/back.raw"
    assert "$kind qemu-img convert raw -> rawstor -> raw keeps every byte" \
        '[[ $(md5sum <"$WORK/src.raw") == $(md5sum <"$WORK/back.raw") ]]'
    assert "$kind qemu-img compare agrees" \
        'timeout 60 "$QEMU_IMG" compare -f raw -F raw "$WORK/src.raw" "rawstor:$target" >/dev/null'
    assert "$kind qemu-img map: the 24 MiB written are data, the rest zeros" \
        '[[ $(map_bytes "$target" data) -eq $((24 * MB)) && $(map_bytes "$target" zero) -eq $((40 * MB)) ]]'
    assert "$kind convert out leaves the zero ranges sparse" \
        '(( $(stat -c %b "$WORK/back.raw") * 512 <= 25 * MB ))'
    $RAWSTOR export "$target" "$WORK/cli.raw"
    assert "$kind the CLI reads what qemu-img wrote" 'cmp -s "$WORK/src.raw" "$WORK/cli.raw"'

    # qemu-io: data, unaligned I/O, discard, write-zeroes, FUA, aio + flush.
    assert "$kind qemu-io write/read patterns, unaligned" \
        'qio "$target" "write -P 0xab 0 64k" "read -P 0xab 0 64k" "write -P 0x5c 4097 3000" \
            "read -P 0x5c 4097 3000" "read -P 0xab 0 4097"'
    assert "$kind qemu-io discard reads as zeros" \
        'qio "$target" "write -P 0x11 1M 1M" "discard 1M 512k" "read -P 0 1M 512k" "read -P 0x11 1536k 512k"'
    assert "$kind qemu-io write-zeroes and FUA writes" \
        'qio "$target" "write -P 0x22 2M 128k" "write -z 2M 64k" "read -P 0 2M 64k" \
            "read -P 0x22 2112k 64k" "write -f -P 0x33 3M 8k" "read -P 0x33 3M 8k"'
    assert "$kind qemu-io many aio requests in flight, then flush" \
        'qio "$target" "aio_write -P 0x44 4M 64k" "aio_write -P 0x45 4160k 64k" "aio_write -P 0x46 4224k 64k" \
            "aio_flush" "read -P 0x44 4M 64k" "read -P 0x45 4160k 64k" "read -P 0x46 4224k 64k"'
    assert "$kind qemu-io with --image-opts driver=rawstor,target=..." \
        'timeout 60 "$QEMU_IO" --image-opts -c "read -P 0x44 4M 64k" "driver=rawstor,target=${target//,/,,}" \
            2>&1 | grep -q "read 65536/65536"'

    # More requests in flight than the queue holds: they wait for room.
    assert "$kind 32 requests in flight on a queue of depth 2 (reads, then writes)" \
        'RAWSTOR_OPTS_QUEUE_DEPTH=2 timeout 60 "$QEMU_IMG" bench -f raw -c 4000 -d 32 -s 4k \
            "rawstor:$target" >/dev/null &&
         RAWSTOR_OPTS_QUEUE_DEPTH=2 timeout 60 "$QEMU_IMG" bench -f raw -w -c 4000 -d 32 -s 4k \
            --pattern=0x77 "rawstor:$target" >/dev/null && qio "$target" "read -P 0x77 0 4k"'

    if [[ $location == mdt://* ]]; then
        # A second writer: QEMU passes on only the errno; the driver logs
        # the library's reason, once for any number of requests.
        timeout 60 "$QEMU_IO" -f raw -c "write -P 0x55 0 4k" -c "sleep 4000" "rawstor:$target" >/dev/null 2>&1 &
        local holder=$!
        sleep 1.5
        out=$(timeout 60 "$QEMU_IO" -f raw -c "write 0 4k" -c "write 4k 4k" -c "write 8k 4k" "rawstor:$target" 2>&1 || true)
        wait "$holder" || true
        assert "$kind a second writer's failed requests log the library's reason once" \
            '[[ $(grep -c "rawstor: .*has a writer" <<<"$out") -eq 1 && $out =~ "busy" ]] || { echo "$out" >&2; false; }'
    fi

    # resize: grow; shrink only with --shrink.
    timeout 60 "$QEMU_IMG" resize -f raw "rawstor:$target" 96M >/dev/null
    assert "$kind qemu-img resize grows the object" \
        '[[ $($RAWSTOR info "$target") =~ size_bytes:\ 100663296 ]] && qio "$target" "read -P 0 80M 64k"'
    expect_failure "shrink" "$kind qemu-img resize refuses to shrink without --shrink" \
        "$QEMU_IMG" resize -f raw "rawstor:$target" 32M
    timeout 60 "$QEMU_IMG" resize -f raw --shrink "rawstor:$target" 32M >/dev/null
    assert "$kind qemu-img resize --shrink shrinks it" '[[ $($RAWSTOR info "$target") =~ size_bytes:\ 33554432 ]]'
    expect_failure "multiple of 4096" "$kind resize to a size that is not whole blocks: clear error" \
        "$QEMU_IMG" resize -f raw "rawstor:$target" 33555000
    $RAWSTOR remove "$named"
    $RAWSTOR remove "$target"
}

error_checks() {
    expect_failure "rawstor: cannot open 'garbage': bad target" "bad target: clear message" \
        "$QEMU_IMG" info "rawstor:garbage"
    expect_failure "does not exist" "missing object: clear message" \
        "$QEMU_IMG" info "rawstor:file://$WORK/store/0190a1b2-c3d4-7e5f-8a6b-000000000000"
    expect_failure "ost://127.0.0.1:1: cannot connect" "unreachable server: clear message, no hang" \
        "$QEMU_IMG" info "rawstor:ost://127.0.0.1:1/0190a1b2-c3d4-7e5f-8a6b-000000000000"
    expect_failure "bad object size" "create with a size that is not whole blocks: clear message" \
        "$QEMU_IMG" create -f raw "rawstor:file://$WORK/store" 1000
    expect_failure "the file name must be rawstor:<target>" "empty target: clear message" \
        "$QEMU_IMG" info "rawstor:"
    expect_failure "a target is required" "--image-opts without a target: clear message" \
        "$QEMU_IO" --image-opts -c "read 0 4k" "driver=rawstor"
}

# The VM: Debian's kernel, an initramfs whose /init (busybox) loads the
# virtio modules, prints the checksum of 1 MiB at offset 1 MiB of the disk
# (which the host put there), writes its own 1 MiB pattern at offset 0 with
# fsync, and powers off.
make_initramfs() {
    local root=$WORK/initramfs
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
    cp "$ASSETS/busybox" "$root/bin/busybox"
    cp "$ASSETS"/modules/*.ko "$root/lib/modules/"
    head -c $MB /dev/urandom >"$WORK/pattern"
    cp "$WORK/pattern" "$root/pattern"
    cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    insmod /lib/modules/$m.ko
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
echo "rawstor-vm: disk of $(cat /sys/block/vda/size) sectors"
echo "rawstor-vm: seed $(dd if=/dev/vda bs=65536 skip=16 count=16 2>/dev/null | md5sum | cut -d' ' -f1)"
if dd if=/pattern of=/dev/vda bs=65536 conv=fsync 2>/dev/null; then
    echo "rawstor-vm: wrote the pattern"
fi
sync
echo "rawstor-vm: done"
poweroff -f
INIT
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initramfs.gz"
}

vm_boot() { # LOCATION IOTHREAD [LAYOUT]
    local location=$1 iothread=$2 layout=${3:-} kind target console seed
    kind=$(kind_of "$location")
    [[ -n $layout ]] && kind="mdt:// $layout"
    [[ -n $iothread ]] && kind="$kind (iothread)"
    target=$($RAWSTOR create "$location" --size 64M --chunk-size 1M ${layout:+--layout "$layout"})
    head -c $MB /dev/urandom >"$WORK/seed"
    seed=$(md5sum <"$WORK/seed" | cut -d' ' -f1)
    # The seed goes to offset 1 MiB: import writes from 0, so write 2 MiB.
    { head -c $MB /dev/zero; cat "$WORK/seed"; } | $RAWSTOR import - "$target"
    local device=(-device virtio-blk-pci,drive=d0)
    [[ -n $iothread ]] && device=(-object iothread,id=io0 -device virtio-blk-pci,drive=d0,iothread=io0)
    console=$WORK/console-$RANDOM.log
    local started=$SECONDS rc=0 failed_before=$fails
    timeout 300 "$QEMU_SYSTEM" -accel tcg -m 256 -smp 1 -nographic -no-reboot -vga none -nic none \
        -L "$ASSETS/bios" -kernel "$ASSETS/vmlinuz" -initrd "$WORK/initramfs.gz" \
        -append "console=ttyS0 panic=-1 quiet" \
        -blockdev "driver=rawstor,node-name=d0,target=${target//,/,,}" "${device[@]}" \
        </dev/null >"$console" 2>&1 || rc=$?
    assert "$kind VM boots from a rawstor disk and powers off (exit $rc, $((SECONDS - started)) s)" \
        '[[ $rc -eq 0 ]] && grep -q "rawstor-vm: done" "$console"'
    assert "$kind the guest sees the disk's size" 'grep -q "rawstor-vm: disk of 131072 sectors" "$console"'
    assert "$kind the guest reads what the host wrote" 'grep -q "rawstor-vm: seed $seed" "$console"'
    $RAWSTOR export "$target" "$WORK/after"
    assert "$kind the guest's pattern is on the object after power-off" \
        'grep -q "rawstor-vm: wrote the pattern" "$console" && cmp -s -n $MB "$WORK/pattern" "$WORK/after"'
    if ((fails > failed_before)); then sed 's/^/    console: /' "$console" | tail -n 20; fi
    $RAWSTOR remove "$target"
}

# A full disk under QEMU: the write fails with ENOSPC, not EIO, so that
# QEMU's error policy (werror=enospc, the default) can pause the guest
# until space is freed instead of handing it an I/O error.
full_disk_checks() {
    small_fs full-ost 32
    start_ost full-ost
    local target out
    target=$($RAWSTOR create "ost://$OST_ADDR" --size 64M)
    fill_fs full-ost 1
    out=$(timeout 60 "$QEMU_IO" -f raw -c "write -P 0x5a 0 16M" "rawstor:$target" 2>&1) || true
    assert "qemu-io: a write to a full disk fails with ENOSPC" \
        '[[ $out =~ "No space left on device" ]] || { echo "$out"; false; }'
    free_fs full-ost
    assert "qemu-io: with space back, the same write goes through and reads back" \
        'qio "$target" "write -P 0x5a 0 16M" "read -P 0x5a 0 16M"'
}

if [[ $VM_ONLY != --vm-only ]]; then
    for location in "${locations[@]}"; do
        image_checks "$location"
    done
    error_checks
    full_disk_checks
fi
make_initramfs
for location in "${locations[@]}"; do
    vm_boot "$location" ""
done
vm_boot "ost://$OST_A" iothread
# An erasure-coded disk: the guest's reads and writes go through ec:2+1
# (read-modify-writes of partial stripes included).
vm_boot "mdt://$MDT_ADDR" "" ec:2+1

if ((fails)); then
    echo "$fails qemu check(s) failed"
    exit 1
fi
echo "all qemu checks passed"
