# Shared by the shell tests and the demo (source it after setting RAWSTOR):
# a scratch directory removed at exit (kept when KEEP_WORK is set), servers
# started by start_ost and stopped at exit, and the ok/FAIL helpers.
OST=$(dirname "$RAWSTOR")/rawstor-ost
WORK=${WORK:-$(mktemp -d "/tmp/rawstor-${WORK_TAG:-test}-XXXXXX")}
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

fails=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; fails=$((fails + 1)); }
# Like a check, for a [[ ]] condition given as one string.
assert() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }

# Starts a rawstor-ost on a loopback port it picks (or on BIND), with its
# store in $WORK/NAME; sets OST_ADDR (host:port) and OST_PID. OST_BIND_FLAG
# picks the spelling of the address option (--bind, or upstream's -b).
start_ost() { # NAME [BIND]
    local dir=$WORK/$1
    mkdir -p "$dir"
    "$OST" "${OST_BIND_FLAG:---bind}" "${2:-127.0.0.1:0}" "file://$dir" >"$dir.out" 2>"$dir.log" &
    OST_PID=$!
    pids+=("$OST_PID")
    for _ in $(seq 100); do
        grep -q '^listening on ' "$dir.out" 2>/dev/null && break
        sleep 0.05
    done
    OST_ADDR=$(sed -n 's/^listening on //p' "$dir.out")
    [[ -n $OST_ADDR ]] || { echo "rawstor-ost did not start:" >&2; cat "$dir.log" >&2; exit 1; }
}
