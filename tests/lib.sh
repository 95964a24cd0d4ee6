# Shared by the shell tests and the demo (source it after setting RAWSTOR):
# a scratch directory removed at exit (kept when KEEP_WORK is set), servers
# started by start_ost and stopped at exit, and the ok/FAIL helpers.
OST=$(dirname "$RAWSTOR")/rawstor-ost
MDT=$(dirname "$RAWSTOR")/rawstor-mdt
WORK=${WORK:-$(mktemp -d "/tmp/rawstor-${WORK_TAG:-test}-XXXXXX")}
pids=()
mounts=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
# Like a check, for a [[ ]] condition given as one string.
assert() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }

# Starts a rawstor-ost on a loopback port it picks (or on BIND), with its
# store in $WORK/NAME and any further options; sets OST_ADDR (host:port) and
# OST_PID. OST_BIND_FLAG picks the spelling of the address option (--bind,
# or upstream's -b).
start_ost() { # NAME [BIND [OPTION...]]
    local dir=$WORK/$1
    mkdir -p "$dir"
    "$OST" "${OST_BIND_FLAG:---bind}" "${2:-127.0.0.1:0}" "${@:3}" "file://$dir" >"$dir.out" 2>"$dir.log" &
    OST_PID=$!
    pids+=("$OST_PID")
    OST_ADDR=$(await_listening "$dir" rawstor-ost)
}

# Starts a rawstor-mdt keeping its records in $WORK/NAME, on a loopback port
# it picks (or on BIND), with any further options; sets MDT_ADDR and MDT_PID.
start_mdt() { # NAME [BIND [OPTION...]]
    local dir=$WORK/$1
    "$MDT" --bind "${2:-127.0.0.1:0}" --data "$dir" "${@:3}" >"$dir.out" 2>"$dir.log" &
    MDT_PID=$!
    pids+=("$MDT_PID")
    MDT_ADDR=$(await_listening "$dir" rawstor-mdt)
}

# Starts a rawstor-mdt and COUNT rawstor-ost registered with it, each in its
# own failure domain (dNAME-i), and waits until the map shows them up; sets
# MDT_ADDR and MDT_PID. Further options go to the MDT.
start_cluster() { # NAME COUNT [MDT_OPTION...]
    local name=$1 count=$2
    start_mdt "$name" 127.0.0.1:0 "${@:3}"
    for i in $(seq "$count"); do
        start_ost "$name-ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "d$name-$i"
    done
    await_up "$count" || { echo "the OSTs did not register with rawstor-mdt" >&2; exit 1; }
}

# Waits until the cluster map of MDT_ADDR shows COUNT OSTs up.
await_up() { # COUNT
    for _ in $(seq 100); do
        [[ $("$RAWSTOR" cluster "mdt://$MDT_ADDR" 2>/dev/null | grep -c ' up ') -eq $1 ]] && return 0
        sleep 0.1
    done
    return 1
}

# Prints the address a server started with output in DIR.out listens on.
await_listening() { # DIR NAME
    for _ in $(seq 100); do
        grep -q '^listening on ' "$1.out" 2>/dev/null && break
        sleep 0.05
    done
    local addr
    addr=$(sed -n 's/^listening on //p' "$1.out")
    [[ -n $addr ]] || { echo "$2 did not start:" >&2; cat "$1.log" >&2; exit 1; }
    echo "$addr"
}

# Runs a command (under a 60 s timeout) expecting it to fail with stderr
# matching PATTERN.
expect_failure() { # PATTERN WHAT COMMAND...
    local pattern=$1 what=$2; shift 2
    local out rc=0
    out=$(timeout 60 "$@" 2>&1 >/dev/null) || rc=$?
    if [[ $rc -ne 0 && $rc -ne 124 && $out =~ $pattern ]]; then
        pass "$what"
    else
        fail "$what (exit $rc: $(head -n2 <<<"$out"))"
    fi
}

# fio through the rawstor engine ($ENGINE) on TARGET; extra arguments follow.
rfio() { # TARGET [FIO_OPTION...]
    local target=$1; shift
    timeout 120 fio --name=t --ioengine="external:$ENGINE" --filename="${target//:/\\:}" \
        --verify_state_save=0 "$@"
}

# OSTs registered with MDT_ADDR, each in failure domain host-N, remembered
# by address so that a test can kill one and restart it.
declare -A ost_pid ost_name
start_mdt_osts() { # COUNT
    local i
    for i in $(seq "$1"); do
        start_ost "ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "host-$i"
        ost_pid[$OST_ADDR]=$OST_PID ost_name[$OST_ADDR]=ost$i
    done
}
# OSTs FIRST..LAST registered with MDT_ADDR, OST i in failure domain
# host(i % DOMAINS); their pids and addresses appended to ost_pids and
# ost_addrs, in order.
ost_pids=() ost_addrs=()
start_osts_in_domains() { # FIRST LAST DOMAINS
    local i
    for i in $(seq "$1" "$2"); do
        start_ost "ost$i" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "host$((i % $3))"
        ost_pids+=("$OST_PID") ost_addrs+=("$OST_ADDR")
    done
}
# Runs `rawstor scrub` on TARGET three times while fio writes 4 KiB random
# blocks to it from another process; prints how many reported nothing.
scrubs_beside_writer() { # TARGET
    local fio_pid ok=0 out
    rfio "$1" --rw=randwrite --bs=4k --iodepth=16 --size=32M --time_based --runtime=6 >/dev/null 2>&1 &
    fio_pid=$!
    sleep 1
    for _ in 1 2 3; do
        out=$("$RAWSTOR" scrub "$1" 2>&1) && ok=$((ok + 1)) || echo "$out" | tail -3 >&2
    done
    wait "$fio_pid" || true
    echo "$ok"
}
kill_ost() { # ADDR
    local pid=${ost_pid[$1]}
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
}
# Restarts the OST that listened at ADDR (same store) on a new port.
restart_ost() { # ADDR
    local name=${ost_name[$1]}
    start_ost "$name" 127.0.0.1:0 --mdt "mdt://$MDT_ADDR" --domain "host-${name#ost}"
    ost_pid[$OST_ADDR]=$OST_PID ost_name[$OST_ADDR]=$name
}

# A writer (fio filling TARGET with byte PATTERN) SIGKILLed mid-write, with
# its writes partly done and its lease and write intent left behind.
kill_writer_mid_write() { # TARGET PATTERN
    setsid fio --name=t --ioengine="external:$ENGINE" --filename="${1//:/\\:}" --rw=write --bs=64k \
        --size=32M --rate=4m --buffer_pattern="$2" --verify_state_save=0 >/dev/null 2>&1 &
    local pid=$!
    sleep 2.5
    kill -KILL -- -"$pid"
    wait "$pid" 2>/dev/null || true
}

# Runs COMMAND until it succeeds, for up to 10 s: a killed writer's lease
# runs out within one lease lifetime (6 s).
after_lease() { # COMMAND...
    local _
    for _ in $(seq 40); do "$@" && return 0; sleep 0.25; done
    return 1
}

# Mounts a fresh ext4 of SIZE MiB on $WORK/NAME (where start_ost NAME keeps
# its store), unmounted at exit. Needs root (a loop device).
small_fs() { # NAME SIZE_MB
    local img=$WORK/$1.img dir=$WORK/$1
    truncate -s "$2M" "$img"
    mkfs.ext4 -q -F -m 0 "$img"
    mkdir -p "$dir"
    mount -o loop "$img" "$dir" || { echo "cannot mount a loop file system (this test needs root)" >&2; exit 1; }
    mounts+=("$dir")
}
# Takes all but about FREE MiB of the file system on $WORK/NAME with a
# filler file, removed by free_fs NAME.
fill_fs() { # NAME FREE_MB
    local avail
    avail=$(df --output=avail -B1K "$WORK/$1" | tail -1)
    head -c "$(((avail << 10) - ($2 << 20)))" /dev/zero >"$WORK/$1/filler" 2>/dev/null || true
    sync
}
free_fs() { rm -f "$WORK/$1/filler"; sync; }
