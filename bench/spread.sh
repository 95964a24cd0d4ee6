#!/usr/bin/env bash
# One replicas:3 object of 1 GiB on 8 OSTs (4 failure domains), placed
# whole (one set of three OSTs) against the same object over 32 MiB pieces
# (each piece on OSTs of its own), side by side in the same cluster and
# run: 4 KiB random reads at QD32 and 1 MiB writes at QD16 through fio's
# rawstor engine, alternating, medians of ROUNDS; then one OST holding a
# whole copy is killed and `rawstor repair` timed on both.
#   bench/spread.sh RAWSTOR_CLI FIO_ENGINE [ROUNDS]
set -euo pipefail
RAWSTOR=$(realpath "${1:-target/release/rawstor}")
ENGINE=$(realpath "${2:-target/build/librawstor_fio.so}")
ROUNDS=${3:-3}
WORK_TAG=spread
source "$(dirname "$0")/../tests/lib.sh"
export RAWSTOR_LOG=quiet

start_mdt mdt 127.0.0.1:0 --heartbeat-timeout-ms 1500
start_osts_in_domains 1 8 4
await_up 8 || { echo "the OSTs did not come up" >&2; exit 1; }

whole=$("$RAWSTOR" create "mdt://$MDT_ADDR" --size 1G --layout replicas:3)
spread=$("$RAWSTOR" create "mdt://$MDT_ADDR" --size 1G --piece-size 32M --layout replicas:3)
head -c $((1 << 30)) /dev/urandom >"$WORK/data"
"$RAWSTOR" import "$WORK/data" "$whole"
"$RAWSTOR" import "$WORK/data" "$spread"
rm -f "$WORK/data"

fio_iops() { # TARGET RW BS QD -> IOPS
    local escaped=${1//:/\\:}
    fio --name=spread --output-format=json --ioengine="external:$ENGINE" --filename="$escaped" \
        --rw="$2" --bs="$3" --iodepth="$4" --runtime=5 --time_based --size=1G \
        --randrepeat=0 --norandommap 2>/dev/null |
        python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]; print(int(j["read"]["iops"] + j["write"]["iops"]))'
}

declare -A results
for round in $(seq 1 "$ROUNDS"); do
    order=(whole spread)
    ((round % 2 == 0)) && order=(spread whole)
    for which in "${order[@]}"; do
        target=$whole
        [[ $which == spread ]] && target=$spread
        r=$(fio_iops "$target" randread 4k 32)
        w=$(fio_iops "$target" write 1m 16)
        results[$which.read]+="$r " results[$which.write]+="$w "
        echo "  round $round $which: randread 4k QD32 $r IOPS, write 1m QD16 $w IOPS"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The OST of the whole object's copy 0 dies; both objects are repaired.
victim=$("$RAWSTOR" info "$whole" | sed -n 's/^copy 0: ost:\/\/\([^ ]*\) .*/\1/p')
for i in "${!ost_addrs[@]}"; do [[ ${ost_addrs[$i]} == "$victim" ]] && v=$i; done
held=$("$RAWSTOR" info "$spread" | sed -n "s/^ost:\/\/$victim ([^)]*): \([0-9]*\) .*/\1/p")
kill -KILL "${ost_pids[$v]}"
wait "${ost_pids[$v]}" 2>/dev/null || true
await_up 7 || { echo "the map did not mark the OST down" >&2; exit 1; }
timed() { local t0 t1; t0=$(date +%s.%N); "$RAWSTOR" repair "$1" >/dev/null; t1=$(date +%s.%N); awk "BEGIN {print $t1 - $t0}"; }
t_whole=$(timed "$whole")
t_spread=$(timed "$spread")
targets=$("$RAWSTOR" info "$spread" | grep -c '^ost://')

rw=$(median "${results[whole.read]}") rs=$(median "${results[spread.read]}")
ww=$(median "${results[whole.write]}") ws=$(median "${results[spread.write]}")
echo
echo "| workload | whole object | over 32 MiB pieces | pieces/whole |"
echo "|---|---|---|---|"
printf '| 4 KiB randread QD32, IOPS | %s | %s | %.2f |\n' "$rw" "$rs" "$(awk "BEGIN {print $rs / $rw}")"
printf '| 1 MiB write QD16, IOPS | %s | %s | %.2f |\n' "$ww" "$ws" "$(awk "BEGIN {print $ws / $ww}")"
printf '| repair after one OST died, s | %.1f (1 GiB onto 1 OST) | %.1f (%s MiB onto %s OSTs) | %.2f |\n' \
    "$t_whole" "$t_spread" "$((${held:-0} * 32))" "$targets" "$(awk "BEGIN {print $t_spread / $t_whole}")"
echo "(medians of $ROUNDS alternating rounds of 5 s; 8 OSTs in 4 domains on one machine, loopback)"
