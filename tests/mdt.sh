#!/usr/bin/env bash
# End-to-end checks of rawstor-mdt with real processes on loopback: OSTs
# register and heartbeat, `rawstor cluster`, objects created with
# --layout replicas:N placed on distinct OSTs and failure domains, I/O
# through mdt:// targets with an OST killed and brought back, repair,
# an MDT restart, a corrupt record copy, and clear errors.
#   tests/mdt.sh RAWSTOR_CLI
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
WORK_TAG=mdt
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=1000 RAWSTOR_OPTS_IO_ATTEMPTS=2


start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
osts=() ost_pids=()
for i in 1 2 3 4; do
    # Two OSTs share failure domain "rack-a".
    domain=rack-$i
    ((i == 2)) && domain=rack-a
    ((i == 1)) && domain=rack-a
    start_ost "ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "$domain"
    osts+=("$OST_ADDR") ost_pids+=("$OST_PID")
done
assert "four OSTs register and are up" 'await_up 4'
map=$($RAWSTOR cluster "mdt://$MDT_ADDR")
assert "rawstor cluster shows address, domain and capacity" \
    '[[ $map =~ "ost://${osts[0]}" && $map =~ domain=rack-a && $map =~ capacity= ]]'

# replicas:3 on four OSTs in three domains: one copy per domain.
target=$($RAWSTOR create "mdt://$MDT_ADDR" --size 16M --chunk-size 1M --layout replicas:3)
assert "create on mdt:// prints an mdt:// target" '[[ $target =~ ^mdt://$MDT_ADDR/[0-9a-f-]{36}$ ]]'
info=$($RAWSTOR info "$target")
copies=$(grep -c '^copy [0-9]: ost://.* up)$' <<<"$info" || true)
assert "info shows the layout and three copies, all up" '[[ $info =~ "layout: replicas:3" && $copies -eq 3 ]]'
in_rack_a=$(grep -cE "ost://(${osts[0]}|${osts[1]}) " <<<"$info" || true)
assert "the copies are in distinct failure domains" '[[ $in_rack_a -eq 1 ]]'

head -c $((16 << 20)) /dev/urandom >"$WORK/v1"
$RAWSTOR import "$WORK/v1" "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "data written through mdt:// reads back" 'cmp -s "$WORK/v1" "$WORK/back"'
assert "list shows the object's mdt:// target" '[[ "$($RAWSTOR list "mdt://$MDT_ADDR")" == "$target" ]]'

# Kill an OST that holds a copy: reads fail over, writes go on.
victim=$(sed -n 's/^copy 0: ost:\/\/\([^ ]*\) .*/\1/p' <<<"$info")
for i in "${!osts[@]}"; do [[ ${osts[$i]} == "$victim" ]] && victim_index=$i; done
kill -KILL "${ost_pids[$victim_index]}"
wait "${ost_pids[$victim_index]}" 2>/dev/null || true
assert "the cluster map marks the killed OST down" 'await_up 3'
assert "info reports that copy down" '[[ $($RAWSTOR info "$target") =~ "ost://$victim ".*", down)" ]]'
$RAWSTOR export "$target" "$WORK/back"
assert "reads go on with an OST down" 'cmp -s "$WORK/v1" "$WORK/back"'
head -c $((16 << 20)) /dev/urandom >"$WORK/v2"
$RAWSTOR import "$WORK/v2" "$target"
$RAWSTOR export "$target" "$WORK/back"
assert "writes go on with an OST down" 'cmp -s "$WORK/v2" "$WORK/back"'

# The OST comes back on another port: the MDT learns its new address from
# the heartbeat (same store, same id), repair resyncs the stale copy.
start_ost "ost$((victim_index + 1))" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" \
    --domain "$(sed -n "s/.*ost:\/\/$victim [^ ]* domain=\([^ ]*\).*/\1/p" <<<"$map")"
osts[victim_index]=$OST_ADDR ost_pids[victim_index]=$OST_PID
assert "the restarted OST is up again" 'await_up 4'
assert "info follows its new address" '[[ $($RAWSTOR info "$target") =~ "ost://$OST_ADDR " ]]'
victim_id=$($RAWSTOR cluster "mdt://$MDT_ADDR" | sed -n "s/^ost:\/\/$OST_ADDR \([^ ]*\) .*/\1/p")
out=$($RAWSTOR repair "$target" 2>&1)
assert "repair resyncs the copy that missed writes (named by its OST's id)" '[[ -n $victim_id && $out =~ $victim_id ]]'
$RAWSTOR export "$target" "$WORK/back"
assert "after repair every copy serves the new data" 'cmp -s "$WORK/v2" "$WORK/back"'
# A copy of the restarted OST's store started as another OST (the same id)
# while the first is up: the MDT refuses it, and the map keeps the first
# one's address.
cp -a "$WORK/ost$((victim_index + 1))" "$WORK/ost-copy"
start_ost ost-copy 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain rack-z
copy_pid=$OST_PID copy_addr=$OST_ADDR
for _ in $(seq 50); do grep -q "cannot join" "$WORK/ost-copy.log" && break; sleep 0.1; done
assert "an OST with the store id of one that is up is refused by the MDT (EEXIST)" \
    'grep -q "is up at ${osts[victim_index]}: another OST with the same id cannot join" "$WORK/ost-copy.log"'
copy_map=$($RAWSTOR cluster "mdt://$MDT_ADDR")
assert "and the map keeps the first one's address" \
    '[[ $copy_map =~ "ost://${osts[victim_index]} " && ! $copy_map =~ "ost://$copy_addr " ]]'
kill -TERM "$copy_pid"
wait "$copy_pid" 2>/dev/null || true

# A second create of an existing UUID is refused and leaves the object whole
# (the record is not the second creator's to drop).
expect_failure "already exists" "create with an existing --uuid: EEXIST" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 16M --chunk-size 1M --layout replicas:3 --uuid "${target##*/}"
$RAWSTOR export "$target" "$WORK/back"
assert "and the object still opens and reads" 'cmp -s "$WORK/v2" "$WORK/back"'

# A layout the cluster cannot satisfy, and unimplemented ones: clear errors,
# nothing left behind.
records_before=$(ls "$WORK"/mdt/copy-1/objects | wc -l)
expect_failure "replicas:5 needs 5 OSTs" "replicas:5 on four OSTs: clear error" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --layout replicas:5
expect_failure "ec:4\\+2 needs 6 OSTs" "ec:4+2 on four OSTs: clear error" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --layout ec:4+2
expect_failure "bad layout" "a malformed layout: usage error" \
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --layout raid5
expect_failure "needs an mdt:// location" "--layout on ost://: usage error" \
    "$RAWSTOR" create "ost://${osts[0]}" --size 1M --layout replicas:2
expect_failure "cluster map comes from an mdt:// location" "cluster on ost://: clear error" \
    "$RAWSTOR" cluster "ost://${osts[0]}"
assert "the refused creates left no record" '[[ $(ls "$WORK"/mdt/copy-1/objects | wc -l) -eq $records_before ]]'
expect_failure "--advertise" "an OST bound to 0.0.0.0 must say how clients reach it" \
    "$OST" --bind 0.0.0.0:0 --mdt "mdt://$MDT_ADDR" "file://$WORK/unreachable"

# A corrupt copy of the object's record is detected and rewritten.
uuid=${target##*/}
record=$WORK/mdt/copy-2/objects/$uuid
good=$(md5sum <"$record")
printf 'garbage' | dd of="$record" bs=1 seek=40 conv=notrunc status=none
assert "a corrupt record copy does not stop info" '$RAWSTOR info "$target" >/dev/null'
assert "the corrupt copy was rewritten from a good one" '[[ $(md5sum <"$record") == "$good" ]]'

# MDT restart: clear error meanwhile; records and membership come back.
mdt_addr=$MDT_ADDR
kill -TERM "$MDT_PID"
wait "$MDT_PID" 2>/dev/null || true
expect_failure "mdt://$mdt_addr: cannot connect" "MDT down: opening fails clearly" \
    "$RAWSTOR" info "$target"
start_mdt mdt "$mdt_addr" --heartbeat-timeout-ms 1500
assert "after an MDT restart the OSTs are up again" 'await_up 4'
$RAWSTOR export "$target" "$WORK/back"
assert "after an MDT restart the object opens and reads" 'cmp -s "$WORK/v2" "$WORK/back"'

# Another store answering at a placed OST's address is not taken for it:
# that copy is left out (and said why), the others serve the data.
impostor_addr=$(sed -n 's/^copy 1: ost:\/\/\([^ ]*\) .*/\1/p' <<<"$($RAWSTOR info "$target")")
for i in "${!osts[@]}"; do [[ ${osts[$i]} == "$impostor_addr" ]] && impostor_index=$i; done
kill -KILL "${ost_pids[$impostor_index]}"
wait "${ost_pids[$impostor_index]}" 2>/dev/null || true
start_ost impostor "$impostor_addr"
RAWSTOR_LOG= $RAWSTOR export "$target" "$WORK/back" 2>"$WORK/impostor.err"
assert "an OST at a placed address with another store id is refused (ESTALE)" \
    'grep -q "the record places the copy on OST" "$WORK/impostor.err"'
assert "and the other copies serve the data" 'cmp -s "$WORK/v2" "$WORK/back"'
kill -TERM "$OST_PID"
wait "$OST_PID" 2>/dev/null || true
start_ost "ost$((impostor_index + 1))" "$impostor_addr" --mdt "mdt://$MDT_ADDR" --domain rack-x
assert "the real OST is back at its address" 'await_up 4'

# scrub: every copy read in full and compared; a flipped byte on one copy
# is found (checksum), and reads still return the right data.
out=$($RAWSTOR scrub "$target" 2>&1) || true
assert "scrub of a healthy object: every block verified, 3 copies agree" \
    '[[ $out =~ "of 3 copies" && $out =~ "the copies agree" ]] || { echo "$out"; false; }'
holder=$(sed -n 's/^copy 2: ost:\/\/\([^ ]*\) (\([^,]*\),.*/\2/p' <<<"$($RAWSTOR info "$target")")
chunk=$(find "$WORK"/ost[0-9] -path "*%ob/$uuid/c00000003" | while read -r f; do
    if grep -q "$holder" "${f%%/%ob/*}/%ctl/store" 2>/dev/null; then echo "$f"; fi; done | sed -n 1p)
printf '\xff' | dd of="$chunk" bs=1 seek=100 conv=notrunc status=none
out=$($RAWSTOR scrub "$target" 2>&1) && rc=0 || rc=$?
assert "scrub finds the corrupt block, names the copy, exits non-zero" \
    '[[ $rc -ne 0 && $out =~ "ost-id:$holder" && $out =~ "Input/output error" ]]'
$RAWSTOR export "$target" "$WORK/back"
assert "reads of the corrupt range fail over to a good copy" 'cmp -s "$WORK/v2" "$WORK/back"'
out=$($RAWSTOR scrub --repair "$target" 2>&1) && rc=0 || rc=$?
assert "scrub --repair rewrites the corrupt range of that copy from the others" \
    '[[ $rc -eq 0 && $out =~ "repaired: ost-id:$holder" && $out =~ "1 problem(s) repaired" ]] || { echo "$out"; false; }'
assert "and a scrub after it is clean" '$RAWSTOR scrub "$target" >/dev/null 2>&1'

# remove: the copies and the record.
$RAWSTOR remove "$target"
expect_failure "does not exist" "a removed object is gone from the MDT" "$RAWSTOR" info "$target"
assert "and from the MDT's list" '[[ -z "$($RAWSTOR list "mdt://$MDT_ADDR")" ]]'
# (Removed objects go to each store's trash, %tr, and are freed there.)
leftover=$(find "$WORK"/ost[0-9] -path '*%tr' -prune -o -name "$uuid" -print | wc -l)
assert "and from the OSTs" '[[ $leftover -eq 0 ]]'

# A connection over the MDT's limit is refused with a reason; once the
# held one closes, clients are served again.
start_mdt mdt-limit 127.0.0.1:0 --max-connections 1
exec {held}<>"/dev/tcp/${MDT_ADDR%:*}/${MDT_ADDR##*:}"
sleep 0.2
expect_failure "too many connections to this rawstor-mdt" \
    "a client over the MDT's --max-connections is refused, saying why" \
    "$RAWSTOR" cluster "mdt://$MDT_ADDR"
exec {held}>&-
sleep 0.2
assert "once a connection closes, the MDT serves the next client" \
    '$RAWSTOR cluster "mdt://$MDT_ADDR" >/dev/null'

if ((fails)); then
    echo "$fails mdt check(s) failed"
    exit 1
fi
echo "all mdt checks passed"
