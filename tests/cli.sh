#!/usr/bin/env bash
# End-to-end checks of the rawstor CLI on a file:// store: outputs, exit
# codes, bad input, import/export round trips, discard freeing space.
set -euo pipefail
RAWSTOR=${1:-target/release/rawstor}
RAWSTOR=$(realpath "$RAWSTOR")
WORK_TAG=cli
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# Runs a command expecting exit status $1 and a one-line message matching $2.
expect_error() {
    local status=$1 pattern=$2 what=$3; shift 3
    local out rc=0
    out=$("$@" 2>&1 >/dev/null) || rc=$?
    if [[ $rc -eq $status && $(wc -l <<<"$out") -eq 1 && $out =~ $pattern ]]; then
        pass "$what"
    else
        fail "$what (exit $rc, stderr: $out)"
    fi
}

LOC="file://$WORK/store"
TARGET=$($RAWSTOR create "$LOC" --size 8M --chunk-size 1M)
assert "create prints the target" '[[ $TARGET =~ ^file://$WORK/store/[0-9a-f-]{36}$ ]]'
assert "list shows it" '[[ "$($RAWSTOR list "$LOC")" == "$TARGET" ]]'
assert "RAWSTOR_LOCATION is the default location" '[[ "$(RAWSTOR_LOCATION=$LOC $RAWSTOR list)" == "$TARGET" ]]'
check "info shows the size" grep -qx "size_bytes: 8388608" <($RAWSTOR info "$TARGET")
UUID=0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b
assert "create --uuid uses it" '[[ "$($RAWSTOR create "$LOC" --size=1M --uuid $UUID)" == "$LOC/$UUID" ]]'

expect_error 2 "bad size" "bad size is exit 2" $RAWSTOR create "$LOC" --size 12Q
expect_error 2 "absolute" "relative path is exit 2" $RAWSTOR create file://rel/dir --size 1M
expect_error 2 "twice" "duplicate location is exit 2" $RAWSTOR create "$LOC,$LOC" --size 1M
expect_error 2 "required arguments were not provided:.*--size" "missing size is exit 2" $RAWSTOR create "$LOC"
expect_error 2 "bad target" "target without UUID is exit 2" $RAWSTOR info "$LOC"
expect_error 2 "closing" "an unclosed IPv6 bracket is exit 2, not a host lookup" $RAWSTOR create "ost://[::1" --size 1M
expect_error 2 "unrecognized subcommand" "unknown command is exit 2" $RAWSTOR frobnicate
expect_error 66 "does not exist" "missing object is exit 66" $RAWSTOR info "$LOC/0190a1b2-c3d4-7e5f-8a6b-000000000000"
expect_error 71 "already exists" "existing UUID is refused" $RAWSTOR create "$LOC" --size 1M --uuid $UUID
expect_error 2 "add --shrink" "shrink needs --shrink" $RAWSTOR resize "$TARGET" --size 4M

# Import and export: bytes round-trip, the tail past the file reads zeros.
head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$WORK/in.bin"
$RAWSTOR import "$WORK/in.bin" "$TARGET"
$RAWSTOR export "$TARGET" "$WORK/out.bin"
assert "export has the object's size" '[[ $(stat -c %s "$WORK/out.bin") -eq 8388608 ]]'
check "exported bytes match the imported file" cmp -n $((3 * 1024 * 1024 + 123)) "$WORK/in.bin" "$WORK/out.bin"
check "the rest reads as zeros" cmp -i $((3 * 1024 * 1024 + 123)) "$WORK/out.bin" /dev/zero -n $((8388608 - 3 * 1024 * 1024 - 123))
check "export to stdout matches" cmp <($RAWSTOR export "$TARGET" -) "$WORK/out.bin"
head -c $((9 * 1024 * 1024)) /dev/zero >"$WORK/big.bin"
expect_error 2 "resize the object first" "import of a larger file is refused" $RAWSTOR import "$WORK/big.bin" "$TARGET"

# Importing zeros discards: the space is freed (du) and reads back zeros.
before=$(du -sk "$WORK/store" | cut -f1)
head -c $((3 * 1024 * 1024)) /dev/zero | $RAWSTOR import - "$TARGET"
after=$(du -sk "$WORK/store" | cut -f1)
assert "discard frees space (du ${before}K -> ${after}K)" '[[ $((before - after)) -ge 3000 ]]'
check "discarded range reads zeros" cmp -n $((3 * 1024 * 1024)) <($RAWSTOR export "$TARGET" - 2>/dev/null) /dev/zero

check "testio verifies" grep -q "Success!" <($RAWSTOR testio "$TARGET" --block-size 4K --io-depth 8 --count 512)
check "bench prints a result line" grep -q "^result label=rawstor rw=randread" \
    <($RAWSTOR bench "$TARGET" --rw randread --bs 4K --iodepth 4 --runtime 0.3)
expect_error 2 "--rw" "bench with bad --rw is exit 2" $RAWSTOR bench "$TARGET" --rw sideways

# A flipped byte on disk is an error, never data.
DATA=$(find "$WORK/store/%ob" -name 'c00000000' | sed -n 1p)
printf '\xff' | dd of="$DATA" bs=1 seek=5 conv=notrunc status=none
expect_error 71 "checksum mismatch" "corrupt block fails export with EIO" $RAWSTOR export "$TARGET" "$WORK/x.bin"

$RAWSTOR resize "$TARGET" --size 16M
check "resize grows" grep -qx "size_bytes: 16777216" <($RAWSTOR info "$TARGET")
$RAWSTOR remove "$TARGET"
expect_error 66 "does not exist" "removed object is gone" $RAWSTOR info "$TARGET"

# ost:// and mirroring through the CLI, against real servers.
OST_BIND_FLAG=-b # upstream's short form (tests/fio.sh uses --bind)
expect_error 2 "not provided: --bind" "rawstor-ost without an address is exit 2" $OST "file://$WORK/x"
expect_error 2 "file:// mountpaths" "rawstor-ost on a non-file location is exit 2" \
    $OST --bind 127.0.0.1:0 ost://127.0.0.1:7777
start_ost ost-a; A=$OST_ADDR a_pid=$OST_PID
start_ost ost-b; B=$OST_ADDR
MIRROR=$($RAWSTOR create "ost://$A,ost://$B" --size 4M)
assert "mirrored create prints both elements" '[[ $MIRROR == ost://$A/*,ost://$B/* ]]'
head -c $((4 * 1024 * 1024)) /dev/urandom >"$WORK/m1.bin"
$RAWSTOR import "$WORK/m1.bin" "$MIRROR"
check "mirrored export matches" cmp <($RAWSTOR export "$MIRROR" -) "$WORK/m1.bin"
check "repair of an in-sync mirror has nothing to do" grep -q "nothing to repair" <($RAWSTOR repair "$MIRROR")
kill "$a_pid"; wait "$a_pid" 2>/dev/null || true
head -c $((4 * 1024 * 1024)) /dev/urandom >"$WORK/m2.bin"
RAWSTOR_OPTS_TIMEOUT_MS=500 $RAWSTOR import "$WORK/m2.bin" "$MIRROR"
check "with one server down, the mirror still reads the new data" cmp <($RAWSTOR export "$MIRROR" -) "$WORK/m2.bin"
start_ost ost-a "$A"
assert "the server came back on its port" '[[ $OST_ADDR == "$A" ]]'
check "opening the mirror works and tells the stale copy" grep -q "size_bytes: 4194304" <($RAWSTOR info "$MIRROR")
expect_error 71 "missed writes" "the stale copy refuses reads" \
    $RAWSTOR export "ost://$A/${MIRROR##*/}" "$WORK/stale.bin"
check "repair resyncs the stale copy" grep -q "repaired ost://$A" <($RAWSTOR repair "$MIRROR")
check "the repaired copy has the new data" cmp <($RAWSTOR export "ost://$A/${MIRROR##*/}" -) "$WORK/m2.bin"
expect_error 69 "cannot connect" "unreachable server is exit 69" \
    $RAWSTOR info "ost://127.0.0.1:1/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"

echo "cli: $fails failed"
[[ $fails -eq 0 ]]
