#!/usr/bin/env bash
# Placement over a cluster of 8 OSTs in 4 failure domains: objects created
# back to back spread over every OST, copies on distinct domains; two OSTs
# join: new objects use them, and `rawstor cluster` reports what is not
# where the map now puts it.
#   tests/placement.sh RAWSTOR_CLI ENGINE_SO
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
WORK_TAG=placement
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=1000

start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
start_osts_in_domains 1 8 4
assert "eight OSTs register and are up" 'await_up 8'

# copies= of each OST line of `rawstor cluster`, in map order.
copies() { "$RAWSTOR" cluster "mdt://$MDT_ADDR" | sed -n 's/^ost:.* copies=\([0-9]*\)$/\1/p'; }

for _ in $(seq 40); do
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --chunk-size 1M --layout replicas:3 >>"$WORK/objects"
done
mapfile -t counts < <(copies)
# 120 copies over 8 OSTs: 15 each on average.
spread=$((${#counts[@]} == 8))
for c in "${counts[@]}"; do ((c >= 1 && c <= 30)) || spread=0; done
assert "40 objects created back to back reach all 8 OSTs, none holds twice its share" \
    '((spread)) || { echo "${counts[*]}"; false; }'
domains_ok=1
while read -r target; do
    hosts=$("$RAWSTOR" info "$target" | sed -n 's/^copy [0-9]: ost:\/\/\([^ ]*\) .*/\1/p' | while read -r addr; do
        "$RAWSTOR" cluster "mdt://$MDT_ADDR" | sed -n "s/^ost:\/\/$addr [^ ]* domain=\([^ ]*\) .*/\1/p"
    done | sort -u | wc -l)
    ((hosts == 3)) || domains_ok=0
done < <(head -5 "$WORK/objects")
assert "each object's copies are on three distinct failure domains" '((domains_ok))'
out=$("$RAWSTOR" cluster "mdt://$MDT_ADDR")
assert "before a change every copy is where the map puts it" \
    '[[ $out =~ "every copy and shard is where the map puts it" ]] || { echo "$out"; false; }'

start_osts_in_domains 9 10 4
assert "two OSTs join" 'await_up 10'
out=$("$RAWSTOR" cluster "mdt://$MDT_ADDR")
assert "the cluster reports the copies the new map puts elsewhere, and that nothing moves them yet" \
    '[[ $out =~ placement:\ [1-9][0-9]*\ copies\ or\ shards\ of\ [1-9][0-9]*\ objects && $out =~ "rawstor does not do yet" ]] || { echo "$out"; false; }'
for _ in $(seq 30); do
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --chunk-size 1M --layout replicas:3 >/dev/null
done
mapfile -t counts < <(copies)
assert "new objects use the new OSTs" '((counts[8] > 0 && counts[9] > 0)) || { echo "${counts[*]}"; false; }'

# One object spread piece by piece: each piece an object of its own,
# placed by the same draw.
for layout in replicas:3 ec:4+2; do
    big=$("$RAWSTOR" create "mdt://$MDT_ADDR" --size 1G --piece-size 32M --layout "$layout")
    out=$("$RAWSTOR" info "$big")
    assert "a 1 GiB $layout object of 32 MiB pieces touches every OST" \
        '[[ $out =~ "pieces: 32 of 32M" && $out =~ "spread over 10 of 10 OSTs" ]] || { echo "$out"; false; }'
done
expect_failure "whole number of MiB" "a piece size that is not whole MiB: clear error" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 64M --piece-size 1000K
expect_failure "needs an mdt:// location" "a piece size off mdt://: clear error" \
    "$RAWSTOR" create "file://$WORK/plain" --size 64M --piece-size 16M
expect_failure "piece 0 of object .*needs 12 OSTs" "pieces of a layout the cluster cannot hold: clear error, no record left (listed below)" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 64M --piece-size 16M --layout ec:8+4
listed=$("$RAWSTOR" list "mdt://$MDT_ADDR" | wc -l)
assert "objects over pieces are listed once, their pieces not" '((listed == 72)) || { echo "$listed listed"; false; }'

spread=$("$RAWSTOR" create "mdt://$MDT_ADDR" --size 256M --piece-size 16M --layout replicas:3)
head -c $((256 << 20)) /dev/urandom >"$WORK/v1"
"$RAWSTOR" import "$WORK/v1" "$spread"
"$RAWSTOR" export "$spread" "$WORK/back"
assert "data written across pieces reads back" 'cmp -s "$WORK/v1" "$WORK/back"'

# fio through the engine across piece boundaries, verified.
fio_object=$("$RAWSTOR" create "mdt://$MDT_ADDR" --size 64M --piece-size 16M --layout ec:4+2)
assert "fio: QD16 random writes of 4k-256k across 16 MiB pieces of an ec:4+2 object verify" \
    'rfio "$fio_object" --rw=randwrite --bsrange=4k-256k --iodepth=16 --verify=crc32c --verify_fatal=1 >/dev/null 2>&1'
out=$("$RAWSTOR" scrub "$spread" 2>&1) && rc=0 || rc=$?
assert "scrub of an object over pieces checks every piece: the copies agree" \
    '[[ $rc -eq 0 && $out =~ "the copies agree" ]] || { echo "$out"; false; }'

# An OST dies: reads and writes go on; repair rebuilds the pieces it held
# onto several others.
# The OST holding the most of its copies.
read -r held victim < <("$RAWSTOR" info "$spread" |
    sed -n 's/^ost:\/\/\([^ ]*\) ([^)]*): \([0-9]*\) .*/\2 \1/p' | sort -rn | head -1)
for i in "${!ost_addrs[@]}"; do [[ ${ost_addrs[$i]} == "$victim" ]] && v=$i; done
kill -KILL "${ost_pids[$v]}"
wait "${ost_pids[$v]}" 2>/dev/null || true
assert "the dead OST is down in the map" 'await_up 9'
"$RAWSTOR" export "$spread" "$WORK/back"
assert "reads go on with an OST down" 'cmp -s "$WORK/v1" "$WORK/back"'
head -c $((256 << 20)) /dev/urandom >"$WORK/v2"
out=$("$RAWSTOR" import "$WORK/v2" "$spread" 2>&1) && rc=0 || rc=$?
assert "writes go on with an OST down" '((rc == 0)) || { echo "$out"; false; }'
before=$("$RAWSTOR" info "$spread")
out=$("$RAWSTOR" repair "$spread" 2>&1) && rc=0 || rc=$?
assert "repair of an object over pieces succeeds" '((rc == 0)) || { echo "$out"; false; }'
after=$("$RAWSTOR" info "$spread")
assert "repair leaves no copy on the dead OST and none stale" \
    '[[ ${held:-0} -ge 3 && ! $after =~ "ost://$victim " && $after =~ " 0 copies or shards stale" ]] || { echo "held $held"; echo "$out"; echo "$after"; false; }'
"$RAWSTOR" export "$spread" "$WORK/back"
assert "after repair the object reads the new data" 'cmp -s "$WORK/v2" "$WORK/back"'
gained=0
while read -r addr n; do
    was=$(sed -n "s/^ost:\/\/$addr ([^)]*): \([0-9]*\) .*/\1/p" <<<"$before")
    ((n > ${was:-0})) && gained=$((gained + 1))
done < <(sed -n 's/^ost:\/\/\([^ ]*\) ([^)]*): \([0-9]*\) .*/\1 \2/p' <<<"$after")
assert "the dead OST's $held copies were rebuilt onto several OSTs, not one" '((gained >= 2)) || { echo "$before"; echo "$after"; false; }'

if ((fails)); then
    echo "$fails placement check(s) failed"
    exit 1
fi
echo "all placement checks passed"
