#!/usr/bin/env bash
# Placement over a cluster of 8 OSTs in 4 failure domains: objects created
# back to back spread over every OST, copies on distinct domains; two OSTs
# join: new objects use them, and `rawstor cluster` reports what is not
# where the map now puts it.
#   tests/placement.sh RAWSTOR_CLI
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
WORK_TAG=placement
source "$(dirname "$0")/lib.sh"
export RAWSTOR_LOG=quiet RAWSTOR_OPTS_TIMEOUT_MS=1000

start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
for i in $(seq 1 8); do
    start_ost "ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "host$((i % 4))"
done
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

for i in 9 10; do
    start_ost "ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "host$((i % 4))"
done
assert "two OSTs join" 'await_up 10'
out=$("$RAWSTOR" cluster "mdt://$MDT_ADDR")
assert "the cluster reports the copies the new map puts elsewhere, and that nothing moves them yet" \
    '[[ $out =~ placement:\ [1-9][0-9]*\ copies\ or\ shards\ of\ [1-9][0-9]*\ objects && $out =~ "rawstor does not do yet" ]] || { echo "$out"; false; }'
for _ in $(seq 30); do
    "$RAWSTOR" create "mdt://$MDT_ADDR" --size 1M --chunk-size 1M --layout replicas:3 >/dev/null
done
mapfile -t counts < <(copies)
assert "new objects use the new OSTs" '((counts[8] > 0 && counts[9] > 0)) || { echo "${counts[*]}"; false; }'

if ((fails)); then
    echo "$fails placement check(s) failed"
    exit 1
fi
echo "all placement checks passed"
