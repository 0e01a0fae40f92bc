# Shared by the bench scripts (sourced): CPU accounting from /proc and the PostgreSQL helpers.

# CPU seconds (user + system) of the processes with these pids.
cpu() {
    local ticks=0 pid
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        ticks=$(( ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}

# The same, with the CPU of their children that ended (PostgreSQL's backends end with their
# connections; the postmaster's cutime and cstime keep their CPU).
cpu_with_ended_children() {
    local ticks=0 pid
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        ticks=$(( ticks + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat") ))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}

# Bytes the processes with these pids handed to write calls (their own and their threads':
# the store's WAL frames, attachment files, sockets), and the number of those calls: "bytes calls".
writes() {
    local bytes=0 calls=0 pid k v
    for pid in "$@"; do
        [[ -r /proc/$pid/io ]] || continue
        while read -r k v; do
            case $k in
                wchar:) bytes=$(( bytes + v )) ;;
                syscw:) calls=$(( calls + v )) ;;
            esac
        done < "/proc/$pid/io"
    done
    echo "$bytes $calls"
}

# The two-node network's schemas in $STORE_URL (none without it).
drop_schemas() {
    [[ -n ${STORE_URL:-} ]] || return 0
    psql "$STORE_URL" -qc "DROP SCHEMA IF EXISTS poststelle_a CASCADE; DROP SCHEMA IF EXISTS poststelle_b CASCADE" 2>/dev/null || true
}

pg_pids() { pgrep -x postgres || pgrep -f 'postgres:' || true; }
pg_xacts() { psql "$STORE_URL" -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }

# The poststelle binary a bench runs: BIN=path (a before/after comparison), else this tree's
# release build, built now.
release_bin() {
    if [[ -n ${BIN:-} ]]; then
        realpath "$BIN"
    else
        cargo build --release -p gateway >/dev/null 2>&1
        echo "$PWD/target/release/poststelle"
    fi
}

# A scratch folder ($work) and the node processes started in it ($pids): on exit the processes
# are killed and waited for, the folder removed and the network's PostgreSQL schemas dropped.
start_scratch() {
    work=$(mktemp -d)
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; drop_schemas' EXIT
}
